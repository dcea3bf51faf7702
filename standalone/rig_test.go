package standalone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/storage/memory"
)

const token = "s3cret"

type nopDispatcher struct{}

func (nopDispatcher) StartTask(context.Context, string, orchestration.Task, orchestration.StartWindow) error {
	return nil
}
func (nopDispatcher) StopTask(context.Context, string, string, int, string) error { return nil }

// apiRig is the REST API as the standalone manager mounts it: its bearer
// token and its credential store (nil: an external broker).
type apiRig struct {
	t   *testing.T
	srv *httptest.Server
}

func newAPIRig(t *testing.T, creds *standalone.Credentials) *apiRig {
	t.Helper()
	eng, err := orchestration.New(orchestration.Config{}, orchestration.Deps{Store: memory.New(), Dispatcher: nopDispatcher{}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	cfg := rest.Config{Engine: eng, Blobs: bs, Auth: standalone.BearerToken(token), Logger: slog.New(slog.DiscardHandler)}
	if creds != nil {
		cfg.Credentials = creds
	}
	h, err := rest.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiRig{t: t, srv: srv}
}

func (r *apiRig) do(method, path, contentType string, body []byte, auth string) (int, map[string]any) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, bytes.NewReader(body))
	require.NoError(r.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(r.t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp.StatusCode, out
}

func (r *apiRig) json(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(r.t, err)
	return r.do(method, path, "application/json", b, "Bearer "+token)
}
