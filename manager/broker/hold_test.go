package broker_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestHoldPropletsUntilAdmitted: a fresh embedded broker turns proplets
// away with a retryable code while the manager may log in, and lets them
// in once admitted.
func TestHoldPropletsUntilAdmitted(t *testing.T) {
	b, err := broker.New(broker.Config{
		Addr:          "127.0.0.1:0",
		ManagerUser:   mqtttest.ManagerUser,
		ManagerSecret: mqtttest.ManagerSecret,
		Authenticator: broker.NewTokenCredentials(mqtttest.JoinToken),
		Logger:        mqtttest.Logger(),
		HoldProplets:  true,
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	env := mqtttest.Env{Name: "held", URL: "mqtt://" + b.Addr(), Secret: func(string) string { return mqtttest.JoinToken }}

	connect := func(user, pass string) error {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).
			SetClientID(mqtttest.UniqueClientID(user)).SetUsername(user).SetPassword(pass).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		tok.Wait()
		if tok.Error() == nil {
			c.Disconnect(0)
		}
		return tok.Error()
	}
	require.Error(t, connect("edge-1", mqtttest.JoinToken), "proplet held back")
	managerClient(t, env)
	b.AdmitProplets()
	require.NoError(t, connect("edge-1", mqtttest.JoinToken), "proplet admitted")
}
