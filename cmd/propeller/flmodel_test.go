package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
)

// TestModelPullVerifiesDigest: bytes that do not hash to the checkpoint's
// digest (a corrupt store, a proxy) are refused and no file is written.
// The happy path runs against a real manager in test/flstandalone.
func TestModelPullVerifiesDigest(t *testing.T) {
	good := []byte("model bytes")
	sum := sha256.Sum256(good)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var served atomic.Pointer[[]byte]
	bad := []byte("other bytes")
	served.Store(&bad)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/federated-jobs/job/checkpoints":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(rest.CheckpointList{Items: []rest.Checkpoint{{Round: 1, Digest: digest}}})
		case "/v1/models/" + digest:
			_, _ = w.Write(*served.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	out := filepath.Join(t.TempDir(), "m.safetensors")
	pull := func() (int, string) {
		code, _, stderr := runCLI(t, "fl", "model", "pull", "job", "--out", out, "--server", srv.URL, "--token", "x")
		return code, stderr
	}

	code, stderr := pull()
	require.Equal(t, exitFailure, code)
	require.Contains(t, stderr, "model "+digest+": the manager sent 11 bytes hashing to sha256:")
	require.NoFileExists(t, out)
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Empty(t, entries, "no temporary file is left behind")

	served.Store(&good)
	code, stderr = pull()
	require.Equal(t, exitOK, code, stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, good, b)

	for _, args := range [][]string{{}, {"job", "--digest", digest}, {"--digest", "sha256:abc"}, {"job", "--round", "0"}} {
		code, _, stderr := runCLI(t, append([]string{"fl", "model", "pull", "--server", srv.URL, "--token", "x"}, args...)...)
		require.Equal(t, exitUsage, code, "%v: %s", args, stderr)
	}
}
