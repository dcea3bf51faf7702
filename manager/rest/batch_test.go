package rest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/test/apitest"
)

// post sends a JSON body with the token and, when key is not empty, an
// Idempotency-Key.
func (r *apiRig) post(path, body, key string) *http.Response {
	r.t.Helper()
	h := http.Header{"Authorization": {"Bearer " + token}}
	if key != "" {
		h.Set(api.HeaderIdempotencyKey, key)
	}
	return r.request(http.MethodPost, path, "application/json", []byte(body), h)
}

func (r *apiRig) taskCount() int {
	r.t.Helper()
	code, body := r.json(http.MethodGet, "/v1/tasks?limit=1000", nil)
	require.Equal(r.t, http.StatusOK, code)
	items, _ := body["items"].([]any)
	return len(items)
}

func itemIDs(t *testing.T, body map[string]any) []string {
	t.Helper()
	items, ok := body["items"].([]any)
	require.True(t, ok, "%v", body)
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.(map[string]any)["id"].(string)
	}
	return out
}

func TestBatchCreate(t *testing.T) {
	r := newAPIRig(t)
	require.NoError(t, r.eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1}))
	code, body := r.json(http.MethodPost, "/v1/tasks:batch", map[string]any{"tasks": []map[string]any{
		{"name": "inline", "file": base64.StdEncoding.EncodeToString(wasmHeader), "function": "add", "inputs": []float64{1, 2}},
		{"name": "by-url", "imageUrl": "oci://registry.local/app:v1", "labels": map[string]string{"k": "v"}},
		{"name": "later", "suspend": true},
	}})
	require.Equal(t, http.StatusCreated, code, body)
	items := body["items"].([]any)
	require.Len(t, items, 3)
	for i, want := range []struct{ name, phase string }{{"inline", "Scheduled"}, {"by-url", "Pending"}, {"later", "Pending"}} {
		it := items[i].(map[string]any)
		require.Equal(t, want.name, it["name"], "in request order")
		require.Equal(t, want.phase, it["phase"], it["name"])
		code, got := r.json(http.MethodGet, "/v1/tasks/"+it["id"].(string), nil)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, it["id"], got["id"])
	}
	require.Regexp(t, "^blob://sha256:", items[0].(map[string]any)["imageUrl"])
	require.Equal(t, "Suspended", items[2].(map[string]any)["reason"])
	require.Equal(t, 3, r.taskCount())
}

func TestBatchRefusals(t *testing.T) {
	r := newAPIRig(t)
	one := `{"imageUrl":"oci://x/y"}`
	many := `{"tasks":[` + strings.TrimSuffix(strings.Repeat(one+",", orchestration.MaxBatchSize+1), ",") + `]}`
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		detail     string
	}{
		{"empty", `{"tasks":[]}`, 400, api.CodeInvalidRequest, "tasks is empty: a batch holds 1 to 1000 tasks"},
		{"no tasks field", `{}`, 400, api.CodeInvalidRequest, "tasks is empty: a batch holds 1 to 1000 tasks"},
		{"too many", many, 400, api.CodeInvalidRequest, "tasks holds 1001 tasks: a batch holds at most 1000; split it"},
		{"no module", `{"tasks":[` + one + `,{"name":"x"}]}`, 400, api.CodeInvalidRequest,
			"give tasks[1].file or tasks[1].imageUrl, or tasks[1].suspend: true to upload the module later with PUT /v1/tasks/{id}/wasm"},
		{"engine refuses one", `{"tasks":[` + one + `,` + one + `,{"imageUrl":"ftp://x"}]}`, 400, api.CodeInvalidRequest,
			`tasks[2]: imageUrl "ftp://x": want oci://, http://, https:// or blob://sha256:<hex>`},
		{"not wasm", `{"tasks":[{"file":"aGVsbG8="}]}`, 400, api.CodeInvalidRequest, "tasks[0].file is not a WebAssembly module: a module starts with \\0asm and version 1"},
		{"unknown field", `{"tasks":[],"extra":1}`, 400, api.CodeMalformedBody, `malformed JSON body: json: unknown field "extra"`},
		{"an array body", `[` + one + `]`, 400, api.CodeMalformedBody, "malformed JSON body: json: cannot unmarshal array into Go value of type rest.TaskBatchRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.post("/v1/tasks:batch", tc.body, "")
			require.Equal(t, tc.status, resp.StatusCode)
			p := decode(t, resp)
			require.Equal(t, tc.code, p["code"])
			require.Equal(t, tc.detail, p["detail"])
			require.Zero(t, r.taskCount(), "a refused batch creates nothing")
		})
	}

	// ':' is a literal in the route, not a parameter: other suffixes are
	// not routes, and the batch takes only POST.
	code, body := r.json(http.MethodPost, "/v1/tasks:other", map[string]any{"tasks": []any{}})
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "no route POST /v1/tasks:other", body["detail"])
	resp := r.request(http.MethodGet, "/v1/tasks:batch", "", nil, http.Header{"Authorization": {"Bearer " + token}})
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Allow"), http.MethodPost)
}

