package standalone_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/test/harness"
)

// TestTLSEverywhere runs the whole standalone manager with a certificate:
// the REST API is HTTPS only, the embedded broker MQTT over TLS only, and
// the token files are created private.
func TestTLSEverywhere(t *testing.T) {
	files := harness.SelfSignedTLS(t)
	certFile, keyFile := files.Cert, files.Key
	caPEM, err := os.ReadFile(files.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan standalone.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- standalone.Run(ctx, standalone.Config{
			DataDir: dataDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
			TLSCert: certFile, TLSKey: keyFile, Logger: slog.New(slog.DiscardHandler),
			Ready: func(a standalone.Addrs) { addrs <- a },
		})
	}()
	var a standalone.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	for _, name := range []string{standalone.APITokenFile, standalone.JoinTokenFile} {
		st, err := os.Stat(filepath.Join(dataDir, name))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), name)
	}

	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := tlsClient.Get("https://" + a.HTTP + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// Go's TLS server answers a plain request with a canned 400.
	if resp, err := http.Get("http://" + a.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP must not be served")
	}

	join, err := os.ReadFile(filepath.Join(dataDir, standalone.JoinTokenFile))
	require.NoError(t, err)
	connect := func(url string, cfg *tls.Config) error {
		opts := paho.NewClientOptions().AddBroker(url).SetClientID("edge-tls").SetUsername("edge-tls").
			SetPassword(strings.TrimSpace(string(join))).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		if cfg != nil {
			opts.SetTLSConfig(cfg)
		}
		c := paho.NewClient(opts)
		tok := c.Connect()
		tok.Wait()
		if tok.Error() == nil {
			c.Disconnect(0)
		}
		return tok.Error()
	}
	require.NoError(t, connect("ssl://"+a.MQTT, &tls.Config{RootCAs: pool}))
	require.Error(t, connect("tcp://"+a.MQTT, nil), "plain MQTT must not be served")
}

// TestClientCAConfig: --tls-client-ca without a server certificate, or
// naming a file without certificates, is refused at start with a message
// that says what to fix.
func TestClientCAConfig(t *testing.T) {
	dir := t.TempDir()
	err := standalone.Run(context.Background(), standalone.Config{DataDir: dir, TLSClientCA: filepath.Join(dir, "ca.pem"), Logger: slog.New(slog.DiscardHandler)})
	require.ErrorContains(t, err, "--tls-client-ca needs --tls-cert and --tls-key")

	f := harness.SelfSignedTLS(t)
	empty := filepath.Join(dir, "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate\n"), 0o600))
	err = standalone.Run(context.Background(), standalone.Config{DataDir: dir, TLSCert: f.Cert, TLSKey: f.Key, TLSClientCA: empty, Logger: slog.New(slog.DiscardHandler)})
	require.ErrorContains(t, err, "no PEM certificates")
}
