package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/absmach/propeller/api/wire"
)

// conn is one MQTT connection. Each gets a fresh paho client and store, so
// nothing of a dead connection is re-sent behind the outbox's back: the
// outbox alone re-sends what was not acknowledged.
type conn struct {
	client mqtt.Client
	store  *ackStore
	lost   chan struct{}
	once   sync.Once
	// enrolled is set when the connection is dropped on purpose, to log
	// in again with the secret it was just issued: what fails on it
	// meanwhile is expected.
	enrolled atomic.Bool
}

func (c *conn) markLost() { c.once.Do(func() { close(c.lost) }) }

var errNotConnected = errors.New("agent: not connected")

func (a *Agent) current() *conn {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	if a.conn == nil {
		return nil
	}
	select {
	case <-a.conn.lost:
		return nil
	default:
		return a.conn
	}
}

// equalJitter spreads a reconnect delay d over (d/2, d] by r in [0, 1):
// a fleet of proplets that lost the same broker does not come back in one
// burst, and none retries sooner than half its backoff.
func equalJitter(d time.Duration, r float64) time.Duration {
	r = min(max(r, 0), 1)
	return d - time.Duration(r*float64(d/2))
}

// connectLoop keeps one connection up until ctx ends, backing off
// exponentially (with jitter) between failed attempts. A refused login
// (bad credential, id in use) is explained once, not on every retry, and
// waits at least refusedBackoff.
func (a *Agent) connectLoop(ctx context.Context) {
	const initial = 250 * time.Millisecond
	backoff := initial
	explained := ""
	for ctx.Err() == nil {
		c, err := a.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var why string
			var ce *connectError
			if errors.As(err, &ce) {
				why, err = a.refusal(ce.err, ce.stored), ce.err
			}
			if why != "" {
				backoff = max(backoff, refusedBackoff)
			}
			wait := equalJitter(backoff, a.cfg.Random())
			switch {
			case why == "":
				a.log.Warn("connect failed", "broker", a.server, "err", err, "retry_in", wait)
			case why != explained:
				a.log.Error(why, "broker", a.server, "err", err, "retry_in", wait)
			default:
				a.log.Debug("connect refused again", "broker", a.server, "err", err, "retry_in", wait)
			}
			explained = why
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, a.cfg.MaxReconnectInterval)
			continue
		}
		backoff, explained = initial, ""
		a.connMu.Lock()
		a.conn = c
		a.connMu.Unlock()
		a.onConnected(c)
		select {
		case <-c.lost:
		case <-ctx.Done():
			return
		}
	}
}

// connectError is a failed connect and which secret it used.
type connectError struct {
	err    error
	stored bool
}

func (e *connectError) Error() string { return e.err.Error() }

func (a *Agent) dial(ctx context.Context) (*conn, error) {
	c := &conn{store: newAckStore(), lost: make(chan struct{})}
	opts := *a.opts
	opts.SetStore(c.store)
	secret, stored := a.password()
	opts.SetPassword(secret)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		a.log.Warn("connection lost", "err", err)
		c.markLost()
	})
	c.client = mqtt.NewClient(&opts)
	// The broker writes an enrolled secret to this connection right after
	// its CONNACK, unsubscribed: a route sees it, before any SUBSCRIBE.
	c.client.AddRoute(a.topics.Credential(a.cfg.ID), a.onCredential(c))
	tok := c.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		go func() {
			<-tok.Done()
			c.client.Disconnect(0)
		}()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, &connectError{err: err, stored: stored}
	}
	return c, nil
}

// onConnected runs once the connect token completed, that is after paho
// finished its session resume, so nothing published from here on races it.
func (a *Agent) onConnected(c *conn) {
	a.log.Info("connected", "broker", a.server)
	filters := map[string]byte{
		a.topics.Commands(a.cfg.ID):       1,
		a.topics.ArtifactChunks(a.cfg.ID): 1,
	}
	tok := c.client.SubscribeMultiple(filters, nil)
	go func() {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil && !c.enrolled.Load() {
				a.log.Error("subscribe failed", "err", err)
			}
		case <-c.lost:
		}
	}()
	if _, err := a.publishAck(c, a.topics.Status(a.cfg.ID), true, a.mustEncode(a.status(wire.StateOnline))); err != nil && !c.enrolled.Load() {
		a.log.Error("publish status", "err", err)
	}
	a.heartbeat()
	a.rerequestFetches()
	select {
	case a.connSig <- struct{}{}:
	default:
	}
}

func (a *Agent) heartbeat() {
	c := a.current()
	if c == nil {
		return
	}
	a.mu.Lock()
	hb := &wire.Heartbeat{
		ID:        a.cfg.ID,
		Instance:  a.instance,
		Running:   make([]wire.TaskRef, 0, len(a.running)),
		FreeSlots: a.cfg.Slots - len(a.running),
		Load:      float64(len(a.running)) / float64(a.cfg.Slots),
		Time:      time.Now().UTC(),
	}
	for ref := range a.running {
		hb.Running = append(hb.Running, ref)
	}
	a.mu.Unlock()
	// QoS 0: a lost heartbeat is replaced by the next one.
	c.client.Publish(a.topics.Heartbeat(a.cfg.ID), 0, false, a.mustEncode(hb))
}

// publishAck publishes at QoS 1 on c and returns a channel closed when the
// broker's PUBACK arrives. If c is lost first, the channel never closes;
// callers also watch c.lost.
func (a *Agent) publishAck(c *conn, topic string, retained bool, payload []byte) (<-chan struct{}, error) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	tok := c.client.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, err
		}
	default:
	}
	pt, ok := tok.(*mqtt.PublishToken)
	if !ok {
		return nil, errors.New("agent: unexpected publish token type")
	}
	return c.store.ackChan(pt.MessageID()), nil
}
