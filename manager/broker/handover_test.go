package broker

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// The hook's branches, driven without a real takeover race; the race
// itself is TestSessionTakeoverLosesNoAcknowledgedMessage.
func TestHandoverHook(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h := newHandoverHook(slog.New(slog.NewTextHandler(io.Discard, nil)))
	replaced := map[*mqtt.Client]bool{}
	h.takenOver = func(cl *mqtt.Client) bool { return replaced[cl] }

	conn := func(clean bool) (*mqtt.Client, <-chan string) {
		server, client := net.Pipe()
		t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
		cl := srv.NewClient(server, "test", "manager", false)
		cl.Properties.ProtocolVersion = 4
		cl.Properties.Clean = clean
		got := make(chan string, 10)
		go func() {
			for {
				p, err := pahopackets.ReadPacket(client)
				if err != nil {
					return
				}
				if pub, ok := p.(*pahopackets.PublishPacket); ok {
					got <- string(pub.Payload)
				}
			}
		}()
		return cl, got
	}
	publish := func(payload string) packets.Packet {
		return packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   "propeller/v1/proplets/p1/events",
			Payload:     []byte(payload),
			PacketID:    7,
		}
	}
	recv := func(ch <-chan string) string {
		select {
		case s := <-ch:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("nothing delivered")
			return ""
		}
	}

	old, oldGot := conn(false)
	h.OnSessionEstablished(old, packets.Packet{})
	// Not taken over: mochi delivers it itself.
	h.OnQosPublish(old, publish("ordinary"), 0, 0)
	require.Empty(t, h.orphans)

	replaced[old] = true
	h.OnQosPublish(old, publish("before"), 0, 0)
	next, nextGot := conn(false)
	h.OnSessionEstablished(next, packets.Packet{})
	require.Equal(t, "before", recv(nextGot))
	h.OnQosPublish(old, publish("after"), 0, 0)
	require.Equal(t, "after", recv(nextGot))
	require.Equal(t, 2, next.State.Inflight.Len(), "re-queued messages stay in flight until acknowledged")
	require.Empty(t, oldGot)

	// A successor replaced before it was established leaves the orphans
	// to its own successor; one replaced while they are re-queued on it
	// passes them on.
	replaced[next] = true
	h.OnQosPublish(next, publish("chained"), 0, 0)
	early, earlyGot := conn(false)
	replaced[early] = true
	h.OnSessionEstablished(early, packets.Packet{})
	require.Len(t, h.orphans["manager"], 1, "kept for the connection that owns the session")
	last, lastGot := conn(false)
	h.OnSessionEstablished(last, packets.Packet{})
	require.Equal(t, "chained", recv(lastGot))
	h.requeue(early, publish("late"))
	require.Equal(t, "late", recv(lastGot), "re-routed from a replaced connection")
	require.Empty(t, earlyGot)

	// A clean successor asked for the old session to be dropped.
	replaced[last] = true
	h.OnQosPublish(last, publish("dropped"), 0, 0)
	clean, cleanGot := conn(true)
	h.OnSessionEstablished(clean, packets.Packet{})
	require.Zero(t, clean.State.Inflight.Len())
	require.Empty(t, cleanGot)

	h.OnDisconnect(clean, nil, true)
	require.Empty(t, h.live)
}
