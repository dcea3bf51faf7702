// Package agent is the proplet's MQTT side: it announces the proplet
// (retained status, last-will, heartbeats), takes start/stop commands from
// its own command topic, runs them through an Executor within a slot limit,
// and reports terminal events and FL updates through a persistent outbox so
// results survive broker outages and proplet restarts (progress events are
// best effort, see Agent.hint). It also serves as the
// artifact relay client (Fetch) over the proplet's artifacts topics.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

// RuntimeName is announced in the proplet's status.
const RuntimeName = "wazero"

// Config is the agent's configuration, passed by value.
type Config struct {
	// BrokerURL is mqtt://host:port or mqtts://host:port.
	BrokerURL string
	// ID is the proplet id, MQTT client id and MQTT username.
	ID string
	// Token is the MQTT password: the join token, or a secret issued with
	// `propeller proplet credentials create`. A secret the manager issued
	// when this proplet enrolled with the join token (StateDir/credential)
	// takes its place.
	Token string
	// TLS configures mqtts (CA pool, client certificate). Nil with mqtts
	// means the system roots.
	TLS *tls.Config
	// Prefix is the topic prefix; empty means wire.DefaultPrefix.
	Prefix      string
	Labels      map[string]string
	Slots       int
	MemoryBytes int64
	// HeartbeatInterval defaults to 5s.
	HeartbeatInterval time.Duration
	// StateDir holds the outbox and the attempt ledger (StateDir/outbox);
	// required.
	StateDir string
	Logger   *slog.Logger
	Version  string

	// Optional tuning; zero values take sensible defaults.
	OutboxMaxEntries     int
	OutboxMaxBytes       int64
	RememberFinished     int           // attempts remembered for dedup, default 10000
	RememberResultBytes  int64         // final reports kept to answer a repeated start, default 16 MiB
	MaxReconnectInterval time.Duration // default 30s
	ConnectTimeout       time.Duration // default 10s
	ShutdownTimeout      time.Duration // flush + offline status on Run exit, default 5s
	RelayMaxBytes        int64         // largest relayed artifact, default 512 MiB
	InflightWindow       int           // outbox publishes awaiting PUBACK, default 64
	// Random returns a number in [0, 1) that spreads reconnect delays;
	// default math/rand/v2. Tests inject their own.
	Random func() float64
	// NoSync skips fsync in the outbox and ledger; benchmarks only.
	NoSync bool
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RememberFinished <= 0 {
		c.RememberFinished = 10000
	}
	if c.RememberResultBytes <= 0 {
		c.RememberResultBytes = 16 << 20
	}
	if c.MaxReconnectInterval <= 0 {
		c.MaxReconnectInterval = 30 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.Random == nil {
		c.Random = mrand.Float64
	}
	if c.RelayMaxBytes <= 0 {
		c.RelayMaxBytes = 512 << 20
	}
	if c.InflightWindow <= 0 {
		c.InflightWindow = 64
	}
}

// Executor runs one attempt of a task. It calls running once the module
// actually starts (after fetching and compiling), and returns when the
// attempt is over. It must return promptly when ctx is cancelled (a stop
// command or shutdown), reporting wire.ReasonStopped.
type Executor interface {
	Execute(ctx context.Context, start wire.StartTask, running func()) Outcome
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, start wire.StartTask, running func()) Outcome

func (f ExecutorFunc) Execute(ctx context.Context, start wire.StartTask, running func()) Outcome {
	return f(ctx, start, running)
}

// Outcome is how an attempt ended. It failed when Reason or Err is set.
type Outcome struct {
	Result  *wire.Result
	Metrics *wire.Metrics
	// Reason is one of the wire.Reason* constants.
	Reason string
	Err    error
	// FL, when set, is published on the fl/updates topic before the final
	// event. The agent fills in TaskID, Attempt and Time if empty.
	FL *wire.FLUpdate
}

// Failed reports whether the attempt failed.
func (o Outcome) Failed() bool { return o.Reason != "" || o.Err != nil }

// Agent is one proplet's MQTT presence. Create it with New, drive it with
// Run; Fetch may be used by the artifact layer while Run is active.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	topics   wire.Topics
	instance string

	server   string
	opts     *mqtt.ClientOptions // template; every connection gets a copy
	credPath string              // StateDir/CredentialFile
	connMu   sync.Mutex
	conn     *conn      // current connection, nil while down
	pubMu    sync.Mutex // serialises QoS 1 publishes, see ackStore.ackChan

	ob  *outbox.Outbox
	led *ledger

	connSig  chan struct{} // a (re)connect happened
	ackedSig chan struct{} // an outbox message was acknowledged

	mu      sync.Mutex
	exec    Executor
	runCtx  context.Context
	running map[wire.TaskRef]*attempt
	// manager judges starts' NotAfter on the manager's clock.
	manager managerClock
	// finishing attempts have ended but are not yet recorded as finished.
	finishing map[wire.TaskRef]*attempt
	tasks     sync.WaitGroup
	// acceptTimer arms an attempt's lazy acceptance (see Agent.execute)
	// and returns what stops it; tests replace it to fire it themselves.
	acceptTimer func(ref wire.TaskRef, d time.Duration, f func()) (stop func() bool)

	relayMu sync.Mutex
	fetches map[string]*assembly
}

