package link

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

// queue is an unbounded FIFO: paho's router must never wait on us, and
// the broker's in-flight window bounds how much can pile up since nothing
// is acknowledged before it is handled.
type queue struct {
	mu     sync.Mutex
	items  []mqtt.Message
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

func (q *queue) push(m mqtt.Message) {
	q.mu.Lock()
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// run yields queued messages in order until ctx ends.
func (q *queue) run(ctx context.Context) <-chan mqtt.Message {
	out := make(chan mqtt.Message)
	go func() {
		defer close(out)
		for {
			q.mu.Lock()
			batch := q.items
			q.items = nil
			q.mu.Unlock()
			for _, m := range batch {
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-q.signal:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// receivers are what Start was given: where reports and FL updates go.
type receivers struct {
	sink  Sink
	fl    FLSink      // nil drops FL updates
	tasks Assignments // nil refuses every relay request
}

// handle processes one message from a proplet. Nothing a proplet sends may
// crash the manager: bad input is logged and dropped.
func (l *Link) handle(m mqtt.Message, to receivers) {
	defer m.Ack()
	defer func() {
		if r := recover(); r != nil {
			l.dropped.Add(1)
			l.log.Error("mqtt message handler panicked", "topic", m.Topic(), "panic", r)
		}
	}()
	id, kind, err := l.topics.Parse(m.Topic())
	if err != nil || !wire.ValidID(id) {
		l.drop(m, "not a proplet topic")
		return
	}
	payload := m.Payload()
	if len(payload) == 0 {
		// Clearing a retained status publishes an empty message.
		return
	}
	switch kind {
	case wire.KindStatus:
		l.handleStatus(m, id, payload, to.sink)
	case wire.KindHeartbeat:
		var hb wire.Heartbeat
		if err := wire.Decode(payload, &hb); err != nil {
			l.drop(m, err.Error())
			return
		}
		if hb.ID != "" && hb.ID != id {
			l.drop(m, "heartbeat id does not match topic")
			return
		}
		l.sinkErr(m, to.sink.Heartbeat(l.ctx, heartbeatFromWire(id, hb)))
	case wire.KindEvents:
		var e wire.Event
		if err := wire.Decode(payload, &e); err != nil {
			l.drop(m, err.Error())
			return
		}
		ev, err := eventFromWire(id, e)
		if err != nil {
			l.drop(m, err.Error())
			return
		}
		_, err = to.sink.RecordEvent(l.ctx, ev)
		l.sinkErr(m, err)
	case wire.KindFLUpdates:
		if to.fl == nil {
			l.drop(m, "no FL sink")
			return
		}
		var u wire.FLUpdate
		if err := wire.Decode(payload, &u); err != nil {
			l.drop(m, err.Error())
			return
		}
		if u.RoundID == "" || u.TaskID == "" {
			l.drop(m, "FL update without round or task")
			return
		}
		l.sinkErr(m, to.fl.FLUpdate(l.ctx, id, u))
	case wire.KindArtifactRequest:
		var req wire.ArtifactRequest
		if err := wire.Decode(payload, &req); err != nil {
			l.drop(m, err.Error())
			return
		}
		l.startRelay(to, id, req.Digest)
	default:
		l.drop(m, "unknown topic kind")
	}
}

func (l *Link) handleStatus(m mqtt.Message, id string, payload []byte, sink Sink) {
	var s wire.Status
	if err := wire.Decode(payload, &s); err != nil {
		l.drop(m, err.Error())
		return
	}
	if s.ID != id {
		l.drop(m, "status id does not match topic")
		return
	}
	switch s.State {
	case wire.StateOnline:
		l.mu.Lock()
		l.instances[id] = s.Instance
		l.mu.Unlock()
		l.sinkErr(m, sink.PropletUp(l.ctx, propletFromStatus(s, time.Now())))
	case wire.StateOffline:
		// When a restarted proplet takes over its own session, the broker
		// publishes the old connection's will, possibly after the new
		// instance said it is online. That will is stale.
		l.mu.Lock()
		cur, known := l.instances[id]
		l.mu.Unlock()
		if known && s.Instance != "" && cur != "" && s.Instance != cur {
			l.log.Debug("ignoring stale offline status", "proplet", id, "instance", s.Instance, "current", cur)
			return
		}
		l.sinkErr(m, sink.PropletDown(l.ctx, id))
	default:
		l.drop(m, "unknown proplet state")
	}
}

func (l *Link) drop(m mqtt.Message, why string) {
	l.dropped.Add(1)
	l.log.Warn("dropping mqtt message", "topic", m.Topic(), "reason", why)
}

func (l *Link) sinkErr(m mqtt.Message, err error) {
	if err != nil {
		l.sinkErrs.Add(1)
		l.log.Warn("sink refused mqtt message", "topic", m.Topic(), "error", err)
	}
}

// startRelay serves a blob in the background, so a large transfer never
// delays status or events of the proplet that asked for it.
func (l *Link) startRelay(to receivers, id, digest string) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case l.relays <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		defer func() { <-l.relays }()
		if err := l.relay(to.tasks, id, digest); err != nil {
			l.relayFails.Add(1)
			l.log.Warn("artifact relay failed", "proplet", id, "digest", digest, "error", err)
			return
		}
		l.relayed.Add(1)
	}()
}

// relay publishes a blob as numbered chunks on the proplet's chunks topic;
// on any problem, a request for a blob none of its tasks uses included, it
// sends a single chunk carrying Error instead.
func (l *Link) relay(tasks Assignments, id, digest string) error {
	topic := l.topics.ArtifactChunks(id)
	var data []byte
	err := l.authorize(tasks, id, digest)
	if err == nil {
		data, err = l.blobFor(digest)
	}
	if err != nil {
		tok := l.publishChunk(topic, &wire.ArtifactChunk{Digest: digest, Total: 1, Error: err.Error()})
		if perr := l.waitToken(tok); perr != nil {
			return fmt.Errorf("%w (error chunk not sent: %v)", err, perr)
		}
		return err
	}
	size := l.cfg.ChunkSize
	total := max(1, (len(data)+size-1)/size)
	var pending []mqtt.Token
	for i := range total {
		end := min((i+1)*size, len(data))
		tok := l.publishChunk(topic, &wire.ArtifactChunk{
			Digest: digest, Index: i, Total: total, Size: int64(len(data)), Data: data[i*size : end],
		})
		pending = append(pending, tok)
		// A small window keeps a big blob from flooding the connection
		// while still overlapping round trips.
		if len(pending) >= relayWindow {
			if err := l.waitToken(pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
	}
	for _, tok := range pending {
		if err := l.waitToken(tok); err != nil {
			return err
		}
	}
	return nil
}

func (l *Link) blobFor(digest string) ([]byte, error) {
	if !orchestration.ValidDigest(digest) {
		return nil, fmt.Errorf("invalid digest %q", digest)
	}
	if l.cfg.Blobs == nil {
		return nil, fmt.Errorf("artifact relay disabled")
	}
	data, err := l.cfg.Blobs.Blob(l.ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	// A corrupt store must not make every proplet fail verification with
	// a confusing reason; say what happened here.
	sum := sha256.Sum256(data)
	if "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("blob %s: stored bytes do not match digest", digest)
	}
	return data, nil
}

func (l *Link) publishChunk(topic string, c *wire.ArtifactChunk) mqtt.Token {
	payload, err := wire.Encode(c)
	if err != nil {
		panic(err) // ArtifactChunk always encodes
	}
	return l.client.Publish(topic, 1, false, payload)
}

func (l *Link) waitToken(tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-l.ctx.Done():
		return l.ctx.Err()
	}
}
