package broker_test

import (
	"crypto/tls"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/test/mqtttest"
)

var topics wire.Topics

// observer is a raw client logged in as the manager that sees everything.
func observer(t *testing.T, env mqtttest.Env) <-chan paho.Message {
	t.Helper()
	p, err := mqtttest.Connect(t, env, mqtttest.ManagerUser, mqtttest.ProplerOpts{
		ClientID: mqtttest.UniqueClientID(wire.ManagerClientID + "-observer"),
		Password: mqtttest.ManagerSecret,
	})
	require.NoError(t, err)
	qos, ch := p.Subscribe(t, "#")
	require.Equal(t, byte(1), qos)
	return ch
}

func managerClient(t *testing.T, env mqtttest.Env) *mqtttest.Proplet {
	t.Helper()
	return mqtttest.MustConnect(t, env, mqtttest.ManagerUser, mqtttest.ProplerOpts{
		ClientID: mqtttest.UniqueClientID(wire.ManagerClientID),
		Password: mqtttest.ManagerSecret,
	})
}

// waitFor returns the first message on topic and fails if any other
// message arrives first: the positive control that replaces sleeping.
func waitFor(t *testing.T, ch <-chan paho.Message, topic string, forbidden func(paho.Message) bool) paho.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			require.False(t, forbidden(m), "received forbidden message on %s: %s", m.Topic(), m.Payload())
			if m.Topic() == topic {
				return m
			}
		case <-timeout:
			t.Fatalf("no message on %s", topic)
		}
	}
}

func TestAuthentication(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			cases := []struct {
				name string
				user string
				o    mqtttest.ProplerOpts
				ok   bool
			}{
				{name: "proplet with its secret", user: "a", ok: true},
				{name: "wrong password", user: "a", o: mqtttest.ProplerOpts{Password: "nope"}},
				{name: "manager user with a proplet secret", user: mqtttest.ManagerUser, o: mqtttest.ProplerOpts{Password: env.Secret("a"), ClientID: "x"}},
				{name: "manager user with wrong secret", user: mqtttest.ManagerUser, o: mqtttest.ProplerOpts{Password: "guess", ClientID: wire.ManagerClientID}},
				{name: "unknown or invalid id", user: "a+b", o: mqtttest.ProplerOpts{Password: env.Secret("a"), ClientID: "a+b"}},
				{name: "manager with its secret", user: mqtttest.ManagerUser, o: mqtttest.ProplerOpts{Password: mqtttest.ManagerSecret, ClientID: wire.ManagerClientID + "-t"}, ok: true},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					_, err := mqtttest.Connect(t, env, tc.user, tc.o)
					if tc.ok {
						require.NoError(t, err)
					} else {
						require.Error(t, err)
					}
				})
			}
		})
	}
}

func TestEmbeddedRefusesForeignClientIDAndWill(t *testing.T) {
	env := mqtttest.Embedded(t)
	cases := []struct {
		name string
		o    mqtttest.ProplerOpts
		ok   bool
	}{
		{name: "own id", o: mqtttest.ProplerOpts{ClientID: "a"}, ok: true},
		{name: "own id with suffix", o: mqtttest.ProplerOpts{ClientID: "a:1"}, ok: true},
		{name: "other proplet's id", o: mqtttest.ProplerOpts{ClientID: "b"}},
		{name: "id sharing a prefix", o: mqtttest.ProplerOpts{ClientID: "ab"}},
		{name: "manager client id", o: mqtttest.ProplerOpts{ClientID: wire.ManagerClientID}},
		{name: "own will", o: mqtttest.ProplerOpts{ClientID: "a:w", Will: &wire.Status{ID: "a", State: wire.StateOffline}}, ok: true},
		{name: "will on another proplet", o: mqtttest.ProplerOpts{ClientID: "a:w2", Will: &wire.Status{ID: "b", State: wire.StateOffline}, WillTopic: topics.Status("b")}},
		{name: "will on commands", o: mqtttest.ProplerOpts{ClientID: "a:w3", Will: &wire.Status{ID: "a"}, WillTopic: topics.Commands("a")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mqtttest.Connect(t, env, "a", tc.o)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// A login with another proplet's client id must not take over its session,
// on either broker (Mosquitto forces client id = username).
func TestCannotKickAnotherProplet(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			b := mqtttest.MustConnect(t, env, "b", mqtttest.ProplerOpts{})
			qos, bCmds := b.Subscribe(t, topics.Commands("b"))
			require.Equal(t, byte(1), qos)

			_, _ = mqtttest.Connect(t, env, "a", mqtttest.ProplerOpts{ClientID: "b"})

			mgr := managerClient(t, env)
			mgr.PublishRaw(t, topics.Commands("b"), []byte(`{"v":1,"type":"stop"}`), false)
			select {
			case <-bCmds:
			case <-time.After(10 * time.Second):
				t.Fatal("b was disconnected")
			}
			require.True(t, b.Client.IsConnectionOpen())
		})
	}
}

func TestSubscribeACL(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			cases := []struct {
				filter string
				ok     bool
			}{
				{filter: topics.Commands("a"), ok: true},
				{filter: topics.ArtifactChunks("a"), ok: true},
				{filter: topics.Commands("b")},
				{filter: topics.AllOf(wire.KindCommands)},
				{filter: topics.Proplet("b") + "/#"},
				{filter: topics.Events("b")},
				{filter: topics.Status("b")},
				{filter: "#"},
				{filter: "elsewhere/a/commands"},
			}
			for i, tc := range cases {
				t.Run(tc.filter, func(t *testing.T) {
					a := mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{})
					_, own := a.Subscribe(t, topics.Commands("a"))
					qos, got := a.Subscribe(t, tc.filter)
					if tc.ok {
						require.Equal(t, byte(1), qos)
						return
					}
					if env.Name == "embedded" {
						require.Equal(t, byte(0x80), qos)
					} // Mosquitto grants, then filters every delivery.

					mgr := managerClient(t, env)
					secret := []byte(`{"v":1,"type":"stop","stop":{"task_id":"secret` + string(rune('0'+i)) + `"}}`)
					for _, tp := range []string{topics.Commands("b"), topics.Events("b"), topics.Status("b"), "elsewhere/a/commands"} {
						mgr.PublishRaw(t, tp, secret, false)
					}
					mgr.PublishRaw(t, topics.Commands("a"), []byte("control"), false)
					select {
					case m := <-own:
						require.Equal(t, "control", string(m.Payload()))
					case <-time.After(10 * time.Second):
						t.Fatal("control message not received")
					}
					// paho hands a message to every local handler whose
					// filter matches, so a's own commands may show up here.
					for len(got) > 0 {
						m := <-got
						require.Equal(t, topics.Commands("a"), m.Topic(), "refused filter %s received a foreign message", tc.filter)
					}
				})
			}
		})
	}
}

