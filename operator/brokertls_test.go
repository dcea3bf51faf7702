package operator

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBrokerTLSConfigErrors(t *testing.T) {
	c, err := brokerTLS(Config{})
	require.NoError(t, err)
	require.Nil(t, c, "no files, plain MQTT")
	_, err = brokerTLS(Config{TLSCert: "tls.crt"})
	require.ErrorContains(t, err, "both a certificate and a key")
	_, err = brokerTLS(Config{TLSCert: "tls.crt", TLSKey: "tls.key", Broker: "mqtts://b:8883"})
	require.ErrorContains(t, err, "embedded broker")
	_, err = brokerTLS(Config{TLSCert: "/missing/tls.crt", TLSKey: "/missing/tls.key"})
	require.ErrorContains(t, err, "broker TLS")
}
