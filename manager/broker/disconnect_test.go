package broker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestDisconnectProplet rotates one proplet's credential while it is
// connected: DisconnectProplet drops its connections (and only its), the
// old credential no longer logs in, the new one does.
func TestDisconnectProplet(t *testing.T) {
	creds := broker.NewTokenCredentials(mqtttest.JoinToken)
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", ManagerUser: mqtttest.ManagerUser, ManagerSecret: mqtttest.ManagerSecret,
		Authenticator: creds, Logger: mqtttest.Logger(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	env := mqtttest.Env{Name: "embedded", URL: "mqtt://" + b.Addr(), Secret: func(string) string { return mqtttest.JoinToken }}

	a1 := mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{})
	a2 := mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{})
	other := mqtttest.MustConnect(t, env, "b", mqtttest.ProplerOpts{})
	mgr := managerClient(t, env)

	creds.Issue("a", "a-secret")
	require.Equal(t, 2, b.DisconnectProplet("a"))
	require.Eventually(t, func() bool { return !a1.Client.IsConnectionOpen() && !a2.Client.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	require.True(t, other.Client.IsConnectionOpen())
	require.True(t, mgr.Client.IsConnectionOpen())
	require.Equal(t, 0, b.DisconnectProplet(mqtttest.ManagerUser), "the manager is never disconnected")
	require.Equal(t, 0, b.DisconnectProplet("nobody"))

	_, err = mqtttest.Connect(t, env, "a", mqtttest.ProplerOpts{})
	require.Error(t, err, "the join token no longer works for a")
	mqtttest.MustConnect(t, env, "a", mqtttest.ProplerOpts{Password: "a-secret"})

	creds.Revoke("a")
	require.Equal(t, 1, b.DisconnectProplet("a"))
	_, err = mqtttest.Connect(t, env, "a", mqtttest.ProplerOpts{Password: "a-secret"})
	require.Error(t, err, "a revoked secret no longer works")
}
