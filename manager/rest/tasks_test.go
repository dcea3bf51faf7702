package rest_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

func TestCreateAndGetTask(t *testing.T) {
	r := newAPIRig(t)
	require.NoError(t, r.eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1}))

	code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{
		"name": "add", "file": base64.StdEncoding.EncodeToString(wasmHeader),
		"function": "add", "inputs": []float64{1, 2}, "env": map[string]string{"A": "b"},
		"timeoutSeconds": 2.5, "maxAttempts": 1,
	})
	require.Equal(t, http.StatusCreated, code, body)
	id := body["id"].(string)
	require.Regexp(t, "^"+wire.BlobScheme+"sha256:[0-9a-f]{64}$", body["imageUrl"])
	require.Equal(t, "Scheduled", body["phase"])
	require.Equal(t, "p1", body["propletId"])

	_, err := r.eng.RecordEvent(context.Background(), orchestration.TaskEvent{TaskID: id, Attempt: 1, Type: orchestration.EventSucceeded, Results: []float64{3}})
	require.NoError(t, err)
	code, body = r.json(http.MethodGet, "/v1/tasks/"+id, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Succeeded", body["phase"])
	require.Equal(t, []any{3.0}, body["results"])
	require.Equal(t, 2.5, body["timeoutSeconds"])

	code, body = r.json(http.MethodPost, "/v1/tasks/"+id+"/stop", nil)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "conflict", body["code"])
	require.Equal(t, `task "`+id+`" already finished: it is Succeeded`, body["detail"])
}

// TestCreateWithCandidates: propletIds limits placement to those
// proplets, comes back in the task, and bad sets are refused.
// memoryBytes places a task only where a proplet offers that much; the
// field comes back in the task, and a negative one is refused.
func TestCreateWithMemoryRequest(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "small", Slots: 4, MemoryBytes: 64 << 20}))
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "big", Slots: 4, MemoryBytes: 1 << 30}))
	code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{"imageUrl": "oci://registry.local/app:v1", "memoryBytes": 256 << 20})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "big", body["propletId"])
	require.EqualValues(t, 256<<20, body["memoryBytes"])

	code, body = r.json(http.MethodPost, "/v1/tasks", map[string]any{"imageUrl": "oci://registry.local/app:v1", "memoryBytes": 2 << 30})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "Pending", body["phase"])

	code, body = r.json(http.MethodPost, "/v1/tasks", map[string]any{"imageUrl": "oci://registry.local/app:v1", "memoryBytes": -1})
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, stringOf(body["detail"]), "memoryBytes must not be negative")
}

func TestCreateWithCandidates(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	for _, id := range []string{"p1", "p2", "p3"} {
		require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: id, Slots: 4}))
	}
	for range 4 {
		code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{
			"imageUrl": "oci://registry.local/app:v1", "propletIds": []string{"p3", "p2"},
		})
		require.Equal(t, http.StatusCreated, code, body)
		require.Equal(t, "Scheduled", body["phase"])
		require.Contains(t, []any{"p2", "p3"}, body["propletId"])
		require.Equal(t, []any{"p3", "p2"}, body["propletIds"])
	}

	// No candidate is known: the task waits.
	code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{
		"imageUrl": "oci://registry.local/app:v1", "propletIds": []string{"gone-1", "gone-2"},
	})
	require.Equal(t, http.StatusCreated, code, body)
	require.Equal(t, "Pending", body["phase"])
	code, body = r.json(http.MethodGet, "/v1/tasks/"+body["id"].(string), nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{"gone-1", "gone-2"}, body["propletIds"])

	for _, tc := range []struct {
		name string
		req  map[string]any
		msg  string
	}{
		{"repeated", map[string]any{"propletIds": []string{"p1", "p1"}}, `propletIds lists "p1" twice`},
		{"empty id", map[string]any{"propletIds": []string{"p1", ""}}, "propletIds[1] is empty"},
		{"too many", map[string]any{"propletIds": make([]string, orchestration.MaxPropletIDs+1)}, "at most 1000"},
		{"with a pin", map[string]any{"propletIds": []string{"p1"}, "propletId": "p1"}, "set propletId or propletIds, not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req["imageUrl"] = "oci://registry.local/app:v1"
			code, body := r.json(http.MethodPost, "/v1/tasks", tc.req)
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, stringOf(body["detail"]), tc.msg)
		})
	}
	code, body = r.json(http.MethodGet, "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 5, "refused requests stored nothing")
}

