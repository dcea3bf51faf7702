package standalone_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/storage/memory"
)

const token = "s3cret"

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type recordingDispatcher struct {
	mu     sync.Mutex
	starts []orchestration.Task
	stops  []string
}

func (d *recordingDispatcher) StartTask(_ context.Context, _ string, t orchestration.Task) error {
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

type apiRig struct {
	t    *testing.T
	srv  *httptest.Server
	eng  *orchestration.Engine
	disp *recordingDispatcher
}

func newAPIRig(t *testing.T) *apiRig {
	t.Helper()
	disp := &recordingDispatcher{}
	eng, err := orchestration.New(orchestration.Config{}, orchestration.Deps{Store: memory.New(), Dispatcher: disp, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	e, err := standalone.NewAPI(standalone.APIConfig{Engine: eng, Blobs: bs, Token: token, MaxUploadBytes: 1024})
	require.NoError(t, err)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &apiRig{t: t, srv: srv, eng: eng, disp: disp}
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

func TestCreateAndGetTask(t *testing.T) {
	r := newAPIRig(t)
	require.NoError(t, r.eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1}))

	code, body := r.json(http.MethodPost, "/tasks", map[string]any{
		"name": "add", "file": base64.StdEncoding.EncodeToString(wasmHeader),
		"function": "add", "inputs": []float64{1, 2}, "env": map[string]string{"A": "b"},
		"timeout_seconds": 2.5, "max_attempts": 1,
	})
	require.Equal(t, http.StatusCreated, code, body)
	id := body["id"].(string)
	require.Regexp(t, `^blob://sha256:[0-9a-f]{64}$`, body["image_url"])
	require.Equal(t, "Scheduled", body["state"])
	require.Equal(t, "p1", body["proplet_id"])

	_, err := r.eng.RecordEvent(context.Background(), orchestration.TaskEvent{TaskID: id, Attempt: 1, Type: orchestration.EventSucceeded, Results: []float64{3}})
	require.NoError(t, err)
	code, body = r.json(http.MethodGet, "/tasks/"+id, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Succeeded", body["state"])
	require.Equal(t, []any{3.0}, body["results"])
	require.Equal(t, 2.5, body["timeout_seconds"])

	code, body = r.json(http.MethodPost, "/tasks/"+id+"/stop", nil)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "task already finished", body["error"])
}

// TestCreateWithCandidates: proplet_ids limits placement to those
// proplets, comes back in the task, and bad sets are refused.
// memory_bytes places a task only where a proplet offers that much; the
// field comes back in the task, and a negative one is refused.
func TestCreateWithMemoryRequest(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "small", Slots: 4, MemoryBytes: 64 << 20}))
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "big", Slots: 4, MemoryBytes: 1 << 30}))
	code, body := r.json(http.MethodPost, "/tasks", map[string]any{"image_url": "oci://registry.local/app:v1", "memory_bytes": 256 << 20})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "big", body["proplet_id"])
	require.EqualValues(t, 256<<20, body["memory_bytes"])

	code, body = r.json(http.MethodPost, "/tasks", map[string]any{"image_url": "oci://registry.local/app:v1", "memory_bytes": 2 << 30})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "Pending", body["state"])

	code, body = r.json(http.MethodPost, "/tasks", map[string]any{"image_url": "oci://registry.local/app:v1", "memory_bytes": -1})
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, stringOf(body["details"]), "memory_bytes must not be negative")
}

