package agent_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

// enrollHook plays the embedded broker's enrollment: "join" logs in and is
// sent the secret "issued" on its connection, "issued" logs in, anything
// else is refused. It records every password tried.
type enrollHook struct {
	mochi.HookBase
	mu    sync.Mutex
	tried []string
}

func (h *enrollHook) ID() string { return "test-enroll" }

func (h *enrollHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnSessionEstablished
}

func (h *enrollHook) OnConnectAuthenticate(_ *mochi.Client, pk packets.Packet) bool {
	pw := string(pk.Connect.Password)
	h.mu.Lock()
	h.tried = append(h.tried, pw)
	h.mu.Unlock()
	return pw == "join" || pw == "issued"
}

func (h *enrollHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func (h *enrollHook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	if string(pk.Connect.Password) != "join" {
		return
	}
	id := string(cl.Properties.Username)
	payload, _ := wire.Encode(&wire.Credential{ID: id, Secret: "issued"})
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   wire.Topics{}.Credential(id),
		Payload:     payload,
	})
}

func (h *enrollHook) passwords() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.tried...)
}

func startEnrollBroker(t *testing.T) (string, *enrollHook) {
	t.Helper()
	h := &enrollHook{}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, srv.AddHook(h, nil))
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	require.NoError(t, srv.AddListener(l))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { _ = srv.Close() })
	return "mqtt://" + l.Address(), h
}

// TestEnrollStoresCredential: a proplet that logged in with the join token
// stores the secret it was issued (0600, in its state dir) and logs in
// with it from then on.
func TestEnrollStoresCredential(t *testing.T) {
	url, h := startEnrollBroker(t)
	cfg := testConfig(t, url, randID("p"))
	cfg.Token = "join"
	startAgent(t, cfg, newFakeExec())
	path := filepath.Join(cfg.StateDir, agent.CredentialFile)
	require.Eventually(t, func() bool {
		pws := h.passwords()
		return len(pws) >= 2 && pws[len(pws)-1] == "issued"
	}, waitFor, 10*time.Millisecond, "the proplet logs in with its issued secret")
	require.Equal(t, "join", h.passwords()[0])
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "issued\n", string(b))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// recorder keeps log records.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) matching(substr string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.recs {
		if strings.Contains(rec.Message, substr) {
			out = append(out, rec)
		}
	}
	return out
}

// TestRefusedCredentialExplainedOnceAndBacksOff: a proplet whose stored
// credential the broker refuses (rotated or revoked) says so once, with
// the fix, and waits seconds, not a fraction of one, between tries; with
// the credential file removed it enrolls again with the join token.
func TestRefusedCredentialExplainedOnceAndBacksOff(t *testing.T) {
	url, h := startEnrollBroker(t)
	cfg := testConfig(t, url, randID("p"))
	cfg.Token = "join"
	rec := &recorder{}
	cfg.Logger = slog.New(rec)
	path := filepath.Join(cfg.StateDir, agent.CredentialFile)
	require.NoError(t, os.WriteFile(path, []byte("rotated-out\n"), 0o600))
	startAgent(t, cfg, newFakeExec())

	require.Eventually(t, func() bool { return len(h.passwords()) >= 2 }, waitFor, 10*time.Millisecond)
	explained := rec.matching("revoked or rotated")
	require.Len(t, explained, 1, "explained once, not on every retry")
	require.Equal(t, slog.LevelError, explained[0].Level)
	require.Contains(t, explained[0].Message, "propeller proplet credentials create "+cfg.ID)
	require.Contains(t, explained[0].Message, "remove "+path)
	var wait time.Duration
	explained[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			wait = a.Value.Duration()
		}
		return true
	})
	require.GreaterOrEqual(t, wait, 2*time.Second, "a refused login backs off (MaxReconnectInterval is 500ms here)")
	require.Equal(t, []string{"rotated-out", "rotated-out"}, h.passwords()[:2])

	// The fix the message names: without the file, the join token enrolls.
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool {
		pws := h.passwords()
		return pws[len(pws)-1] == "issued"
	}, 3*waitFor, 10*time.Millisecond)
}
