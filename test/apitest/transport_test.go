package apitest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/test/apitest"
)

// recorder is a testing.TB that keeps what the transport reports instead
// of failing the test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) reported() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.errs
	r.errs = nil
	return out
}

const (
	task    = `{"id":"t1","phase":"Pending","attempt":0,"createdAt":"2025-01-02T03:04:05Z","updatedAt":"2025-01-02T03:04:05Z"}`
	problem = `{"type":"https://propeller.absmach.io/problems/%s","title":"x","status":%d,"code":"%s","requestId":"r1"}`
)

// answer is what the fake server says to one request.
type answer struct {
	status int
	ctype  string
	body   string
	header map[string]string
}

func TestTransport(t *testing.T) {
	var (
		mu   sync.Mutex
		next answer
		got  []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		a := next
		got, _ = io.ReadAll(r.Body)
		mu.Unlock()
		w.Header().Set("X-Request-Id", "r1")
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if a.ctype != "" {
			w.Header().Set("Content-Type", a.ctype)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	defer srv.Close()

	rec := &recorder{TB: t}
	hc := &http.Client{Transport: apitest.Transport(rec, nil)}
	send := func(ctx context.Context, method, path, ctype, body string, a answer) []string {
		t.Helper()
		mu.Lock()
		next = a
		mu.Unlock()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if !strings.Contains(path, "nobearer") {
			req.Header.Set("Authorization", "Bearer tok")
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, a.body, string(b), "the caller reads the body the validator read")
		return rec.reported()
	}
	bg := context.Background()
	okTask := answer{status: 200, ctype: "application/json", body: task}
	prob := func(code string, status int) answer {
		return answer{status: status, ctype: "application/problem+json", body: fmt.Sprintf(problem, code, status, code)}
	}

	for _, tc := range []struct {
		name    string
		ctx     context.Context
		method  string
		path    string
		ctype   string
		body    string
		answer  answer
		reports string // "" is no report
	}{
		{name: "conforming", method: "GET", path: "/v1/tasks/t1", answer: okTask},
		{name: "extra field", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 200, ctype: "application/json", body: strings.Replace(task, `"id"`, `"state":"x","id"`, 1)}, reports: "does not match"},
		{name: "wrong type", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 200, ctype: "application/json", body: strings.Replace(task, `"attempt":0`, `"attempt":"0"`, 1)}, reports: "does not match"},
		{name: "missing X-Request-Id", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 200, ctype: "application/json", body: task, header: map[string]string{"X-Request-Id": ""}}, reports: "X-Request-Id"},
		{name: "undeclared status", method: "GET", path: "/v1/tasks/t1", answer: prob("conflict", 409), reports: "status is not supported"},
		{name: "body on 204", method: "DELETE", path: "/v1/tasks/t1", answer: answer{status: 204, body: ""}},
		{name: "unknown query parameter", method: "GET", path: "/v1/tasks?state=Running", answer: answer{status: 200, ctype: "application/json", body: `{"items":[],"continue":""}`}, reports: `"state" is not declared`},
		{name: "bad query value", method: "GET", path: "/v1/tasks?phase=Runing", answer: answer{status: 200, ctype: "application/json", body: `{"items":[],"continue":""}`}, reports: "does not match"},
		{name: "comma phases", method: "GET", path: "/v1/tasks?phase=Running,Failed&phase=Pending&label=a=b", answer: answer{status: 200, ctype: "application/json", body: `{"items":[],"continue":""}`}},
		{name: "no bearer", method: "GET", path: "/v1/tasks/t1?nobearer", answer: prob("unauthorized", 401), reports: "authorization failed"},
		{name: "no bearer, marked", ctx: apitest.InvalidRequest(bg), method: "GET", path: "/v1/tasks/nobearer", answer: prob("unauthorized", 401)},
		{name: "marked but valid", ctx: apitest.InvalidRequest(bg), method: "GET", path: "/v1/tasks/t1", answer: prob("not-found", 404), reports: "the document accepts it"},
		{name: "marked, answered 2xx", ctx: apitest.InvalidRequest(bg), method: "POST", path: "/v1/tasks", ctype: "text/plain", body: "x", answer: okTask, reports: "the answer is 200"},
		{name: "wrong content type, marked", ctx: apitest.InvalidRequest(bg), method: "POST", path: "/v1/tasks", ctype: "text/plain", body: "x", answer: prob("unsupported-media-type", 415)},
		{name: "unknown body field", method: "POST", path: "/v1/tasks", ctype: "application/json", body: `{"image_url":"oci://x"}`, answer: answer{status: 201, ctype: "application/json", body: task, header: map[string]string{"Location": "/v1/tasks/t1"}}, reports: "does not match"},
		{name: "create", method: "POST", path: "/v1/tasks", ctype: "application/json", body: `{"imageUrl":"oci://x"}`, answer: answer{status: 201, ctype: "application/json", body: task, header: map[string]string{"Location": "/v1/tasks/t1"}}},
		{name: "create without Location", method: "POST", path: "/v1/tasks", ctype: "application/json", body: `{"imageUrl":"oci://x"}`, answer: answer{status: 201, ctype: "application/json", body: task}, reports: "Location"},
		{name: "problem status mismatch", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 404, ctype: "application/problem+json", body: fmt.Sprintf(problem, "not-found", 400, "not-found")}, reports: "problem status 400 in a 404 answer"},
		{name: "problem code mismatch", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 404, ctype: "application/problem+json", body: fmt.Sprintf(problem, "conflict", 404, "conflict")}, reports: "problem code"},
		{name: "error not a problem", method: "GET", path: "/v1/tasks/t1", answer: answer{status: 404, ctype: "application/json", body: `{"message":"Not Found"}`}, reports: "not application/problem+json"},
		{name: "unknown path", method: "GET", path: "/v1/nope", answer: prob("not-found", 404), reports: "not an operation"},
		{name: "unknown path, marked", ctx: apitest.UnknownRoute(bg), method: "GET", path: "/v1/nope", answer: prob("not-found", 404)},
		{name: "unknown method, marked", ctx: apitest.UnknownRoute(bg), method: "PATCH", path: "/v1/tasks/t1", answer: answerAllow("DELETE, GET")},
		{name: "unknown method, OPTIONS allowed too", ctx: apitest.UnknownRoute(bg), method: "PATCH", path: "/v1/tasks/t1", answer: answerAllow("DELETE, GET, OPTIONS")},
		{name: "unknown method, wrong Allow", ctx: apitest.UnknownRoute(bg), method: "PATCH", path: "/v1/tasks/t1", answer: answerAllow("GET"), reports: "Allow is [GET]"},
		{name: "unknown method without Allow", ctx: apitest.UnknownRoute(bg), method: "PATCH", path: "/v1/tasks/t1", answer: prob("method-not-allowed", 405), reports: "Allow"},
		{name: "known route marked unknown", ctx: apitest.UnknownRoute(bg), method: "GET", path: "/v1/tasks/t1", answer: okTask, reports: "the document has it"},
		{name: "wasm upload", method: "PUT", path: "/v1/tasks/t1/wasm", ctype: "application/wasm", body: "\x00asm\x01\x00\x00\x00", answer: okTask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = bg
			}
			reports := send(ctx, tc.method, tc.path, tc.ctype, tc.body, tc.answer)
			if tc.reports == "" {
				require.Empty(t, reports)
				return
			}
			require.NotEmpty(t, reports)
			require.Contains(t, strings.Join(reports, "\n"), tc.reports)
		})
	}

	// Defaults in the schema (onRoundFailure.action) are not written into
	// what is sent.
	body := `{"taskWasmImage":"oci://x","rounds":{"total":1},"onRoundFailure":{}}`
	send(bg, "POST", "/v1/federated-jobs", "application/json", body, prob("invalid-request", 400))
	mu.Lock()
	require.Equal(t, body, string(got))
	mu.Unlock()
}

func answerAllow(allow string) answer {
	return answer{status: 405, ctype: "application/problem+json", body: fmt.Sprintf(problem, "method-not-allowed", 405, "method-not-allowed"), header: map[string]string{"Allow": allow}}
}
