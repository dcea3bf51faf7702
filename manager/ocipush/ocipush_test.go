package ocipush_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/test/ocitest"
)

// serveRegistry runs an in-process OCI distribution registry on loopback.
func serveRegistry(t *testing.T) string {
	t.Helper()
	return ocitest.Serve(t, nil)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestParseRegistry(t *testing.T) {
	r, err := ocipush.ParseRegistry("oci://127.0.0.1:5000/models/digits")
	require.NoError(t, err)
	require.Equal(t, ocipush.Registry{Host: "127.0.0.1:5000", Repository: "models/digits"}, r)
	require.True(t, r.PlainHTTP())
	require.Equal(t, "oci://127.0.0.1:5000/models/digits", r.String())

	r, err = ocipush.ParseRegistry("oci://ghcr.io/absmach/models")
	require.NoError(t, err)
	require.False(t, r.PlainHTTP(), "only loopback registries use plain HTTP")
	for _, host := range []string{"localhost:5000", "[::1]:5000", "127.0.0.2"} {
		require.True(t, ocipush.IsLoopback(host), host)
	}
	require.False(t, ocipush.IsLoopback("10.0.0.1:5000"))

	for _, bad := range []string{"", "ghcr.io/absmach/models", "oci://ghcr.io", "oci://ghcr.io/m:tag",
		"oci://ghcr.io/m@sha256:" + strings.Repeat("0", 64), "oci://ghcr.io/UPPER"} {
		_, err := ocipush.ParseRegistry(bad)
		require.Error(t, err, bad)
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	reg, err := ocipush.ParseRegistry("oci://" + serveRegistry(t) + "/propeller/checkpoints")
	require.NoError(t, err)
	data := []byte("model bytes\x00\x01\x02")
	res, err := ocipush.Push(t.Context(), reg, "job-round-1", data, ocipush.Options{
		Annotations: map[string]string{"org.opencontainers.image.title": "job-round-1.safetensors"},
	})
	require.NoError(t, err)
	require.Equal(t, sha(data), res.Layer)
	require.Equal(t, reg.String()+":job-round-1@"+res.Manifest, res.Ref)

	for _, ref := range []string{res.Ref, reg.String() + ":job-round-1", reg.String() + "@" + res.Manifest} {
		got, layer, err := ocipush.Pull(t.Context(), ref, ocipush.Options{})
		require.NoError(t, err, ref)
		require.Equal(t, data, got, ref)
		require.Equal(t, res.Layer, layer, ref)
	}

	// Pushing the same bytes again under another tag reuses the blob and
	// yields the same manifest.
	again, err := ocipush.Push(t.Context(), reg, "job-round-2", data, ocipush.Options{
		Annotations: map[string]string{"org.opencontainers.image.title": "job-round-1.safetensors"},
	})
	require.NoError(t, err)
	require.Equal(t, res.Manifest, again.Manifest)

	_, err = ocipush.Push(t.Context(), reg, "bad tag!", data, ocipush.Options{})
	require.Error(t, err)
	_, _, err = ocipush.Pull(t.Context(), reg.String()+":missing", ocipush.Options{})
	require.Error(t, err)
	_, _, err = ocipush.Pull(t.Context(), res.Ref, ocipush.Options{MediaType: "application/other"})
	require.ErrorContains(t, err, "media type")
}

func TestPushToClosedPortFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	reg, err := ocipush.ParseRegistry("oci://" + addr + "/propeller/checkpoints")
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{})
	require.Error(t, err)
}
