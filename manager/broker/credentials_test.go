package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/broker"
)

func TestTokenCredentials(t *testing.T) {
	c := broker.NewTokenCredentials("join")
	c.Issue("own", "own-secret")
	cases := []struct {
		id, secret string
		ok         bool
	}{
		{"any", "join", true},
		{"any", "Join", false},
		{"any", "", false},
		{"own", "own-secret", true},
		// An issued credential replaces the join token for that id.
		{"own", "join", false},
		{"other", "own-secret", false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.ok, (c.Check(tc.id, tc.secret) != broker.LoginRefused), "%s/%s", tc.id, tc.secret)
	}
	c.Revoke("own")
	require.True(t, (c.Check("own", "join") != broker.LoginRefused))
	require.False(t, (c.Check("own", "own-secret") != broker.LoginRefused))

	noJoin := broker.NewTokenCredentials("")
	require.False(t, (noJoin.Check("x", "") != broker.LoginRefused))
	noJoin.Issue("x", "s")
	require.True(t, (noJoin.Check("x", "s") != broker.LoginRefused))

	s1, err := broker.NewSecret()
	require.NoError(t, err)
	s2, err := broker.NewSecret()
	require.NoError(t, err)
	require.Len(t, s1, 64)
	require.NotEqual(t, s1, s2)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestOwnsClientID(t *testing.T) {
	cases := []struct {
		id, client string
		ok         bool
	}{
		{"a", "a", true},
		{"a", "a:1", true},
		{"a", "a:", false},
		{"a", "ab", false},
		{"a", "b", false},
		{"a", "a-1", false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.ok, wire.OwnsClientID(tc.id, tc.client), "%s/%s", tc.id, tc.client)
	}
}
