// Package mqtttest starts real brokers (the embedded one and Mosquitto) for
// tests and provides raw paho clients that play proplets.
package mqtttest

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/manager/mosquitto"
)

// Manager credentials used by every Env.
const (
	ManagerUser   = "manager"
	ManagerSecret = "manager-secret"
	JoinToken     = "join-token"
)

// KnownProplets have credentials on every Env (Mosquitto needs them listed).
var KnownProplets = []string{"a", "b", "c", "p1", "p2", "p3"}

// Env is a running broker.
type Env struct {
	Name string
	URL  string // mqtt://host:port
	// Secret returns the password proplet id logs in with.
	Secret func(id string) string
	// Restart stops the broker and starts it again on the same address;
	// sessions and retained messages are lost. Nil if unsupported.
	Restart func(t *testing.T)
}

// Logger returns a quiet logger for tests.
func Logger() *slog.Logger {
	if os.Getenv("MQTTTEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Embedded starts manager/broker on 127.0.0.1:0.
func Embedded(t *testing.T) Env {
	t.Helper()
	b, err := broker.New(broker.Config{
		Addr:          "127.0.0.1:0",
		ManagerUser:   ManagerUser,
		ManagerSecret: ManagerSecret,
		Authenticator: broker.NewTokenCredentials(JoinToken),
		Logger:        Logger(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return Env{
		Name:   "embedded",
		URL:    "mqtt://" + b.Addr(),
		Secret: func(string) string { return JoinToken },
	}
}

// Mosquitto starts /usr/sbin/mosquitto with a configuration from
// manager/mosquitto on a free loopback port.
func Mosquitto(t *testing.T) Env {
	t.Helper()
	secrets := map[string]string{}
	for _, id := range KnownProplets {
		secrets[id] = "secret-" + id
	}
	dir := t.TempDir()
	var addr, conf string
	writeConf := func() {
		addr = FreeAddr(t)
		var err error
		conf, err = mosquitto.Write(dir, mosquitto.Config{
			Listen:        addr,
			ManagerUser:   ManagerUser,
			ManagerSecret: ManagerSecret,
			Proplets:      secrets,
			User:          runAs(),
		})
		require.NoError(t, err)
	}

	var mu sync.Mutex
	var cmd *exec.Cmd
	var exited chan struct{}
	// start returns Mosquitto's log if it exited instead of listening.
	start := func(t *testing.T) string {
		c := exec.Command("/usr/sbin/mosquitto", "-c", conf)
		logf, err := os.Create(dir + "/mosquitto.log")
		require.NoError(t, err)
		c.Stdout, c.Stderr = logf, logf
		require.NoError(t, c.Start())
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done); _ = logf.Close() }()
		mu.Lock()
		cmd, exited = c, done
		mu.Unlock()
		t.Cleanup(func() { stop(c, done) })
		require.Eventually(t, func() bool {
			select {
			case <-done:
				return true
			default:
			}
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false
			}
			_ = conn.Close()
			return true
		}, 10*time.Second, 20*time.Millisecond)
		select {
		case <-done:
			log, _ := os.ReadFile(dir + "/mosquitto.log")
			return string(log)
		default:
			return ""
		}
	}
	// Another process may grab the free port before Mosquitto binds it
	// (other test binaries run in parallel): try again on a new port.
	var failure string
	for range 5 {
		writeConf()
		if failure = start(t); failure == "" {
			break
		}
	}
	require.Empty(t, failure, "mosquitto did not start")
	return Env{
		Name:   "mosquitto",
		URL:    "mqtt://" + addr,
		Secret: func(id string) string { return secrets[id] },
		Restart: func(t *testing.T) {
			mu.Lock()
			c, done := cmd, exited
			mu.Unlock()
			stop(c, done)
			require.Empty(t, start(t), "mosquitto did not restart")
		},
	}
}

func stop(c *exec.Cmd, done <-chan struct{}) {
	_ = c.Process.Kill()
	<-done
}

// runAs keeps Mosquitto as the current user when tests run as root, so it
// can read the 0600 files in the test's temp dir.
func runAs() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return ""
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// Envs returns constructors for every broker the tests run against.
func Envs() []func(*testing.T) Env {
	return []func(*testing.T) Env{Embedded, Mosquitto}
}

// Proplet is a raw MQTT client acting as a proplet.
type Proplet struct {
	ID     string
	Client paho.Client
	Topics wire.Topics

	mu   sync.Mutex
	conn net.Conn
}

// ProplerOpts tweak a proplet's connection.
type ProplerOpts struct {
	ClientID string
	Password string
	// Will, when set, is registered as the retained last-will on the
	// proplet's status topic.
	Will *wire.Status
	// WillTopic overrides the will topic.
	WillTopic string
}

// Connect connects a proplet and returns the connect error (nil on
// success). The client is disconnected at cleanup.
func Connect(t *testing.T, env Env, id string, o ProplerOpts) (*Proplet, error) {
	t.Helper()
	p := &Proplet{ID: id}
	if o.ClientID == "" {
		// Unique per connection: mochi keys session cleanup by client id,
		// and a quick reconnect with the same id after a clean disconnect
		// can lose its fresh subscriptions to the old session's cleanup.
		o.ClientID = UniqueClientID(wire.PropletClientID(id))
	}
	if o.Password == "" {
		o.Password = env.Secret(id)
	}
	u, err := url.Parse(env.URL)
	require.NoError(t, err)
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + u.Host).
		SetClientID(o.ClientID).
		SetUsername(id).
		SetPassword(o.Password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).
		SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", uri.Host, 5*time.Second)
			if err == nil {
				p.mu.Lock()
				p.conn = c
				p.mu.Unlock()
			}
			return c, err
		})
	if o.Will != nil {
		payload, err := wire.Encode(o.Will)
		require.NoError(t, err)
		topic := o.WillTopic
		if topic == "" {
			topic = p.Topics.Status(id)
		}
		opts.SetBinaryWill(topic, payload, 1, true)
	}
	p.Client = paho.NewClient(opts)
	tok := p.Client.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second), "connect timed out")
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.Client.Disconnect(0) })
	return p, nil
}

