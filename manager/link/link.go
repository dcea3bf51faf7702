// Package link is the manager's MQTT client. It delivers commands to
// proplets (implementing orchestration.Dispatcher), feeds what proplets
// report into the engine through Sink, and relays uploaded artifacts to
// proplets that can reach only the broker. It knows nothing about storage
// or Kubernetes, so the standalone manager and the operator share it.
package link

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

// Sink receives what proplets report. The engine implements it.
type Sink interface {
	// PropletUp is called for every online status (retained ones included,
	// so it arrives again after each manager restart).
	PropletUp(ctx context.Context, p orchestration.Proplet) error
	// PropletDown is called for an offline status, usually the last-will.
	PropletDown(ctx context.Context, id string) error
	Heartbeat(ctx context.Context, hb orchestration.Heartbeat) error
	// RecordEvent must be idempotent: QoS 1 delivers at least once.
	RecordEvent(ctx context.Context, ev orchestration.TaskEvent) (bool, error)
}

// FLSink receives federated-learning updates: a Sink that also implements
// it gets them, otherwise they are dropped.
type FLSink interface {
	FLUpdate(ctx context.Context, propletID string, u wire.FLUpdate) error
}

// BlobSource serves module bytes by digest ("sha256:<hex>") for the
// artifact relay and for inlining small modules. Optional.
type BlobSource interface {
	Blob(ctx context.Context, digest string) ([]byte, error)
}

// Defaults.
const (
	DefaultChunkSize = 256 << 10
	DefaultInlineMax = 64 << 10
	defaultWorkers   = 64
	maxRelays        = 4
	relayWindow      = 8
)

// Config configures the link. It is passed by value.
type Config struct {
	// BrokerURL is mqtt://, mqtts://, tcp:// or ssl:// host:port.
	BrokerURL string
	Username  string
	Password  string
	// TLS is used for mqtts:// and ssl://; nil means system roots.
	TLS *tls.Config
	// Prefix is the topic prefix; empty means wire.DefaultPrefix.
	Prefix string
	// ClientID must stay the same across restarts so the broker keeps the
	// persistent session; empty means wire.ManagerClientID.
	ClientID string
	Logger   *slog.Logger

	// Blobs serves uploaded modules; nil disables the relay and inlining.
	Blobs BlobSource
	// ChunkSize is the relay chunk size; 0 means DefaultChunkSize.
	ChunkSize int
	// InlineMax is the largest blob sent inline in a start command; 0
	// means DefaultInlineMax, negative disables inlining.
	InlineMax int
	// Workers is the number of goroutines handling incoming messages; 0
	// means 64. A proplet's status and heartbeats, and a task's events, are
	// always handled in order by the same worker.
	Workers int
	// ObserveDispatch, when set, is called with the publish-to-PUBACK
	// latency of every successful command (for a histogram).
	ObserveDispatch func(time.Duration)
	// Random returns a number in [0, 1) that spreads reconnect delays;
	// default math/rand/v2. Tests inject their own.
	Random func() float64
}

// Stats is a snapshot of the link's counters.
type Stats struct {
	Connected bool
	// Connects counts successful connections; Reconnects is Connects-1.
	Connects       uint64
	Reconnects     uint64
	ConnectionLost uint64
	// Dispatched counts acknowledged commands; DispatchLatency is their
	// summed publish-to-PUBACK time.
	Dispatched      uint64
	DispatchErrors  uint64
	DispatchLatency time.Duration
	// Received counts incoming messages; Dropped those that were invalid.
	Received uint64
	Dropped  uint64
	// SinkErrors counts messages the sink returned an error for.
	SinkErrors    uint64
	BlobsRelayed  uint64
	RelayFailures uint64
}

// Link is the manager's connection to its proplets.
type Link struct {
	cfg    Config
	topics wire.Topics
	log    *slog.Logger
	client mqtt.Client

	ctx     context.Context
	cancel  context.CancelFunc
	shards  []*queue
	wg      sync.WaitGroup
	relays  chan struct{}
	started atomic.Bool

	ready     chan struct{}
	readyOnce sync.Once
	subErr    atomic.Value // error of the last failed subscribe

	mu        sync.Mutex
	instances map[string]string // proplet id -> instance of its last online status

	connects, lost                      atomic.Uint64
	retries                             atomic.Uint64 // reconnect attempts since the last connection
	dispatched, dispatchErrs, latencyNS atomic.Uint64
	received, dropped, sinkErrs         atomic.Uint64
	relayed, relayFails                 atomic.Uint64
	closeOnce                           sync.Once
}

var (
	_ orchestration.Dispatcher = (*Link)(nil)
	_ orchestration.BrokerLink = (*Link)(nil)
)