func TestCreateWithCandidates(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	for _, id := range []string{"p1", "p2", "p3"} {
		require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: id, Slots: 4}))
	}
	for range 4 {
		code, body := r.json(http.MethodPost, "/tasks", map[string]any{
			"image_url": "oci://registry.local/app:v1", "proplet_ids": []string{"p3", "p2"},
		})
		require.Equal(t, http.StatusCreated, code, body)
		require.Equal(t, "Scheduled", body["state"])
		require.Contains(t, []any{"p2", "p3"}, body["proplet_id"])
		require.Equal(t, []any{"p3", "p2"}, body["proplet_ids"])
	}

	// No candidate is known: the task waits.
	code, body := r.json(http.MethodPost, "/tasks", map[string]any{
		"image_url": "oci://registry.local/app:v1", "proplet_ids": []string{"gone-1", "gone-2"},
	})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "Pending", body["state"])
	code, body = r.json(http.MethodGet, "/tasks/"+body["id"].(string), nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{"gone-1", "gone-2"}, body["proplet_ids"])

	for _, tc := range []struct {
		name string
		req  map[string]any
		msg  string
	}{
		{"repeated", map[string]any{"proplet_ids": []string{"p1", "p1"}}, `proplet_ids lists "p1" twice`},
		{"empty id", map[string]any{"proplet_ids": []string{"p1", ""}}, "proplet_ids[1] is empty"},
		{"too many", map[string]any{"proplet_ids": make([]string, orchestration.MaxPropletIDs+1)}, "at most 1000"},
		{"with a pin", map[string]any{"proplet_ids": []string{"p1"}, "proplet_id": "p1"}, "set proplet_id or proplet_ids, not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req["image_url"] = "oci://registry.local/app:v1"
			code, body := r.json(http.MethodPost, "/tasks", tc.req)
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, stringOf(body["details"]), tc.msg)
		})
	}
	code, body = r.json(http.MethodGet, "/tasks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["tasks"], 5, "refused requests stored nothing")
}