func TestUploadThenStart(t *testing.T) {
	r := newAPIRig(t)
	require.NoError(t, r.eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1}))
	code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{"name": "later", "suspend": true})
	require.Equal(t, http.StatusCreated, code)
	id := body["id"].(string)
	require.Equal(t, true, body["suspend"])

	code, body = r.json(http.MethodPost, "/v1/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusBadRequest, code, "no module yet")
	require.Contains(t, body["detail"], "no module")

	code, body = r.do(http.MethodPut, "/v1/tasks/"+id+"/wasm", "application/wasm", wasmHeader, "Bearer "+token)
	require.Equal(t, http.StatusOK, code, body)
	code, body = r.json(http.MethodPost, "/v1/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "Scheduled", body["phase"])

	code, _ = r.do(http.MethodPut, "/v1/tasks/"+id+"/wasm", "application/wasm", wasmHeader, "Bearer "+token)
	require.Equal(t, http.StatusConflict, code, "module fixed once scheduled")
	code, body = r.json(http.MethodPost, "/v1/tasks/"+id+"/start", nil)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "conflict", body["code"])
	require.Contains(t, body["detail"], "is not suspended")
}

func TestListFiltersAndPages(t *testing.T) {
	r := newAPIRig(t)
	for i := range 5 {
		color := "red"
		if i%2 == 1 {
			color = "blue"
		}
		code, _ := r.json(http.MethodPost, "/v1/tasks", map[string]any{"imageUrl": "oci://r/x:1", "labels": map[string]string{"color": color}})
		require.Equal(t, http.StatusCreated, code)
	}
	code, body := r.json(http.MethodGet, "/v1/tasks?label=color=red&phase=Pending&limit=2", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 2)
	cont := body["continue"].(string)
	require.NotEmpty(t, cont)
	code, body = r.json(http.MethodGet, "/v1/tasks?label=color=red&limit=2&continue="+cont, nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 1)
	require.Empty(t, body["continue"])

	code, body = r.json(http.MethodGet, "/v1/tasks?phase=Exploded", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "invalid-request", body["code"])
	require.Contains(t, body["detail"], `phase "Exploded"`)
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
		{"no token", "GET", "/v1/tasks", "", "", "", 401, "missing bearer token"},
		{"wrong token", "GET", "/v1/tasks", "", "", "Bearer nope", 401, "invalid bearer token"},
		{"basic auth", "GET", "/v1/tasks", "", "", "Basic Zm9vOmJhcg==", 401, "missing bearer token"},
		{"malformed json", "POST", "/v1/tasks", "application/json", `{"name":`, auth, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/tasks", "application/json", `{"nmae":"x"}`, auth, 400, "malformed JSON"},
		{"trailing data", "POST", "/v1/tasks", "application/json", `{"name":"x"} {}`, auth, 400, "malformed JSON"},
		{"wrong type", "POST", "/v1/tasks", "application/json", `{"inputs":"1"}`, auth, 400, "malformed JSON"},
		{"form body", "POST", "/v1/tasks", "application/x-www-form-urlencoded", `name=x`, auth, 415, "application/json"},
		{"not wasm", "POST", "/v1/tasks", "application/json", `{"file":"aGVsbG8="}`, auth, 400, "not a WebAssembly module"},
		{"bad base64", "POST", "/v1/tasks", "application/json", `{"file":"!!"}`, auth, 400, "malformed JSON"},
		{"bad scheme", "POST", "/v1/tasks", "application/json", `{"imageUrl":"ftp://x"}`, auth, 400, `invalid-request imageUrl "ftp://x": want oci://`},
		{"both sources", "POST", "/v1/tasks", "application/json", `{"imageUrl":"oci://x/y","file":"AGFzbQEAAAA="}`, auth, 400, "not both"},
		{"negative timeout", "POST", "/v1/tasks", "application/json", `{"imageUrl":"oci://x/y","timeoutSeconds":-1}`, auth, 400, "invalid-request timeoutSeconds is -1: want 0 to 604800 (168h0m0s)"},
		{"no module", "POST", "/v1/tasks", "application/json", `{"name":"x"}`, auth, 400, "invalid-request give file or imageUrl, or suspend: true"},
		{"too large json", "POST", "/v1/tasks", "application/json", `{"name":"` + strings.Repeat("x", 80<<10) + `"}`, auth, 413, "too large"},
		{"unknown task", "GET", "/v1/tasks/nope", "", "", auth, 404, `not-found task "nope" not found`},
		{"unknown proplet", "GET", "/v1/proplets/nope", "", "", auth, 404, `not-found proplet "nope" not found`},
		{"upload wrong type", "PUT", "/v1/tasks/nope/wasm", "text/plain", "x", auth, 415, "application/wasm"},
		{"upload unknown task", "PUT", "/v1/tasks/nope/wasm", "application/wasm", string(wasmHeader), auth, 404, `not-found task "nope" not found`},
		{"unknown route", "GET", "/v1/nope", "", "", auth, 404, "not-found no route GET /v1/nope"},
		{"bad limit", "GET", "/v1/tasks?limit=x", "", "", auth, 400, `invalid-request limit "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do(tc.method, tc.path, tc.contentType, []byte(tc.body), tc.auth)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, stringOf(body["code"])+" "+stringOf(body["detail"]), tc.errContains)
		})
	}

	t.Run("oversized upload", func(t *testing.T) {
		code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{"name": "x", "suspend": true})
		require.Equal(t, http.StatusCreated, code)
		big := append(append([]byte{}, wasmHeader...), make([]byte, 2048)...)
		code, body = r.do(http.MethodPut, "/v1/tasks/"+body["id"].(string)+"/wasm", "application/wasm", big, auth)
		require.Equal(t, http.StatusRequestEntityTooLarge, code)
		require.Equal(t, "payload-too-large", body["code"])
		require.Contains(t, body["detail"], "module too large")
	})
	code, body := r.json(http.MethodGet, "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 1, "refused requests stored nothing")
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
	code, doc := r.do(http.MethodGet, "/v1/openapi.json", "", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "3.1.0", doc["openapi"])

	// Every route the server has is documented.
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/v1/tasks", "/v1/tasks/{id}", "/v1/tasks/{id}/start", "/v1/tasks/{id}/stop", "/v1/tasks/{id}/wasm", "/v1/proplets", "/v1/proplets/{id}", "/healthz", "/readyz", "/metrics"} {
		require.Contains(t, paths, p)
	}

}

func TestProplets(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "edge-1", Slots: 2, Labels: map[string]string{"zone": "a"}}))
	code, body := r.json(http.MethodGet, "/v1/proplets", nil)
	require.Equal(t, http.StatusOK, code)
	ps := body["items"].([]any)
	require.Len(t, ps, 1)
	p := ps[0].(map[string]any)
	require.Equal(t, "edge-1", p["id"])
	require.Equal(t, true, p["alive"])
	require.Equal(t, 2.0, p["slots"])

	code, _ = r.json(http.MethodDelete, "/v1/proplets/edge-1", nil)
	require.Equal(t, http.StatusNoContent, code)
	code, _ = r.json(http.MethodGet, "/v1/proplets/edge-1", nil)
	require.Equal(t, http.StatusNotFound, code)
}
