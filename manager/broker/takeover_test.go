package broker_test

import (
	"errors"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/test/mqtttest"
)

// A manager that reconnects takes over its own persistent session while
// proplets keep publishing. Every message the broker acknowledged to the
// proplet must reach some incarnation of the manager: the proplet deletes
// a result from its outbox on that acknowledgement.
func TestSessionTakeoverLosesNoAcknowledgedMessage(t *testing.T) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) {
			u, err := url.Parse(env.URL)
			require.NoError(t, err)
			clientID := mqtttest.UniqueClientID(wire.ManagerClientID)
			var mu sync.Mutex
			got := map[string]bool{}
			connect := func() paho.Client {
				opts := paho.NewClientOptions().
					AddBroker("tcp://" + u.Host).
					SetClientID(clientID).
					SetUsername(mqtttest.ManagerUser).
					SetPassword(mqtttest.ManagerSecret).
					SetCleanSession(false).
					SetAutoReconnect(false).
					SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
						mu.Lock()
						got[string(m.Payload())] = true
						mu.Unlock()
					})
				c := paho.NewClient(opts)
				tok := c.Connect()
				require.True(t, tok.WaitTimeout(10*time.Second), "manager connect timed out")
				require.NoError(t, tok.Error())
				t.Cleanup(func() { c.Disconnect(0) })
				return c
			}
			first := connect()
			sub := first.Subscribe(topics.AllOf(wire.KindEvents), 1, nil)
			require.True(t, sub.WaitTimeout(10*time.Second))
			require.NoError(t, sub.Error())

			p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
			const n = 3000
			published := make(chan error, 1)
			go func() {
				topic := topics.For("p1", wire.KindEvents)
				for i := range n {
					tok := p.Client.Publish(topic, 1, false, strconv.Itoa(i))
					if !tok.WaitTimeout(10 * time.Second) {
						published <- errTimeout
						return
					}
					if err := tok.Error(); err != nil {
						published <- err
						return
					}
				}
				published <- nil
			}()

			takeovers := 0
			var pubErr error
		loop:
			for {
				select {
				case pubErr = <-published:
					break loop
				default:
					connect()
					takeovers++
				}
			}
			require.NoError(t, pubErr)
			// The last incarnation stays connected and receives what is
			// still queued.
			missing := func() []int {
				mu.Lock()
				defer mu.Unlock()
				var m []int
				for i := range n {
					if !got[strconv.Itoa(i)] {
						m = append(m, i)
					}
				}
				return m
			}
			require.Eventually(t, func() bool { return len(missing()) == 0 }, 10*time.Second, 10*time.Millisecond,
				"after %d takeovers, acknowledged messages never delivered: %v", takeovers, missing())
			t.Logf("%d messages across %d takeovers", n, takeovers)
		})
	}
}

var errTimeout = errors.New("publish timed out")
