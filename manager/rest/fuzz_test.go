package rest_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
)

// FuzzCreateTask posts arbitrary bodies to the create routes, as any
// client may: every answer is 201 with a task, or a 4xx problem that says
// what is wrong; never a 5xx or a panic.
func FuzzCreateTask(f *testing.F) {
	wasm := "AGFzbQEAAAA=" // \0asm, version 1
	for _, body := range []string{
		`{"name":"a","file":"` + wasm + `","function":"add","inputs":[1,2]}`,
		`{"imageUrl":"oci://r/m:1","env":{"A":"b"},"labels":{"k":"v"},"timeoutSeconds":5,"maxAttempts":3}`,
		`{"suspend":true,"cliArgs":["x"],"selector":{"zone":"a"},"propletIds":["p1","p2"]}`,
		`{"file":"` + wasm + `","imageUrl":"http://x/m.wasm"}`,
		`{"timeoutSeconds":-1,"suspend":true}`,
		`{"timeoutSeconds":1e300,"suspend":true}`,
		`{"file":"AAAA"}`,
		`{"tasks":[{"suspend":true},{"imageUrl":"oci://r/m"}]}`,
		`{"unknown":1}`, `[]`, `{}`, `{"a":1}{}`, `null`,
	} {
		f.Add([]byte(body), false)
		f.Add([]byte(body), true)
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		path := "/v1/tasks"
		if batch {
			path = "/v1/tasks:batch"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Less(t, rec.Code, 500, "%s %q: %s", path, body, rec.Body)
		var out map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "answer is not JSON: %s", rec.Body)
		if rec.Code >= 400 {
			require.NotEmpty(t, out["detail"], "a refusal says why: %s", rec.Body)
			return
		}
		require.Equal(t, http.StatusCreated, rec.Code, "%s", rec.Body)
	})
}

// fuzzAPI is the API over a real engine on storage/memory, without FL and
// without a listener (the fuzzer calls the handler directly).
func fuzzAPI(tb testing.TB) http.Handler {
	eng, err := orchestration.New(orchestration.Config{}, orchestration.Deps{Store: memory.New(), Dispatcher: &recordingDispatcher{}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	bs, err := blobs.Open(tb.TempDir())
	require.NoError(tb, err)
	h, err := rest.New(rest.Config{Engine: eng, Blobs: bs, Auth: bearer(token), MaxUploadBytes: 1024, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	return h
}