// New validates cfg and opens the state directory. It does not connect.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if !wire.ValidID(cfg.ID) {
		return nil, fmt.Errorf("agent: invalid proplet id %q", cfg.ID)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("agent: state dir is required")
	}
	server, err := brokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "agent", "proplet", cfg.ID),
		topics:    wire.Topics{Prefix: cfg.Prefix},
		instance:  randomID(),
		server:    server,
		credPath:  filepath.Join(cfg.StateDir, CredentialFile),
		connSig:   make(chan struct{}, 1),
		ackedSig:  make(chan struct{}, 1),
		running:   map[wire.TaskRef]*attempt{},
		finishing: map[wire.TaskRef]*attempt{},
		acceptTimer: func(_ wire.TaskRef, d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
		fetches: map[string]*assembly{},
	}
	// One log holds the outbox and the attempt ledger, so a final event
	// and the ledger's record of the attempt share one fsync.
	a.ob, err = outbox.Open(filepath.Join(cfg.StateDir, "outbox"), outbox.Options{
		MaxEntries: cfg.OutboxMaxEntries, MaxBytes: cfg.OutboxMaxBytes, Logger: a.log, NoSync: cfg.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.led = openLedger(a.ob, cfg.RememberFinished, cfg.RememberResultBytes)
	if err := a.failUnfinished(); err != nil {
		_ = a.ob.Close()
		return nil, err
	}

	will, err := wire.Encode(a.status(wire.StateOffline))
	if err != nil {
		_ = a.ob.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.opts = mqtt.NewClientOptions().
		AddBroker(server).
		SetClientID(cfg.ID).
		SetUsername(cfg.ID).
		SetPassword(cfg.Token).
		// A persistent session keeps commands the manager sent while the
		// link was down; the broker delivers them on reconnect.
		SetCleanSession(false).
		// Reconnecting is ours (see connectLoop): paho's own resume path
		// can send a publish twice when it races a fresh Publish.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetKeepAlive(30*time.Second).
		SetBinaryWill(a.topics.Status(cfg.ID), will, 1, true).
		SetOrderMatters(true).
		// A start command is acknowledged once its attempt is durable
		// (see Agent.execute), not when the handler returns.
		SetAutoAckDisabled(true).
		// Queued messages of a persistent session arrive before our
		// SUBSCRIBE completes; only a default handler sees them.
		SetDefaultPublishHandler(a.onMessage)
	if cfg.TLS != nil {
		a.opts.SetTLSConfig(cfg.TLS)
	}
	return a, nil
}

func brokerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("agent: broker url: %w", err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("agent: broker url %q has no host", raw)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		return "tcp://" + u.Host, nil
	case "mqtts", "ssl", "tls":
		return "ssl://" + u.Host, nil
	}
	return "", fmt.Errorf("agent: unsupported broker scheme %q", u.Scheme)
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Instance is the random id of this agent's process start.
func (a *Agent) Instance() string { return a.instance }

// Run connects, serves commands through exec until ctx is done, then shuts
// down cleanly: running attempts are stopped and reported, the outbox is
// flushed for up to ShutdownTimeout, the offline status is published and
// the connection closed. Run may be called once.
func (a *Agent) Run(ctx context.Context, exec Executor) error {
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	a.mu.Lock()
	if a.exec != nil {
		a.mu.Unlock()
		return errors.New("agent: Run called twice")
	}
	a.exec = exec
	a.runCtx = runCtx
	a.mu.Unlock()

	sendCtx, stopSender := context.WithCancel(context.WithoutCancel(ctx))
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		a.sendLoop(sendCtx)
	}()

	connCtx, stopConnecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConnecting()
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		a.connectLoop(connCtx)
	}()
	a.log.Info("agent started", "broker", a.cfg.BrokerURL, "instance", a.instance, "slots", a.cfg.Slots)

	hb := time.NewTicker(a.cfg.HeartbeatInterval)
	defer hb.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hb.C:
			a.heartbeat()
		}
	}

	a.log.Info("agent stopping")
	deadline, cancelDeadline := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancelDeadline()
	cancelRuns()
	tasksDone := make(chan struct{})
	go func() {
		a.tasks.Wait()
		close(tasksDone)
	}()
	select {
	case <-tasksDone:
	case <-deadline.Done():
		// Those accepted in the ledger are reported failed by the next
		// start; the others' commands were not acknowledged, so the broker
		// hands them to the next start, which runs them.
		a.log.Error("attempts ignored cancellation; shutting down without them", "running", len(a.Running()))
	}
	a.flush(deadline.Done())
	stopSender()
	<-senderDone

	if c := a.current(); c != nil {
		if ack, err := a.publishAck(c, a.topics.Status(a.cfg.ID), true, a.mustEncode(a.status(wire.StateOffline))); err == nil {
			select {
			case <-ack:
			case <-c.lost:
			case <-deadline.Done():
				a.log.Warn("offline status not acknowledged before shutdown timeout")
			}
		}
	}
	stopConnecting()
	<-connDone
	if c := a.current(); c != nil {
		c.client.Disconnect(250)
	}
	return a.ob.Close()
}