// New builds a link; Start connects it. Until then it starts no goroutine,
// so a link that is never started needs no Close. The link's sink comes
// at Start: the engine that receives what proplets report is built with
// the link as its dispatcher.
func New(cfg Config) (*Link, error) {
	broker, err := brokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ClientID == "" {
		cfg.ClientID = wire.ManagerClientID
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.InlineMax == 0 {
		cfg.InlineMax = DefaultInlineMax
	}
	if cfg.Workers <= 0 {
		cfg.Workers = defaultWorkers
	}
	if cfg.Random == nil {
		cfg.Random = rand.Float64
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		cfg:       cfg,
		topics:    wire.Topics{Prefix: cfg.Prefix},
		log:       cfg.Logger.With("component", "mqtt-link"),
		ctx:       ctx,
		cancel:    cancel,
		relays:    make(chan struct{}, maxRelays),
		ready:     make(chan struct{}),
		instances: make(map[string]string),
	}

	opts := mqtt.NewClientOptions().
		AddBroker(broker).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		// A persistent session makes the broker queue QoS 1 reports while
		// the manager is away (restart, network loss).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		// The engine suspends liveness while this connection is down, so
		// a silent one (a network cut, no TCP reset) must be noticed
		// well within a proplet's heartbeat timeout (15s by default):
		// keepalive plus ping timeout, 10s.
		SetKeepAlive(5 * time.Second).
		SetPingTimeout(5 * time.Second).
		// The default handler only enqueues, so ordered delivery never
		// blocks paho's router; acks are sent after the sink has the
		// message, so a crash before that means redelivery, not loss.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetDefaultPublishHandler(l.enqueue).
		SetOnConnectHandler(l.onConnect).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) { l.reconnectJitter() }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			l.lost.Add(1)
			l.log.Warn("mqtt connection lost", "error", err)
		})
	if strings.HasPrefix(broker, "ssl://") {
		t := cfg.TLS
		if t == nil {
			t = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts.SetTLSConfig(t)
	}
	l.client = mqtt.NewClient(opts)
	l.shards = make([]*queue, cfg.Workers)
	for i := range l.shards {
		l.shards[i] = newQueue()
	}
	return l, nil
}

// brokerURL maps the accepted schemes to paho's.
func brokerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("link: bad broker url %q", raw)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		u.Scheme = "tcp"
	case "mqtts", "ssl", "tls":
		u.Scheme = "ssl"
	default:
		return "", fmt.Errorf("link: unsupported broker url scheme %q", u.Scheme)
	}
	return u.String(), nil
}

// Start hands what proplets report to sink (and FL updates too, if sink
// implements FLSink), then connects and subscribes, retrying until ctx
// ends. After the first successful connection, reconnects happen in the
// background. A link starts once.
func (l *Link) Start(ctx context.Context, sink Sink) error {
	if sink == nil {
		return errors.New("link: sink is required")
	}
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("link: already started")
	}
	to := receivers{sink: sink}
	to.fl, _ = sink.(FLSink)
	to.tasks, _ = sink.(Assignments)
	for _, q := range l.shards {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for m := range q.run(l.ctx) {
				l.handle(m, to)
			}
		}()
	}
	var lastErr error
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		wait := jittered(backoff, l.cfg.Random())
		tok := l.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("link: connect: %w", ctx.Err())
		}
		if lastErr = tok.Error(); lastErr == nil {
			break
		}
		l.log.Warn("mqtt connect failed", "broker", l.cfg.BrokerURL, "error", lastErr)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("link: connect: %w", lastErr)
		}
	}
	select {
	case <-l.ready:
		return nil
	case <-ctx.Done():
		if err, _ := l.subErr.Load().(error); err != nil {
			return fmt.Errorf("link: subscribe: %w", err)
		}
		return fmt.Errorf("link: subscribe: %w", ctx.Err())
	}
}

// jittered spreads a retry delay d over (d/2, d] by r in [0, 1) ("equal
// jitter").
func jittered(d time.Duration, r float64) time.Duration {
	r = min(max(r, 0), 1)
	return d - time.Duration(r*float64(d/2))
}

// reconnectJitter runs before each of paho's reconnect attempts. The first
// goes at once (the link is down, liveness is suspended meanwhile); later
// ones add up to half of paho's own delay (1s doubling to 10s), drawn from
// Config.Random, on top of it, so retries against a struggling broker do
// not come in lockstep.
func (l *Link) reconnectJitter() {
	n := l.retries.Add(1)
	if n <= 1 {
		return
	}
	step := min(time.Second<<min(n-2, 4), 10*time.Second)
	d := time.Duration(min(max(l.cfg.Random(), 0), 1) * float64(step/2))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.ctx.Done():
	}
}

// Close disconnects and stops the workers. Messages received but not yet
// handled are not acknowledged; the broker redelivers them next time.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.client.Disconnect(250)
		l.cancel()
		l.wg.Wait()
	})
	return nil
}

// Connected reports whether the link is connected right now.
func (l *Link) Connected() bool { return l.client.IsConnectionOpen() }

// LinkState implements orchestration.BrokerLink: whether the link is
// connected, and how many times it connected so far.
func (l *Link) LinkState() (bool, uint64) {
	// Read the count first: a reconnection between the two reads then
	// shows as up with the old count, and the next look sees the new one.
	n := l.connects.Load()
	return l.Connected(), n
}

