package rest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// storeErrEngine is the real engine whose Get fails as a store can, so
// the mapping of every store error to a problem is tested through HTTP.
type storeErrEngine struct {
	*orchestration.Engine
	err error
}

func (e storeErrEngine) Get(context.Context, string) (orchestration.Task, error) {
	return orchestration.Task{}, e.err
}

// failingBlobs refuses every write, as a full disk does.
type failingBlobs struct{}

func (failingBlobs) PutBytes([]byte) (string, error) {
	return "", errors.New("write /var/lib/propeller/blobs/tmp-1: no space left on device")
}

// TestStoreErrorsBecomeProblems: whatever a store wraps, the caller gets
// a stable code and a detail that names its input, never the store.
func TestStoreErrorsBecomeProblems(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		detail string
	}{
		{fmt.Errorf("bolt: get task %q: %w", "app", orchestration.ErrNotFound), 404, api.CodeNotFound, `task "app" not found`},
		{fmt.Errorf("bolt: create task %q: %w", "app", orchestration.ErrExists), 409, api.CodeAlreadyExists, `task "app" already exists`},
		{fmt.Errorf("bolt: update task %q: %w", "app", orchestration.ErrConflict), 409, api.CodeConflict, `task "app" changed meanwhile; try again`},
		{fmt.Errorf("task app is Running and not suspended: %w", orchestration.ErrConflict), 409, api.CodeConflict, "task app is Running and not suspended"},
		{fmt.Errorf("bolt: put: %w", orchestration.ErrInvalid), 400, api.CodeInvalidRequest, "invalid task"},
		{fmt.Errorf("maxAttempts must be between 0 and 100: %w", orchestration.ErrInvalid), 400, api.CodeInvalidRequest, "maxAttempts must be between 0 and 100"},
		{orchestration.ErrTerminal, 409, api.CodeConflict, `task "app" already finished`},
		{fmt.Errorf("idempotency key \"k\" was used for a different request: %w", orchestration.ErrIdempotencyMismatch), 422, api.CodeIdempotencyKeyReused, `idempotency key "k" was used for a different request`},
		{fmt.Errorf("pull oci://r/m: dial tcp: refused: %w", fl.ErrModelUnavailable), 502, api.CodeBadGateway, "pull oci://r/m: dial tcp: refused: the model registry is unavailable, try again later"},
		{fmt.Errorf("keys: %w", errors.ErrUnsupported), 501, api.CodeNotImplemented, "GET /v1/tasks/app is not supported by this manager"},
		{errors.New("bolt: tx: disk I/O error"), 500, api.CodeInternal, "internal error; the manager's log has the cause under this requestId"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			r := newRig(t, func(c *rest.Config) {
				c.Engine = storeErrEngine{Engine: c.Engine.(*orchestration.Engine), err: tc.err}
			})
			resp := r.request(http.MethodGet, "/v1/tasks/app", "", nil, http.Header{"Authorization": {"Bearer " + token}})
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, api.ProblemContentType, resp.Header.Get("Content-Type"))
			p := decode(t, resp)
			require.Equal(t, tc.code, p["code"])
			require.Equal(t, api.ProblemTypeBase+tc.code, p["type"])
			require.EqualValues(t, tc.status, p["status"])
			require.Equal(t, tc.detail, p["detail"])
			require.Equal(t, "/v1/tasks/app", p["instance"])
			require.Equal(t, resp.Header.Get(api.HeaderRequestID), p["requestId"])
			require.NotContains(t, p["detail"], "bolt")
		})
	}
}

