package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// broker is a real MQTT broker on a loopback port that a test can stop and
// start again on the same port.
type broker interface {
	URL() string
	Stop(t testing.TB)
	Start(t testing.TB)
	// KeepsSessions reports whether sessions survive Stop/Start.
	KeepsSessions() bool
	// Gate, when closed, refuses connections from client id; only
	// brokers that do not keep sessions need it (see reconnect test).
	Gate(clientID string, open bool)
}

type brokerKind struct {
	name  string
	start func(t testing.TB) broker
}

var brokerKinds = []brokerKind{
	{"mochi", func(t testing.TB) broker { return startMochi(t) }},
	{"mosquitto", func(t testing.TB) broker { return startMosquitto(t) }},
}

// gateHook allows everything except client ids whose gate is closed.
type gateHook struct {
	mochi.HookBase
	closed *sync.Map
}

func (h *gateHook) ID() string { return "test-gate" }

func (h *gateHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (h *gateHook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	_, shut := h.closed.Load(string(cl.ID))
	return !shut
}

func (h *gateHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

type mochiBroker struct {
	addr   string
	srv    *mochi.Server
	closed sync.Map
}

func startMochi(t testing.TB) *mochiBroker {
	b := &mochiBroker{addr: "127.0.0.1:0"}
	b.Start(t)
	t.Cleanup(func() {
		if b.srv != nil {
			b.srv.Close()
		}
	})
	return b
}

func (b *mochiBroker) URL() string         { return "mqtt://" + b.addr }
func (b *mochiBroker) KeepsSessions() bool { return false }
func (b *mochiBroker) Gate(id string, open bool) {
	if open {
		b.closed.Delete(id)
	} else {
		b.closed.Store(id, true)
	}
}

func (b *mochiBroker) Start(t testing.TB) {
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, srv.AddHook(&gateHook{closed: &b.closed}, nil))
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.addr})
	require.NoError(t, srv.AddListener(l))
	require.NoError(t, srv.Serve())
	b.addr = l.Address()
	b.srv = srv
}

// inflight is the number of QoS 1 messages the broker sent client id that
// it has no PUBACK for.
func (b *mochiBroker) inflight(id string) int {
	cl, ok := b.srv.Clients.Get(id)
	if !ok {
		return -1
	}
	return cl.State.Inflight.Len()
}

func (b *mochiBroker) Stop(testing.TB) {
	b.srv.Close()
	b.srv = nil
}

type mosquittoBroker struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startMosquitto(t testing.TB) *mosquittoBroker {
	b := &mosquittoBroker{dir: t.TempDir(), port: freePort(t)}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 0
user root
log_dest file %s/mosquitto.log
log_type error
log_type warning
max_queued_messages 100000
`, b.port, b.dir, b.dir)
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600))
	b.Start(t)
	t.Cleanup(func() {
		if b.cmd != nil {
			b.Stop(t)
		}
	})
	return b
}

func (b *mosquittoBroker) URL() string         { return fmt.Sprintf("mqtt://127.0.0.1:%d", b.port) }
func (b *mosquittoBroker) KeepsSessions() bool { return true }
func (b *mosquittoBroker) Gate(string, bool)   {}
func (b *mosquittoBroker) addr() string        { return fmt.Sprintf("127.0.0.1:%d", b.port) }
func (b *mosquittoBroker) logTail() string {
	d, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
	return string(d)
}

func (b *mosquittoBroker) Start(t testing.TB) {
	cmd := exec.Command("/usr/sbin/mosquitto", "-c", filepath.Join(b.dir, "mosquitto.conf"))
	require.NoError(t, cmd.Start())
	b.cmd = cmd
	b.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(b.done)
	}()
	waitTCP(t, b.addr(), b.done, b.logTail)
}

// Stop terminates mosquitto gracefully so it writes its persistence file.
func (b *mosquittoBroker) Stop(t testing.TB) {
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGTERM))
	<-b.done
	b.cmd = nil
}

// waitTCP waits until addr accepts connections, the readiness signal
// mosquitto gives, or the process died.
func waitTCP(t testing.TB, addr string, died <-chan struct{}, logs func() string) {
	dead := false
	require.Eventually(t, func() bool {
		select {
		case <-died:
			dead = true
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 20*time.Second, 10*time.Millisecond)
	require.False(t, dead, "broker exited before listening: %s", logs())
}

// proxy forwards TCP to a broker and can cut every connection abruptly,
// which is how a proplet whose link dies looks to the broker.
type proxy struct {
	ln     net.Listener
	target string
	refuse atomic.Bool
	// blackhole drops what clients send, keeping their connections up:
	// publishes and acks vanish as on a dead link not yet noticed.
	blackhole atomic.Bool
	dropped   atomic.Int64
	mu        sync.Mutex
	conns     map[net.Conn]bool
	accepts   atomic.Int64
}

func startProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Cut(true)
	})
	return p
}

func (p *proxy) URL() string { return "mqtt://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.accepts.Add(1)
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go pipe(c, up)
		go p.upstream(up, c)
	}
}

// upstream copies a client's bytes to the broker, or drops them while the
// proxy is a black hole.
func (p *proxy) upstream(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.blackhole.Load() {
				p.dropped.Add(int64(n))
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Blackhole starts or stops dropping what clients send.
func (p *proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// Dropped is the number of client bytes dropped so far.
func (p *proxy) Dropped() int64 { return p.dropped.Load() }

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every proxied connection; with refuse, new ones are refused
// until Allow.
func (p *proxy) Cut(refuse bool) {
	p.refuse.Store(refuse)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			// RST instead of FIN: the broker must see an abrupt loss.
			_ = tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) Allow() { p.refuse.Store(false) }
