package rest_test

import (
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
)

// TestTaskLimits sends a task over each documented limit: every one is a
// 400 whose detail says what the limit is, and nothing is created.
func TestTaskLimits(t *testing.T) {
	r := newRig(t, func(c *rest.Config) { c.MaxUploadBytes = 1 << 20 })
	many := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m["K"+strconv.Itoa(i)] = "v"
		}
		return m
	}
	args := make([]string, orchestration.MaxArgs+1)
	for i := range args {
		args[i] = "a"
	}
	cases := []struct {
		name   string
		fields map[string]any
		detail string
	}{
		{"huge timeout", map[string]any{"timeoutSeconds": 9223372036}, "timeoutSeconds is 9.223372036e+09: want 0 to 604800 (168h0m0s)"},
		{"timeout 1e10", map[string]any{"timeoutSeconds": 1e10}, "want 0 to 604800"},
		{"negative timeout", map[string]any{"timeoutSeconds": -1}, "want 0 to 604800"},
		{"too many env", map[string]any{"env": many(orchestration.MaxEnv + 1)}, "1025 env variables, the limit is 1024"},
		{"env too big", map[string]any{"env": map[string]string{"A": strings.Repeat("x", orchestration.MaxEnvBytes)}}, "the limit is 262144"},
		{"env key too long", map[string]any{"env": map[string]string{strings.Repeat("K", 300): "v"}}, "the limit is 256"},
		{"too many args", map[string]any{"cliArgs": args}, "1025 cliArgs, the limit is 1024"},
		{"args too big", map[string]any{"cliArgs": []string{strings.Repeat("x", orchestration.MaxArgBytes+1)}}, "the limit is 262144"},
		{"too many inputs", map[string]any{"function": "f", "inputs": make([]float64, orchestration.MaxInputs+1)}, "1001 inputs, the limit is 1000"},
		{"long name", map[string]any{"name": strings.Repeat("n", 254)}, "name is 254 characters long, the limit is 253"},
		{"long function", map[string]any{"function": strings.Repeat("f", 257)}, "the limit is 256"},
		{"too many labels", map[string]any{"labels": many(orchestration.MaxLabels + 1)}, "labels has 65 entries, the limit is 64"},
		{"long label value", map[string]any{"labels": map[string]string{"k": strings.Repeat("v", 254)}}, "the limit is 253"},
		{"too many selector entries", map[string]any{"selector": many(orchestration.MaxLabels + 1)}, "selector has 65 entries, the limit is 64"},
		{"long selector key", map[string]any{"selector": map[string]string{strings.Repeat("k", 254): "v"}}, "the limit is 253"},
		{"maxAttempts", map[string]any{"maxAttempts": 101}, "maxAttempts must be between 0 and 100"},
		{"empty file", map[string]any{"file": ""}, "file is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := map[string]any{"imageUrl": "oci://registry.local/app:v1"}
			if _, ok := tc.fields["file"]; ok {
				delete(req, "imageUrl")
			}
			for k, v := range tc.fields {
				req[k] = v
			}
			code, body := r.json(http.MethodPost, "/v1/tasks", req)
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, stringOf(body["detail"]), tc.detail)

			code, body = r.json(http.MethodPost, "/v1/tasks:batch", map[string]any{"tasks": []any{req}})
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, stringOf(body["detail"]), "tasks[0]")
			require.Contains(t, stringOf(body["detail"]), tc.detail)
		})
	}
	code, body := r.json(http.MethodGet, "/v1/tasks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["items"], "no refused task was created")

	// At the limits, a task is accepted.
	code, body = r.json(http.MethodPost, "/v1/tasks", map[string]any{
		"imageUrl": "oci://registry.local/app:v1", "timeoutSeconds": 604800,
		"env": many(orchestration.MaxEnv), "labels": many(orchestration.MaxLabels),
	})
	require.Equal(t, http.StatusCreated, code, body)
	require.EqualValues(t, 604800, body["timeoutSeconds"])
}

// TestHugeContainersRefusedBeforeDecoding: a body with a million env
// variables is refused from its bytes, without building the map; the
// answer names the limit.
func TestHugeContainersRefusedBeforeDecoding(t *testing.T) {
	r := newRig(t, func(c *rest.Config) { c.MaxUploadBytes = 16 << 20 })
	var b strings.Builder
	b.WriteString(`{"imageUrl":"oci://registry.local/app:v1","env":{`)
	for i := range 1_000_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"K` + strconv.Itoa(i) + `":"v"`)
	}
	b.WriteString(`}}`)
	body := []byte(b.String())

	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	code, problem := r.do(http.MethodPost, "/v1/tasks", "application/json", body, "Bearer "+token)
	goruntime.ReadMemStats(&after)
	require.Equal(t, http.StatusBadRequest, code, problem)
	require.Contains(t, stringOf(problem["detail"]), "more than 4096 members")
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MB body of 1M env vars allocated %d MiB", len(body)>>20, allocated>>20)
	// The body itself is read (and copied by the test client); the map of a
	// million entries would be several times more.
	require.Less(t, allocated, uint64(8*len(body)))

	code, problem = r.do(http.MethodPost, "/v1/tasks", "application/json",
		[]byte(`{"imageUrl":"oci://registry.local/app:v1","cliArgs":["a,b,c","[[[,,,]]]"],"env":{"X":"{\"a\":[1,2,3]}"}}`), "Bearer "+token)
	require.Equal(t, http.StatusCreated, code, problem, "commas and brackets inside strings do not count")
}
