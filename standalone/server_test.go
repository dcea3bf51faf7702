package standalone_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/standalone"
)

// selfSigned writes a certificate for 127.0.0.1 and returns its paths and
// a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "propeller-test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSEverywhere runs the whole standalone manager with a certificate:
// the REST API is HTTPS only, the embedded broker MQTT over TLS only, and
// the token files are created private.
func TestTLSEverywhere(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
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
