package broker

import (
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// handoverHook keeps QoS 1 messages that mochi would lose when a client
// takes over its own persistent session (a manager or proplet reconnecting
// before the broker noticed the old connection was gone).
//
// mochi acknowledges a publish before routing it, and routes to the
// subscribers it looked up before the takeover moved the session. A
// message that enters the old connection's in-flight set after the
// takeover copied that set is dropped with the old connection, although
// the publisher already holds its PUBACK. A proplet deletes a result from
// its outbox on that PUBACK, so the result would be gone for good.
//
// Every such message is seen here: the takeover flag is set before the
// copy, so a message added to the old connection after the copy is added
// to a connection already marked as taken over. The hook re-queues it on
// the connection that now owns the session, or, if that one is not
// established yet, once it is.
//
// # Notes
//
//   - A message added just as the flag was set may also have been copied,
//     and is then delivered twice. QoS 1 is at-least-once; the manager and
//     the proplet both treat a repeated message as a no-op.
//   - Takeovers chain under rapid reconnects: a successor replaced before
//     it was established leaves the messages to its own successor, and a
//     message re-queued on a connection replaced meanwhile is re-routed
//     by the same rule.
//   - A successor that starts a clean session gets nothing: the client
//     asked for its old session to be discarded.
type handoverHook struct {
	mqtt.HookBase
	log *slog.Logger
	// takenOver reports whether a connection has lost its session to a
	// newer one; a field so tests can drive the hook without a takeover.
	takenOver func(*mqtt.Client) bool

	mu sync.Mutex
	// live is the established connection of each client id.
	live map[string]*mqtt.Client
	// orphans are messages for a client id whose new connection is not
	// established yet.
	orphans map[string][]packets.Packet
}

func newHandoverHook(log *slog.Logger) *handoverHook {
	return &handoverHook{
		log:       log,
		takenOver: (*mqtt.Client).IsTakenOver,
		live:      make(map[string]*mqtt.Client),
		orphans:   make(map[string][]packets.Packet),
	}
}

func (h *handoverHook) ID() string { return "propeller-session-handover" }

func (h *handoverHook) Provides(b byte) bool {
	return b == mqtt.OnQosPublish || b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

// OnQosPublish runs after mochi added pk to cl's in-flight set.
func (h *handoverHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || !h.takenOver(cl) {
		return
	}
	h.reroute(cl, pk)
}

// reroute hands pk, left on the replaced connection cl, to the connection
// that owns cl's session now, or keeps it until that one is established.
func (h *handoverHook) reroute(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	next := h.live[cl.ID]
	if next == nil || next == cl {
		h.orphans[cl.ID] = append(h.orphans[cl.ID], pk)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.requeue(next, pk)
}

// OnSessionEstablished runs once a connection's CONNACK and in-flight
// resend went out. A connection replaced before it got here leaves the
// orphans to its successor.
func (h *handoverHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	if h.takenOver(cl) {
		h.mu.Unlock()
		return
	}
	h.live[cl.ID] = cl
	orphans := h.orphans[cl.ID]
	delete(h.orphans, cl.ID)
	h.mu.Unlock()
	if cl.Properties.Clean {
		return
	}
	for _, pk := range orphans {
		h.requeue(cl, pk)
	}
}

func (h *handoverHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	if h.live[cl.ID] == cl {
		delete(h.live, cl.ID)
	}
	h.mu.Unlock()
}

// requeue adds pk to cl's in-flight set and sends it. If the send fails
// the message stays in flight and goes out when the session resumes.
func (h *handoverHook) requeue(cl *mqtt.Client, pk packets.Packet) {
	if pk.TopicName == "" {
		// Only an MQTT 5 topic alias leaves the name out; the alias meant
		// something on the old connection only.
		h.log.Warn("mqtt message lost in session takeover: topic alias without name", "client", cl.ID)
		return
	}
	id, err := cl.NextPacketID()
	if err != nil {
		h.log.Warn("mqtt message lost in session takeover: no packet id", "client", cl.ID, "error", err)
		return
	}
	pk.PacketID = uint16(id)
	pk.FixedHeader.Dup = false
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	cl.State.Inflight.Set(pk)
	if h.takenOver(cl) {
		// cl lost the session meanwhile, maybe after the copy: the same
		// reasoning as OnQosPublish, for a message mochi did not route.
		h.reroute(cl, pk)
		return
	}
	if err := cl.WritePacket(pk); err != nil {
		h.log.Debug("mqtt message re-queued after session takeover", "client", cl.ID, "error", err)
	}
}