// Stats returns a snapshot of the counters.
func (l *Link) Stats() Stats {
	c := l.connects.Load()
	return Stats{
		Connected:       l.Connected(),
		Connects:        c,
		Reconnects:      max(c, 1) - 1,
		ConnectionLost:  l.lost.Load(),
		Dispatched:      l.dispatched.Load(),
		DispatchErrors:  l.dispatchErrs.Load(),
		DispatchLatency: time.Duration(l.latencyNS.Load()),
		Received:        l.received.Load(),
		Dropped:         l.dropped.Load(),
		SinkErrors:      l.sinkErrs.Load(),
		BlobsRelayed:    l.relayed.Load(),
		RelayFailures:   l.relayFails.Load(),
	}
}

// onConnect runs on paho's goroutine for every (re)connection; the broker
// may have dropped the session, so subscriptions are always renewed.
func (l *Link) onConnect(c mqtt.Client) {
	l.connects.Add(1)
	l.retries.Store(0)
	filters := map[string]byte{}
	for _, k := range []string{wire.KindStatus, wire.KindHeartbeat, wire.KindEvents, wire.KindFLUpdates, wire.KindArtifactRequest} {
		filters[l.topics.AllOf(k)] = 1
	}
	// nil callback: everything goes through the default handler, which also
	// catches messages the broker replays before this subscribe completes.
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(30 * time.Second) {
		l.subErr.Store(errors.New("timed out"))
		l.log.Error("mqtt subscribe timed out")
		return
	}
	if err := tok.Error(); err != nil {
		l.subErr.Store(err)
		l.log.Error("mqtt subscribe failed", "error", err)
		return
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code == 0x80 {
				err := fmt.Errorf("broker refused %s", f)
				l.subErr.Store(err)
				l.log.Error("mqtt subscribe refused", "filter", f)
				return
			}
		}
	}
	l.log.Info("mqtt link connected", "broker", l.cfg.BrokerURL, "client_id", l.cfg.ClientID)
	l.readyOnce.Do(func() { close(l.ready) })
}

// enqueue is paho's handler: it must return at once.
//
// Messages are sharded so that what must stay ordered does: a proplet's
// status and heartbeats by proplet, a task's events by task. Events of
// different tasks of one busy proplet are handled in parallel, which lets
// the store commit many of them per fsync.
func (l *Link) enqueue(_ mqtt.Client, m mqtt.Message) {
	l.received.Add(1)
	id, kind, err := l.topics.Parse(m.Topic())
	if err != nil {
		id = ""
	}
	key := id
	if kind == wire.KindEvents || kind == wire.KindFLUpdates {
		var ref struct {
			TaskID string `json:"task_id"`
		}
		if json.Unmarshal(m.Payload(), &ref) == nil && ref.TaskID != "" {
			key = ref.TaskID
		}
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	l.shards[h.Sum32()%uint32(len(l.shards))].push(m)
}

// StartTask implements orchestration.Dispatcher.
func (l *Link) StartTask(ctx context.Context, propletID string, t orchestration.Task, w orchestration.StartWindow) error {
	if !wire.ValidID(propletID) {
		return fmt.Errorf("%w: proplet id %q", orchestration.ErrInvalid, propletID)
	}
	cmd, err := startCommand(ctx, t, l.cfg.Blobs, l.cfg.InlineMax)
	if err != nil {
		return err
	}
	cmd.Start.Sent, cmd.Start.NotAfter = w.Sent.UTC(), w.NotAfter.UTC()
	return l.send(ctx, propletID, &cmd)
}

// StopTask implements orchestration.Dispatcher.
func (l *Link) StopTask(ctx context.Context, propletID, taskID string, attempt int, reason string) error {
	if !wire.ValidID(propletID) {
		return fmt.Errorf("%w: proplet id %q", orchestration.ErrInvalid, propletID)
	}
	cmd := stopCommand(taskID, attempt, reason)
	return l.send(ctx, propletID, &cmd)
}

// send publishes a command with QoS 1 and waits for the broker's PUBACK.
// If ctx ends first the command may still be delivered later; proplets
// de-duplicate by (task, attempt), so that is harmless.
func (l *Link) send(ctx context.Context, propletID string, cmd *wire.Command) error {
	payload, err := wire.Encode(cmd)
	if err != nil {
		return err
	}
	start := time.Now()
	tok := l.client.Publish(l.topics.Commands(propletID), 1, false, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		l.dispatchErrs.Add(1)
		return fmt.Errorf("link: send %s to %s: %w", cmd.Type, propletID, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		l.dispatchErrs.Add(1)
		return fmt.Errorf("link: send %s to %s: %w", cmd.Type, propletID, err)
	}
	d := time.Since(start)
	l.dispatched.Add(1)
	l.latencyNS.Add(uint64(d))
	if l.cfg.ObserveDispatch != nil {
		l.cfg.ObserveDispatch(d)
	}
	return nil
}