func TestCreateWithIdempotencyKey(t *testing.T) {
	r := newAPIRig(t)
	const body = `{"name":"once","imageUrl":"oci://x/y","labels":{"a":"1","b":"2"}}`
	first := r.post("/v1/tasks", body, "key-1")
	require.Equal(t, http.StatusCreated, first.StatusCode)
	require.Empty(t, first.Header.Get(api.HeaderIdempotentReplay))
	id := decode(t, first)["id"]

	// The same request, serialised another way: keys reordered, spaces.
	again := r.post("/v1/tasks", `{ "labels": {"b":"2", "a":"1"}, "imageUrl": "oci://x/y", "name": "once" }`, "key-1")
	require.Equal(t, http.StatusCreated, again.StatusCode)
	require.Equal(t, "true", again.Header.Get(api.HeaderIdempotentReplay))
	require.Equal(t, first.Header.Get("Location"), again.Header.Get("Location"))
	require.Equal(t, id, decode(t, again)["id"])
	require.Equal(t, 1, r.taskCount())

	for _, tc := range []struct {
		name, path, body, key string
		status                int
		code, detail          string
	}{
		{"another body", "/v1/tasks", `{"name":"twice","imageUrl":"oci://x/y"}`, "key-1", 422, api.CodeIdempotencyKeyReused, `idempotency key "key-1" was used at `},
		{"another route", "/v1/tasks:batch", `{"tasks":[` + body + `]}`, "key-1", 422, api.CodeIdempotencyKeyReused, `idempotency key "key-1" was used at `},
		{"key too long", "/v1/tasks", body, strings.Repeat("k", 256), 400, api.CodeInvalidRequest, "Idempotency-Key is longer than 255 characters"},
		{"not ascii", "/v1/tasks", body, "clé", 400, api.CodeInvalidRequest, "Idempotency-Key holds byte 0xc3 at 2: use printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.post(tc.path, tc.body, tc.key)
			require.Equal(t, tc.status, resp.StatusCode)
			p := decode(t, resp)
			require.Equal(t, tc.code, p["code"])
			require.Contains(t, p["detail"], tc.detail)
			require.Equal(t, 1, r.taskCount(), "nothing created")
		})
	}
	require.True(t, strings.HasSuffix(decode(t, r.post("/v1/tasks", `{"name":"x","imageUrl":"oci://x/y"}`, "key-1"))["detail"].(string), "for a different request"))

	t.Run("empty or repeated header", func(t *testing.T) {
		for _, vals := range [][]string{{""}, {"a", "b"}} {
			resp := r.request(http.MethodPost, "/v1/tasks", "application/json", []byte(body),
				http.Header{"Authorization": {"Bearer " + token}, api.HeaderIdempotencyKey: vals})
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
			require.Contains(t, decode(t, resp)["detail"], "Idempotency-Key is ")
		}
		require.Equal(t, 1, r.taskCount())
	})

	// A key whose task was deleted since cannot answer with it.
	code, _ := r.json(http.MethodDelete, fmt.Sprintf("/v1/tasks/%s", id), nil)
	require.Equal(t, http.StatusNoContent, code)
	gone := r.post("/v1/tasks", body, "key-1")
	require.Equal(t, http.StatusConflict, gone.StatusCode)
	require.Equal(t, fmt.Sprintf(`task %s, created under idempotency key "key-1", has since been deleted; use a new Idempotency-Key to create it again`, id), decode(t, gone)["detail"])
}

func TestBatchWithIdempotencyKey(t *testing.T) {
	r := newAPIRig(t)
	body := `{"tasks":[{"name":"a","imageUrl":"oci://x/a"},{"name":"b","imageUrl":"oci://x/b"}]}`
	first := r.post("/v1/tasks:batch", body, "batch-1")
	require.Equal(t, http.StatusCreated, first.StatusCode)
	ids := itemIDs(t, decode(t, first))
	again := r.post("/v1/tasks:batch", body, "batch-1")
	require.Equal(t, http.StatusCreated, again.StatusCode)
	require.Equal(t, "true", again.Header.Get(api.HeaderIdempotentReplay))
	require.Equal(t, ids, itemIDs(t, decode(t, again)))
	require.Equal(t, 2, r.taskCount())

	other := r.post("/v1/tasks:batch", `{"tasks":[{"name":"a","imageUrl":"oci://x/a"}]}`, "batch-1")
	require.Equal(t, http.StatusUnprocessableEntity, other.StatusCode)
	require.Equal(t, api.CodeIdempotencyKeyReused, decode(t, other)["code"])
	require.Equal(t, 2, r.taskCount())
}

// TestBatchAndKeysMatchTheDocument: the SDK's batch and keyed creates,
// their replays and a reused key, through the validating transport.
func TestBatchAndKeysMatchTheDocument(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	c, err := api.NewClient(r.srv.URL, token, api.WithHTTPClient(&http.Client{Transport: apitest.Transport(t, nil)}))
	require.NoError(t, err)
	reqs := []api.TaskRequest{{Name: "a", File: wasmHeader}, {Name: "b", ImageURL: "oci://x/b", Suspend: true}}
	var h http.Header
	tasks, err := c.CreateTasks(ctx, reqs, api.WithIdempotencyKey("doc-batch"))
	require.NoError(t, err)
	again, err := c.CreateTasks(ctx, reqs, api.WithIdempotencyKey("doc-batch"), api.WithResponseHeader(&h))
	require.NoError(t, err)
	require.Equal(t, "true", h.Get(api.HeaderIdempotentReplay))
	require.Equal(t, tasks[1].ID, again[1].ID)

	task, err := c.CreateTask(ctx, reqs[1], api.WithIdempotencyKey("doc-one"))
	require.NoError(t, err)
	same, err := c.CreateTask(ctx, reqs[1], api.WithIdempotencyKey("doc-one"), api.WithResponseHeader(&h))
	require.NoError(t, err)
	require.Equal(t, task.ID, same.ID)
	require.Equal(t, "true", h.Get(api.HeaderIdempotentReplay))
	_, err = c.CreateTask(ctx, reqs[0], api.WithIdempotencyKey("doc-one"))
	require.True(t, api.HasCode(err, api.CodeIdempotencyKeyReused), "%v", err)
	_, err = c.CreateTasks(ctx, []api.TaskRequest{{Name: "no module"}})
	require.True(t, api.HasCode(err, api.CodeInvalidRequest), "%v", err)
}
