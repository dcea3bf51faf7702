package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration/fl"
)

// Limits bound what one MQTT packet may cost the manager (docs/protocol.md,
// "Packet sizes"). Zero fields take the defaults.
type Limits struct {
	// Connect bounds the CONNECT packet, the only one read before a client
	// logged in; its size is checked from the fixed header, before mochi
	// allocates its body. Default 64 KiB.
	Connect int
	// Control bounds what a proplet publishes on status, heartbeat and
	// artifacts/request. Default 64 KiB.
	Control int
	// Events bounds a proplet's task event: the stdout and stderr tails
	// (64 KiB each by default, up to 6 bytes per byte once JSON-escaped)
	// and the results. Default 1 MiB.
	Events int
	// FLUpdates bounds an FL update: a tensor of the coordinator's
	// MaxUpdateBytes, base64 in JSON, plus 64 KiB of envelope
	// (FLUpdateBytes). Default for fl.DefaultMaxUpdateBytes.
	FLUpdates int
}

// Defaults of Limits.
const (
	DefaultConnectBytes = 64 << 10
	DefaultControlBytes = 64 << 10
	DefaultEventBytes   = 1 << 20
	envelopeBytes       = 64 << 10
	// connectHeaderTimeout bounds how long a new connection may take to
	// send the first bytes of its CONNECT.
	connectHeaderTimeout = 10 * time.Second
)

// FLUpdateBytes is the FL updates limit for tensors of maxUpdateBytes.
func FLUpdateBytes(maxUpdateBytes int) int {
	return (maxUpdateBytes+2)/3*4 + envelopeBytes
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Connect, DefaultConnectBytes)
	def(&l.Control, DefaultControlBytes)
	def(&l.Events, DefaultEventBytes)
	def(&l.FLUpdates, FLUpdateBytes(fl.DefaultMaxUpdateBytes))
	return l
}

// packetMax is the broker-wide MaximumPacketSize: the largest topic limit,
// so mochi refuses anything larger from its fixed header, for every client.
// The manager's own packets (start commands, 256 KiB relay chunks) are far
// below it.
func (l Limits) packetMax() uint32 {
	return uint32(max(l.Connect, l.Control, l.Events, l.FLUpdates, 2<<20))
}

func (l Limits) forKind(kind string) int {
	switch kind {
	case wire.KindEvents:
		return l.Events
	case wire.KindFLUpdates:
		return l.FLUpdates
	default:
		return l.Control
	}
}

var errConnectTooLarge = errors.New("CONNECT packet too large")

// admitConnect reads the fixed header of a new connection's first packet
// and refuses it unless it is a CONNECT of at most limit bytes; then the
// returned conn replays those bytes to mochi. Without this mochi would
// allocate whatever length an unauthenticated client claims (256 MiB from
// one header) before the login is checked.
func admitConnect(c net.Conn, limit int) (net.Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(connectHeaderTimeout)); err != nil {
		return nil, err
	}
	var head []byte
	one := make([]byte, 1)
	readByte := func() (byte, error) {
		if _, err := io.ReadFull(c, one); err != nil {
			return 0, err
		}
		head = append(head, one[0])
		return one[0], nil
	}
	typ, err := readByte()
	if err != nil {
		return nil, err
	}
	if typ>>4 != packets.Connect {
		return nil, fmt.Errorf("first packet is type %d, not CONNECT", typ>>4)
	}
	remaining, mult := 0, 1
	for i := 0; ; i++ {
		b, err := readByte()
		if err != nil {
			return nil, err
		}
		remaining += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return nil, errors.New("malformed remaining length")
		}
		mult *= 128
	}
	if remaining+len(head) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errConnectTooLarge, remaining+len(head), limit)
	}
	// mochi sets its own deadlines from here on (keepalive).
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(head), c)}, nil
}

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sizeHook drops a proplet's publish larger than its topic's limit; the
// packet is acknowledged (a QoS 1 sender would otherwise resend it
// forever) but neither delivered nor retained.
type sizeHook struct {
	mqtt.HookBase
	limits  Limits
	topics  wire.Topics
	manager string
	log     *slog.Logger
	dropped *atomic.Uint64
}

func (h *sizeHook) ID() string { return "propeller-size" }

func (h *sizeHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *sizeHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	user := string(cl.Properties.Username)
	if user == h.manager {
		return pk, nil
	}
	_, kind, err := h.topics.Parse(pk.TopicName)
	if err != nil {
		return pk, nil // the ACL refuses it
	}
	if limit := h.limits.forKind(kind); len(pk.Payload) > limit {
		h.dropped.Add(1)
		h.log.Warn("mqtt publish dropped: payload over its topic's limit", "user", user, "topic", pk.TopicName,
			"bytes", len(pk.Payload), "limit", limit)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// unwrapConn returns the connection admitConnect wrapped (a *tls.Conn on
// a TLS listener), for what needs its concrete type.
func unwrapConn(c net.Conn) net.Conn {
	if r, ok := c.(*replayConn); ok {
		return r.Conn
	}
	return c
}
