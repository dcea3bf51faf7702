package broker_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/test/mqtttest"
)

func startBroker(t *testing.T) (*broker.Broker, mqtttest.Env) {
	t.Helper()
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", ManagerUser: mqtttest.ManagerUser, ManagerSecret: mqtttest.ManagerSecret,
		Authenticator: broker.NewTokenCredentials(mqtttest.JoinToken), Logger: mqtttest.Logger(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b, mqtttest.Env{Name: "embedded", URL: "mqtt://" + b.Addr(), Secret: func(string) string { return mqtttest.JoinToken }}
}

// TestHugeConnectRefusedUnread: four unauthenticated clients send CONNECT
// headers claiming 256 MiB each. The broker must drop them from the header
// alone: every connection is closed, and the process allocates nothing
// near the claimed size (mochi used to allocate the whole body up front).
func TestHugeConnectRefusedUnread(t *testing.T) {
	b, _ := startBroker(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		c, err := net.Dial("tcp", b.Addr())
		require.NoError(t, err)
		// CONNECT, remaining length 268,435,455 (the MQTT maximum), then
		// the start of a body.
		_, err = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04, 'M', 'Q', 'T', 'T'})
		require.NoError(t, err)
		// Safety net against a hang only; the broker closes at once.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
		_, err = io.ReadAll(c)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the broker kept the connection: %v", err)
		c.Close()
	}
	require.Eventually(t, func() bool { n, _ := b.Oversized(); return n == 4 }, 10*time.Second, time.Millisecond)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("four 256 MiB CONNECT headers allocated %d KiB", allocated>>10)
	require.Less(t, allocated, uint64(64<<20))
}

// TestOversizedPublishDropped: a logged-in proplet's 1 MiB heartbeat is
// dropped and counted; the small heartbeat after it, and an event of the
// same size (events may be larger), arrive.
func TestOversizedPublishDropped(t *testing.T) {
	b, env := startBroker(t)
	seen := observer(t, env)
	p := mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{})
	big := bytes.Repeat([]byte("x"), 1<<20)
	p.PublishRaw(t, topics.Heartbeat("a"), big, false)
	p.PublishRaw(t, topics.Heartbeat("a"), []byte(`{"v":1}`), false)
	m := waitFor(t, seen, topics.Heartbeat("a"), func(m paho.Message) bool { return len(m.Payload()) > broker.DefaultControlBytes })
	require.Equal(t, `{"v":1}`, string(m.Payload()))
	_, dropped := b.Oversized()
	require.Equal(t, uint64(1), dropped)

	event := bytes.Repeat([]byte("e"), broker.DefaultEventBytes-1024)
	p.PublishRaw(t, topics.Events("a"), event, false)
	m = waitFor(t, seen, topics.Events("a"), func(paho.Message) bool { return false })
	require.Len(t, m.Payload(), len(event))
	p.PublishRaw(t, topics.Events("a"), append(event, bytes.Repeat([]byte("e"), 2048)...), false)
	p.PublishRaw(t, topics.Heartbeat("a"), []byte(`{"v":2}`), false)
	waitFor(t, seen, topics.Heartbeat("a"), func(m paho.Message) bool { return len(m.Payload()) > broker.DefaultEventBytes })
	_, dropped = b.Oversized()
	require.Equal(t, uint64(2), dropped)
}
