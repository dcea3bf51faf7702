package standalone

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEnsureTokenWholeAndShared: processes starting at once agree on one
// token, a reader never sees the file empty, and nothing else is left in
// the directory.
func TestEnsureTokenWholeAndShared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api-token")
	log := slog.New(slog.DiscardHandler)
	const n = 8
	toks := make([]string, n)
	done := make(chan struct{})
	var empty bool
	go func() {
		defer close(done)
		for range 2000 {
			b, err := os.ReadFile(path)
			if err == nil && len(b) == 0 {
				empty = true
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok, err := ensureToken(path, log)
			require.NoError(t, err)
			toks[i] = tok
		})
	}
	wg.Wait()
	<-done
	require.False(t, empty, "a reader saw the token file empty")
	for _, tok := range toks {
		require.Len(t, tok, 64)
		require.Equal(t, toks[0], tok)
	}
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files left behind")
}

func TestBearerToken(t *testing.T) {
	auth := BearerToken("s3cret")
	for _, tc := range []struct {
		header, err string
	}{
		{"Bearer s3cret", ""},
		{"", "missing bearer token"},
		{"Bearer ", "missing bearer token"},
		{"Basic czNjcmV0", "missing bearer token"},
		{"bearer s3cret", "missing bearer token"},
		{"Bearer s3cre", "invalid bearer token"},
		{"Bearer s3cret2", "invalid bearer token"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/tasks", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		err := auth.Authenticate(r)
		if tc.err == "" {
			require.NoError(t, err, tc.header)
			continue
		}
		require.ErrorContains(t, err, tc.err, tc.header)
	}
}