func TestPublishACL(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			seen := observer(t, env)
			cases := []struct {
				topic string
				ok    bool
			}{
				{topic: topics.Events("a"), ok: true},
				{topic: topics.Heartbeat("a"), ok: true},
				{topic: topics.Status("a"), ok: true},
				{topic: topics.FLUpdates("a"), ok: true},
				{topic: topics.ArtifactRequest("a"), ok: true},
				{topic: topics.Events("b")},
				{topic: topics.Status("b")},
				{topic: topics.Commands("b")},
				{topic: topics.Commands("a")},
				{topic: topics.ArtifactChunks("a")},
				{topic: "elsewhere"},
			}
			for _, tc := range cases {
				for _, qos := range []byte{0, 1} {
					t.Run(tc.topic+"/qos"+string(rune('0'+qos)), func(t *testing.T) {
						a := mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{})
						payload := []byte("attack " + t.Name())
						tok := a.Client.Publish(tc.topic, qos, false, payload)
						// The embedded broker drops a v3 client that
						// publishes QoS 1 where it may not, Mosquitto acks
						// and discards: either way the token completes.
						require.True(t, tok.WaitTimeout(10*time.Second))
						if tc.ok {
							require.NoError(t, tok.Error())
							waitFor(t, seen, tc.topic, func(paho.Message) bool { return false })
							return
						}
						// Control from a fresh connection of another
						// proplet: it reaches the observer after anything
						// the broker routed for the attack.
						c := mqtttest.MustConnect(t, env, "c", mqtttest.ProplerOpts{})
						if qos == 0 && a.Client.IsConnectionOpen() {
							// QoS 0 has no ack; a follow-up on the same
							// connection orders behind the attack.
							a.Publish(t, wire.KindHeartbeat, &wire.Heartbeat{ID: "a"}, false)
						}
						c.PublishRaw(t, topics.Events("c"), []byte("control"), false)
						waitFor(t, seen, topics.Events("c"), func(m paho.Message) bool {
							return string(m.Payload()) == string(payload)
						})
					})
				}
			}
		})
	}
}

func TestLastWillReachesManager(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			seen := observer(t, env)
			p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{Will: &wire.Status{ID: "p1", State: wire.StateOffline}})
			p.Kill()
			m := waitFor(t, seen, topics.Status("p1"), func(paho.Message) bool { return false })
			var s wire.Status
			require.NoError(t, wire.Decode(m.Payload(), &s))
			require.Equal(t, wire.StateOffline, s.State)
		})
	}
}

func TestTLSListener(t *testing.T) {
	cert := selfSigned(t)
	b, err := broker.New(broker.Config{
		Addr:          "127.0.0.1:0",
		TLS:           &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ManagerUser:   "m",
		ManagerSecret: "s",
		Authenticator: broker.NewTokenCredentials("j"),
		Logger:        mqtttest.Logger(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + b.Addr()).
		SetClientID("p").SetUsername("p").SetPassword("j").
		SetTLSConfig(&tls.Config{InsecureSkipVerify: true}).SetConnectTimeout(5 * time.Second)) //nolint:gosec // self-signed test cert
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	c.Disconnect(0)

	plain := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).
		SetClientID("p").SetUsername("p").SetPassword("j").SetConnectTimeout(2 * time.Second))
	tok = plain.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.Error(t, tok.Error())
	require.Eventually(t, b.Idle, 10*time.Second, 5*time.Millisecond)
}

func TestNewValidates(t *testing.T) {
	_, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Authenticator: broker.NewTokenCredentials("j")})
	require.Error(t, err)
	_, err = broker.New(broker.Config{Addr: "127.0.0.1:0", ManagerUser: "m", ManagerSecret: "s"})
	require.Error(t, err)
}