var clientSeq atomic.Uint64

// UniqueClientID returns base + ":" + a process-wide sequence number.
func UniqueClientID(base string) string {
	return base + wire.ClientIDSeparator + strconv.FormatUint(clientSeq.Add(1), 10)
}

// MustConnect is Connect that fails the test on error.
func MustConnect(t *testing.T, env Env, id string, o ProplerOpts) *Proplet {
	t.Helper()
	p, err := Connect(t, env, id, o)
	require.NoError(t, err)
	return p
}

// Publish encodes msg and publishes it with QoS 1 on the proplet's topic of
// the given kind, waiting for the broker's ack.
func (p *Proplet) Publish(t *testing.T, kind string, msg any, retained bool) {
	t.Helper()
	payload, err := wire.Encode(msg)
	require.NoError(t, err)
	p.PublishRaw(t, p.Topics.For(p.ID, kind), payload, retained)
}

// PublishRaw publishes bytes with QoS 1 and waits for the ack.
func (p *Proplet) PublishRaw(t *testing.T, topic string, payload []byte, retained bool) {
	t.Helper()
	tok := p.Client.Publish(topic, 1, retained, payload)
	require.True(t, tok.WaitTimeout(10*time.Second), "publish timed out")
	require.NoError(t, tok.Error())
}

// Subscribe subscribes with QoS 1 and returns the granted QoS (0x80 means
// refused) and a channel of received messages.
func (p *Proplet) Subscribe(t *testing.T, filter string) (byte, <-chan paho.Message) {
	t.Helper()
	ch := make(chan paho.Message, 256)
	tok := p.Client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m })
	require.True(t, tok.WaitTimeout(10*time.Second), "subscribe timed out")
	require.NoError(t, tok.Error())
	return tok.(*paho.SubscribeToken).Result()[filter], ch
}

// Kill closes the TCP connection without sending DISCONNECT, so the broker
// publishes the last-will.
func (p *Proplet) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		_ = p.conn.Close()
	}
}