func TestUploadThenStart(t *testing.T) {
	r := newAPIRig(t)
	require.NoError(t, r.eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1}))
	code, body := r.json(http.MethodPost, "/tasks", map[string]any{"name": "later"})
	require.Equal(t, http.StatusCreated, code)
	id := body["id"].(string)
	require.Equal(t, true, body["suspend"])

	code, body = r.json(http.MethodPost, "/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusBadRequest, code, "no module yet")
	require.Contains(t, body["details"], "no module")

	code, body = r.do(http.MethodPut, "/tasks/"+id+"/wasm", "application/wasm", wasmHeader, "Bearer "+token)
	require.Equal(t, http.StatusOK, code, body)
	code, body = r.json(http.MethodPost, "/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "Scheduled", body["state"])

	code, _ = r.do(http.MethodPut, "/tasks/"+id+"/wasm", "application/wasm", wasmHeader, "Bearer "+token)
	require.Equal(t, http.StatusConflict, code, "module fixed once scheduled")
	code, body = r.json(http.MethodPost, "/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "task is not suspended", body["error"])
}

func TestListFiltersAndPages(t *testing.T) {
	r := newAPIRig(t)
	for i := range 5 {
		color := "red"
		if i%2 == 1 {
			color = "blue"
		}
		code, _ := r.json(http.MethodPost, "/tasks", map[string]any{"image_url": "oci://r/x:1", "labels": map[string]string{"color": color}})
		require.Equal(t, http.StatusCreated, code)
	}
	code, body := r.json(http.MethodGet, "/tasks?label=color=red&state=Pending&limit=2", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["tasks"], 2)
	cont := body["continue"].(string)
	require.NotEmpty(t, cont)
	code, body = r.json(http.MethodGet, "/tasks?label=color=red&limit=2&continue="+cont, nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["tasks"], 1)
	require.Nil(t, body["continue"])

	code, body = r.json(http.MethodGet, "/tasks?state=Exploded", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "invalid state filter", body["error"])
}

func TestBadInput(t *testing.T) {
	r := newAPIRig(t)
	auth := "Bearer " + token
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		auth        string
		code        int
		errContains string
	}{
		{"no token", "GET", "/tasks", "", "", "", 401, "missing bearer token"},
		{"wrong token", "GET", "/tasks", "", "", "Bearer nope", 401, "invalid bearer token"},
		{"basic auth", "GET", "/tasks", "", "", "Basic Zm9vOmJhcg==", 401, "missing bearer token"},
		{"malformed json", "POST", "/tasks", "application/json", `{"name":`, auth, 400, "malformed JSON"},
		{"unknown field", "POST", "/tasks", "application/json", `{"nmae":"x"}`, auth, 400, "malformed JSON"},
		{"trailing data", "POST", "/tasks", "application/json", `{"name":"x"} {}`, auth, 400, "malformed JSON"},
		{"wrong type", "POST", "/tasks", "application/json", `{"inputs":"1"}`, auth, 400, "malformed JSON"},
		{"form body", "POST", "/tasks", "application/x-www-form-urlencoded", `name=x`, auth, 415, "application/json"},
		{"not wasm", "POST", "/tasks", "application/json", `{"file":"aGVsbG8="}`, auth, 400, "not a WebAssembly module"},
		{"bad base64", "POST", "/tasks", "application/json", `{"file":"!!"}`, auth, 400, "malformed JSON"},
		{"bad scheme", "POST", "/tasks", "application/json", `{"image_url":"ftp://x"}`, auth, 400, "invalid request"},
		{"both sources", "POST", "/tasks", "application/json", `{"image_url":"oci://x/y","file":"AGFzbQEAAAA="}`, auth, 400, "not both"},
		{"negative timeout", "POST", "/tasks", "application/json", `{"image_url":"oci://x/y","timeout_seconds":-1}`, auth, 400, "invalid request"},
		{"too large json", "POST", "/tasks", "application/json", `{"name":"` + strings.Repeat("x", 80<<10) + `"}`, auth, 413, "too large"},
		{"unknown task", "GET", "/tasks/nope", "", "", auth, 404, "not found"},
		{"unknown proplet", "GET", "/proplets/nope", "", "", auth, 404, "not found"},
		{"upload wrong type", "PUT", "/tasks/nope/wasm", "text/plain", "x", auth, 415, "application/wasm"},
		{"upload unknown task", "PUT", "/tasks/nope/wasm", "application/wasm", string(wasmHeader), auth, 404, "not found"},
		{"unknown route", "GET", "/nope", "", "", auth, 404, "Not Found"},
		{"bad limit", "GET", "/tasks?limit=x", "", "", auth, 400, "invalid limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do(tc.method, tc.path, tc.contentType, []byte(tc.body), tc.auth)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body["error"].(string)+" "+stringOf(body["details"]), tc.errContains)
		})
	}

	t.Run("oversized upload", func(t *testing.T) {
		code, body := r.json(http.MethodPost, "/tasks", map[string]any{"name": "x"})
		require.Equal(t, http.StatusCreated, code)
		big := append(append([]byte{}, wasmHeader...), make([]byte, 2048)...)
		code, body = r.do(http.MethodPut, "/tasks/"+body["id"].(string)+"/wasm", "application/wasm", big, auth)
		require.Equal(t, http.StatusRequestEntityTooLarge, code)
		require.Equal(t, "module too large", body["error"])
	})
	code, body := r.json(http.MethodGet, "/tasks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["tasks"], 1, "refused requests stored nothing")
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func TestPublicRoutesAndOpenAPI(t *testing.T) {
	r := newAPIRig(t)
	code, _ := r.do(http.MethodGet, "/healthz", "", nil, "")
	require.Equal(t, http.StatusOK, code)
	code, _ = r.do(http.MethodGet, "/readyz", "", nil, "")
	require.Equal(t, http.StatusOK, code)
	code, doc := r.do(http.MethodGet, "/openapi.json", "", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "3.0.3", doc["openapi"])

	// Every route the server has is documented.
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/tasks", "/tasks/{id}", "/tasks/{id}/start", "/tasks/{id}/stop", "/tasks/{id}/wasm", "/proplets", "/proplets/{id}", "/healthz", "/readyz", "/metrics"} {
		require.Contains(t, paths, p)
	}

	committed, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	embedded, err := os.ReadFile("openapi.yaml")
	require.NoError(t, err)
	require.Equal(t, string(embedded), string(committed), "docs/openapi.yaml is stale: cp standalone/openapi.yaml docs/")
}

func TestProplets(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "edge-1", Slots: 2, Labels: map[string]string{"zone": "a"}}))
	code, body := r.json(http.MethodGet, "/proplets", nil)
	require.Equal(t, http.StatusOK, code)
	ps := body["proplets"].([]any)
	require.Len(t, ps, 1)
	p := ps[0].(map[string]any)
	require.Equal(t, "edge-1", p["id"])
	require.Equal(t, true, p["alive"])
	require.Equal(t, 2.0, p["slots"])

	code, _ = r.json(http.MethodDelete, "/proplets/edge-1", nil)
	require.Equal(t, http.StatusNoContent, code)
	code, _ = r.json(http.MethodGet, "/proplets/edge-1", nil)
	require.Equal(t, http.StatusNotFound, code)
}