// flush waits until the outbox is empty or done fires.
func (a *Agent) flush(done <-chan struct{}) {
	for a.ob.Len() > 0 && a.current() != nil {
		select {
		case <-a.ackedSig:
		case <-done:
			a.log.Warn("outbox not drained before shutdown timeout; pending messages are sent on next start",
				"pending", a.ob.Len())
			return
		}
	}
}

func (a *Agent) status(state string) *wire.Status {
	return &wire.Status{
		ID:       a.cfg.ID,
		State:    state,
		Instance: a.instance,
		Labels:   a.cfg.Labels,
		Capacity: wire.Capacity{Slots: a.cfg.Slots, MemoryBytes: a.cfg.MemoryBytes},
		Runtime:  RuntimeName,
		Version:  a.cfg.Version,
		Time:     time.Now().UTC(),
	}
}

func (a *Agent) mustEncode(msg any) []byte {
	b, err := wire.Encode(msg)
	if err != nil {
		// Only our own message types are encoded here.
		panic(err)
	}
	return b
}

func (a *Agent) onMessage(_ mqtt.Client, m mqtt.Message) {
	switch m.Topic() {
	case a.topics.Commands(a.cfg.ID):
		a.onCommand(m.Payload(), m.Ack)
	case a.topics.ArtifactChunks(a.cfg.ID):
		a.onChunk(m.Payload())
		m.Ack()
	default:
		a.log.Warn("message on unexpected topic", "topic", m.Topic())
		m.Ack()
	}
}

// Pending is the number of events and FL updates not yet acknowledged by
// the broker.
func (a *Agent) Pending() int { return a.ob.Len() }