// TestEveryProblemCode reaches each code through a request a client can
// make, and checks the list covers every code the API defines.
func TestEveryProblemCode(t *testing.T) {
	r := newRig(t, func(c *rest.Config) { c.Ready = func() error { return errors.New("not connected to the MQTT broker") } })
	full := newRig(t, func(c *rest.Config) { c.Blobs = failingBlobs{} })
	auth := http.Header{"Authorization": {"Bearer " + token}}
	seen := map[string]bool{}
	for _, tc := range []struct {
		name         string
		rig          *apiRig
		method, path string
		ctype, body  string
		header       http.Header
		status       int
		code, detail string
	}{
		{"not-found", r, "GET", "/v1/tasks/app", "", "", auth, 404, api.CodeNotFound, `task "app" not found`},
		{"no route", r, "GET", "/v2/tasks", "", "", nil, 404, api.CodeNotFound, "no route GET /v2/tasks"},
		{"job not-found", r, "POST", "/v1/federated-jobs/nope/stop", "", "", auth, 404, api.CodeNotFound, `federated job "nope" not found`},
		{"invalid-request", r, "GET", "/v1/tasks?limit=5000", "", "", auth, 400, api.CodeInvalidRequest, `limit "5000": want an integer from 0 to 1000`},
		{"bad continue", r, "GET", "/v1/proplets?continue=%21%21", "", "", auth, 400, api.CodeInvalidRequest, `continue "!!" is not a token this list gave out: start again from the first page`},
		{"no module", r, "POST", "/v1/tasks", "application/json", `{"name":"x"}`, auth, 400, api.CodeInvalidRequest,
			"give file or imageUrl, or suspend: true to upload the module later with PUT /v1/tasks/{id}/wasm"},
		{"malformed-body", r, "POST", "/v1/tasks", "application/json", `{"name":`, auth, 400, api.CodeMalformedBody, "malformed JSON body: unexpected EOF"},
		{"unsupported-media-type", r, "POST", "/v1/tasks", "text/plain", `x`, auth, 415, api.CodeUnsupportedMediaType, `Content-Type "text/plain": want application/json`},
		{"payload-too-large", r, "POST", "/v1/tasks", "application/json", `{"name":"` + strings.Repeat("x", 80<<10) + `"}`, auth, 413, api.CodePayloadTooLarge, "request body too large: the limit is 66901 bytes"},
		{"unauthorized", r, "GET", "/v1/tasks", "", "", nil, 401, api.CodeUnauthorized, "missing bearer token"},
		{"method-not-allowed", r, "PATCH", "/v1/tasks/app", "", "", auth, 405, api.CodeMethodNotAllowed, "PATCH is not allowed on /v1/tasks/app; allowed: OPTIONS, DELETE, GET"},
		{"not-implemented", r, "GET", "/v1/proplets/edge-1/credentials", "", "", auth, 501, api.CodeNotImplemented,
			"per-proplet credentials are not available: the manager uses an external MQTT broker, manage proplet credentials there"},
		{"no backup", r, "GET", "/v1/backup", "", "", auth, 501, api.CodeNotImplemented,
			"this manager keeps its state elsewhere (the operator's is in Kubernetes): back that up instead"},
		{"unavailable", r, "GET", "/readyz", "", "", nil, 503, api.CodeUnavailable, "not ready: not connected to the MQTT broker"},
		{"internal", full, "POST", "/v1/tasks", "application/json", `{"file":"AGFzbQEAAAA="}`, auth, 500, api.CodeInternal,
			"internal error; the manager's log has the cause under this requestId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.rig.request(tc.method, tc.path, tc.ctype, []byte(tc.body), tc.header)
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, api.ProblemContentType, resp.Header.Get("Content-Type"))
			p := decode(t, resp)
			require.Equal(t, tc.code, p["code"])
			require.Equal(t, tc.detail, p["detail"])
			seen[tc.code] = true
		})
	}
	require.Contains(t, full.logs.lines(t)[0]["err"], "no space left on device", "the cause of a 500 is logged")

	// The codes a store's error or a second request reach, tested in
	// TestStoreErrorsBecomeProblems, TestFederatedJobIdempotencyKey and
	// TestFederatedJobModelFromRegistry.
	for _, c := range []string{api.CodeAlreadyExists, api.CodeConflict, api.CodeIdempotencyKeyReused, api.CodeBadGateway} {
		seen[c] = true
	}
	for _, c := range api.Codes() {
		require.True(t, seen[c], "no test reaches %s", c)
	}
}

// TestMethodNotAllowed: a known path with another method is 405 with the
// methods it has, for every route, authenticated or not.
func TestMethodNotAllowed(t *testing.T) {
	r := newAPIRig(t)
	for _, tc := range []struct {
		method, path string
		allow        []string
	}{
		{"PUT", "/v1/tasks", []string{"GET", "POST"}},
		{"POST", "/v1/tasks/x", []string{"GET", "DELETE"}},
		{"GET", "/v1/tasks/x/start", []string{"POST"}},
		{"DELETE", "/v1/tasks/x/stop", []string{"POST"}},
		{"POST", "/v1/tasks/x/wasm", []string{"PUT"}},
		{"POST", "/v1/proplets", []string{"GET"}},
		{"PUT", "/v1/proplets/x", []string{"GET", "DELETE"}},
		{"PUT", "/v1/proplets/x/credentials", []string{"GET", "POST", "DELETE"}},
		{"DELETE", "/v1/federated-jobs", []string{"GET", "POST"}},
		{"DELETE", "/v1/federated-jobs/x", []string{"GET"}},
		{"GET", "/v1/federated-jobs/x/stop", []string{"POST"}},
		{"POST", "/v1/federated-jobs/x/checkpoints", []string{"GET"}},
		{"DELETE", "/v1/models/x", []string{"GET"}},
		{"POST", "/healthz", []string{"GET"}},
		{"POST", "/v1/openapi.json", []string{"GET"}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp := r.request(tc.method, tc.path, "", nil, nil)
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			var got []string
			for _, m := range strings.Split(resp.Header.Get("Allow"), ",") {
				if m = strings.TrimSpace(m); m != http.MethodOptions {
					got = append(got, m)
				}
			}
			require.ElementsMatch(t, tc.allow, got)
			require.Equal(t, api.CodeMethodNotAllowed, decode(t, resp)["code"])
		})
	}
}

