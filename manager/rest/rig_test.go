package rest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/storage/memory"
)

const token = "s3cret"

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type recordingDispatcher struct {
	mu     sync.Mutex
	starts []orchestration.Task
	stops  []string
}

func (d *recordingDispatcher) StartTask(_ context.Context, _ string, t orchestration.Task, _ orchestration.StartWindow) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts = append(d.starts, t)
	return nil
}

func (d *recordingDispatcher) StopTask(_ context.Context, _, id string, _ int, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stops = append(d.stops, id)
	return nil
}

// bearer is the standalone manager's authenticator, in small.
type bearer string

func (b bearer) Authenticate(r *http.Request) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || tok == "":
		return errors.New("missing bearer token")
	case tok != string(b):
		return errors.New("invalid bearer token")
	}
	return nil
}

// syncBuffer collects the access log across the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log lines written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m), string(l))
		out = append(out, m)
	}
	return out
}

// apiRig is the API over a real engine on storage/memory, the FL
// coordinator and a blob store in a temporary directory.
type apiRig struct {
	t    *testing.T
	srv  *httptest.Server
	eng  *orchestration.Engine
	fl   *fl.Coordinator
	disp *recordingDispatcher
	logs *syncBuffer
}

// newRig builds the rig; mutate adjusts the API's config before New.
func newRig(t *testing.T, mutate func(*rest.Config)) *apiRig {
	t.Helper()
	disp := &recordingDispatcher{}
	eng, err := orchestration.New(orchestration.Config{}, orchestration.Deps{Store: memory.New(), Dispatcher: disp, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	c, err := fl.New(fl.Config{}, fl.Deps{Store: memory.NewFLStore(), Engine: eng, Blobs: bs, Models: ocipush.Models{},
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	logs := &syncBuffer{}
	cfg := rest.Config{Engine: eng, Blobs: bs, Auth: bearer(token), MaxUploadBytes: 1024,
		FL:     &rest.FL{Jobs: c, Blobs: bs},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := rest.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiRig{t: t, srv: srv, eng: eng, fl: c, disp: disp, logs: logs}
}

func newAPIRig(t *testing.T) *apiRig { return newRig(t, nil) }

// request sends one request; header holds extra headers.
func (r *apiRig) request(method, path, contentType string, body []byte, header http.Header) *http.Response {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, bytes.NewReader(body))
	require.NoError(r.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	r.t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// decode reads a JSON (or problem) body.
func decode(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	}
	return out
}

func (r *apiRig) do(method, path, contentType string, body []byte, auth string) (int, map[string]any) {
	r.t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	resp := r.request(method, path, contentType, body, h)
	return resp.StatusCode, decode(r.t, resp)
}

func (r *apiRig) json(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(r.t, err)
	return r.do(method, path, "application/json", b, "Bearer "+token)
}
