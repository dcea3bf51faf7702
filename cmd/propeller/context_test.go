package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// recorder is a manager stand-in that records the bearer token of every
// request and answers with an empty JSON object.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestContextCommands: set, use, current, list and delete edit the file
// they read, and a client command talks to the current context's manager.
func TestContextCommands(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cfg", "config.yaml")
	t.Setenv("PROPELLER_CONFIG", file)
	lab, prod := newRecorder(t), newRecorder(t)
	tokFile := filepath.Join(dir, "lab.token")
	require.NoError(t, os.WriteFile(tokFile, []byte("lab-token\n"), 0o600))

	code, _, stderr := runCLI(t, "context", "current")
	require.Equal(t, exitFailure, code)
	require.Contains(t, stderr, "no current context")

	// A relative token file is stored absolute.
	t.Chdir(dir)
	code, out, stderr := runCLI(t, "context", "set", "edge-lab", "--server", lab.srv.URL, "--token-file", "lab.token")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, `Created context "edge-lab" in `+file+".\n", out)
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	code, _, stderr = runCLI(t, "context", "set", "prod", "--addr", prod.srv.URL, "--token", "prod-token")
	require.Equal(t, exitOK, code, stderr)

	code, _, stderr = runCLI(t, "context", "use", "edge-lab")
	require.Equal(t, exitOK, code, stderr)
	code, out, _ = runCLI(t, "__complete", "context", "use", "")
	require.Equal(t, exitOK, code)
	require.True(t, strings.HasPrefix(out, "edge-lab\nprod\n"), out)
	code, out, _ = runCLI(t, "context", "current")
	require.Equal(t, exitOK, code)
	require.Equal(t, "edge-lab\n", out)

	code, out, _ = runCLI(t, "context", "list", "--no-headers")
	require.Equal(t, exitOK, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{"*", "edge-lab", lab.srv.URL, tokFile}, strings.Fields(lines[0]))
	require.Equal(t, []string{"prod", prod.srv.URL, "(inline)"}, strings.Fields(lines[1]))
	code, out, _ = runCLI(t, "context", "list", "-o", "name")
	require.Equal(t, exitOK, code)
	require.Equal(t, "edge-lab\nprod\n", out)

	// The current context, then --context, then PROPELLER_CONTEXT pick
	// the manager; flags beat the context's settings.
	code, _, stderr = runCLI(t, "task", "list")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, []string{"lab-token"}, lab.tokens())
	code, _, stderr = runCLI(t, "task", "list", "--context", "prod")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, []string{"prod-token"}, prod.tokens())
	t.Setenv("PROPELLER_CONTEXT", "prod")
	code, _, stderr = runCLI(t, "proplet", "list")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, []string{"prod-token", "prod-token"}, prod.tokens())
	code, _, stderr = runCLI(t, "task", "list", "--token", "flag-token")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "flag-token", prod.tokens()[2])
	// A token file on the command line hides the context's inline token.
	code, _, stderr = runCLI(t, "task", "list", "--token-file", tokFile)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "lab-token", prod.tokens()[3])
	code, _, stderr = runCLI(t, "task", "list", "--server", lab.srv.URL)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, []string{"lab-token", "prod-token"}, lab.tokens())
	t.Setenv("PROPELLER_CONTEXT", "")

	code, _, stderr = runCLI(t, "task", "list", "--context", "nope")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `context "nope" is not in `+file+": it has edge-lab, prod")

	// Changing one setting keeps the others; an empty one is removed.
	code, out, stderr = runCLI(t, "context", "set", "edge-lab", "--tls-ca", "")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, `Modified context "edge-lab" in `+file+".\n", out)
	code, out, _ = runCLI(t, "context", "list", "-o", "jsonpath={.contexts.edge-lab.server}")
	require.Equal(t, exitOK, code)
	require.Equal(t, lab.srv.URL+"\n", out)

	code, _, stderr = runCLI(t, "context", "delete", "edge-lab")
	require.Equal(t, exitOK, code, stderr)
	code, _, stderr = runCLI(t, "context", "current")
	require.Equal(t, exitFailure, code, "deleting the current context unsets it: %s", stderr)
	code, _, stderr = runCLI(t, "context", "use", "edge-lab")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `context "edge-lab" is not in`)
	code, _, stderr = runCLI(t, "context", "set", "bad", "--server", "ftp://x")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `--server "ftp://x": want http(s)://host:port`)
	code, _, stderr = runCLI(t, "context", "set", "bad", "--token", "a", "--token-file", "b")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--token and --token-file exclude each other")
}

// TestContextKeepsOtherSettings: rewriting the file for a context keeps
// the flag settings in it.
func TestContextKeepsOtherSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(file, []byte("log-level: debug\nproplet:\n  slots: 6\n  cache-bytes: 536870913\n"), 0o600))
	code, _, stderr := runCLI(t, "--config", file, "context", "set", "a", "--server", "http://127.0.0.1:1")
	require.Equal(t, exitOK, code, stderr)
	_, _, _, p, err := execute(t, "proplet", "--config", file)
	require.NoError(t, err)
	require.Equal(t, 6, p.slots)
	require.EqualValues(t, 536870913, p.cacheBytes)
	require.Equal(t, "debug", p.logLevel)
}