// TestCreatesAnswerLocation: 201 Created with where the new resource is,
// and the Location answers GET.
func TestCreatesAnswerLocation(t *testing.T) {
	r := newFLRigWithModel(t)
	auth := http.Header{"Authorization": {"Bearer " + token}}
	task := r.request(http.MethodPost, "/v1/tasks", "application/json", []byte(`{"name":"x","suspend":true}`), auth)
	require.Equal(t, http.StatusCreated, task.StatusCode)
	body := decode(t, task)
	require.Equal(t, "/v1/tasks/"+body["id"].(string), task.Header.Get("Location"))

	job := r.request(http.MethodPost, "/v1/federated-jobs", "application/json", r.jobBody(t, nil), auth)
	require.Equal(t, http.StatusCreated, job.StatusCode)
	body = decode(t, job)
	require.Equal(t, "/v1/federated-jobs/"+body["id"].(string), job.Header.Get("Location"))

	for _, loc := range []string{task.Header.Get("Location"), job.Header.Get("Location")} {
		resp := r.request(http.MethodGet, loc, "", nil, auth)
		require.Equal(t, http.StatusOK, resp.StatusCode, loc)
	}
}

// TestRequestID: a client's id is echoed in the header, the problem body
// and the access log; a missing or unfit one is replaced.
func TestRequestID(t *testing.T) {
	r := newAPIRig(t)
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"client's", "req-42.a_b", true},
		{"longest", strings.Repeat("a", 128), true},
		{"missing", "", false},
		{"too long", strings.Repeat("a", 129), false},
		{"header injection", "a\tb", false},
		{"unicode", "réq", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.sent != "" {
				h.Set(api.HeaderRequestID, tc.sent)
			}
			resp := r.request(http.MethodGet, "/v1/tasks/nope", "", nil, h)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			id := resp.Header.Get(api.HeaderRequestID)
			if tc.kept {
				require.Equal(t, tc.sent, id)
			} else {
				require.Regexp(t, `^[0-9a-f]{32}$`, id)
			}
			require.Equal(t, id, decode(t, resp)["requestId"])
			require.True(t, slices.ContainsFunc(r.logs.lines(t), func(l map[string]any) bool { return l["requestId"] == id }),
				"the access log has the request")
		})
	}
}

// TestAccessLog: one line per request with what an operator needs;
// probes at debug, errors by their status.
func TestAccessLog(t *testing.T) {
	r := newAPIRig(t)
	auth := http.Header{"Authorization": {"Bearer " + token}, api.HeaderRequestID: {"r-1"}}
	r.request(http.MethodGet, "/healthz", "", nil, nil)
	r.request(http.MethodGet, "/v1/tasks/nope", "", nil, auth)
	r.request(http.MethodGet, "/v1/tasks", "", nil, auth)
	lines := r.logs.lines(t)
	require.Len(t, lines, 3)
	require.Equal(t, "DEBUG", lines[0]["level"])
	require.Equal(t, "/healthz", lines[0]["path"])
	l := lines[1]
	require.Equal(t, "INFO", l["level"])
	require.Equal(t, "http request", l["msg"])
	require.Equal(t, "GET", l["method"])
	require.Equal(t, "/v1/tasks/nope", l["path"])
	require.EqualValues(t, 404, l["status"])
	require.Equal(t, "r-1", l["requestId"])
	require.Greater(t, l["bytes"], 0.0)
	require.Contains(t, l, "duration")
	require.Contains(t, l["remote"], "127.0.0.1:")
	require.EqualValues(t, 200, lines[2]["status"])
}

// TestCORS: off unless origins are configured; then a preflight from a
// listed origin is allowed, and one from elsewhere is not.
func TestCORS(t *testing.T) {
	preflight := func(r *apiRig, origin string) *http.Response {
		return r.request(http.MethodOptions, "/v1/tasks", "", nil, http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"POST"},
			"Access-Control-Request-Headers": {"authorization,content-type,idempotency-key"},
		})
	}
	off := newAPIRig(t)
	resp := preflight(off, "https://dash.example.com")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = off.request(http.MethodGet, "/healthz", "", nil, http.Header{"Origin": {"https://dash.example.com"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	on := newRig(t, func(c *rest.Config) { c.CORSOrigins = []string{"https://dash.example.com"} })
	resp = preflight(on, "https://dash.example.com")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "https://dash.example.com", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"authorization", "content-type", "idempotency-key"} {
		require.Contains(t, allowed, h)
	}
	resp = preflight(on, "https://evil.example.com")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	// The real request carries the CORS answer too, and exposes the
	// headers a page needs.
	resp = on.request(http.MethodPost, "/v1/tasks", "application/json", []byte(`{"suspend":true}`), http.Header{
		"Origin": {"https://dash.example.com"}, "Authorization": {"Bearer " + token},
	})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "https://dash.example.com", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "Location")
}
