package mqttconn_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/mqttconn"
)

func TestEmbedded(t *testing.T) {
	c, err := mqttconn.Open(mqttconn.Config{Addr: "127.0.0.1:0", JoinToken: "j", ManagerSecret: "s", Prefix: "p"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.True(t, strings.HasPrefix(c.Link.BrokerURL, "mqtt://127.0.0.1:"), c.Link.BrokerURL)
	require.Equal(t, "mqtt://"+c.Addr, c.Link.BrokerURL)
	require.Equal(t, wire.ManagerClientID, c.Link.Username)
	require.Equal(t, "s", c.Link.Password)
	require.Equal(t, "p", c.Link.Prefix)
	c.Admit()
}

func TestExternal(t *testing.T) {
	c, err := mqttconn.Open(mqttconn.Config{Broker: "mqtts://broker:8883", User: "m", Password: "pw"})
	require.NoError(t, err)
	require.Equal(t, "mqtts://broker:8883", c.Link.BrokerURL)
	require.Equal(t, "mqtts://broker:8883", c.Addr)
	require.Nil(t, c.Link.TLS, "system roots")
	c.Admit() // no-op
	require.NoError(t, c.Close())

	_, err = mqttconn.Open(mqttconn.Config{Broker: "mqtts://broker:8883", CAFile: filepath.Join(t.TempDir(), "none.pem")})
	require.ErrorContains(t, err, "broker ca")
	bad := filepath.Join(t.TempDir(), "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("not pem"), 0o600))
	_, err = mqttconn.Open(mqttconn.Config{Broker: "mqtts://broker:8883", CAFile: bad})
	require.ErrorContains(t, err, "no PEM certificates")
}
