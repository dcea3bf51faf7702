package rest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/test/mqtttest"
	"github.com/absmach/propeller/test/ocitest"
)

func newFLRig(t *testing.T) (*apiRig, *fl.Coordinator, *orchestration.Engine) {
	t.Helper()
	r := newRig(t, func(c *rest.Config) { c.MaxUploadBytes = 1 << 20 })
	return r, r.fl, r.eng
}

func TestFederatedJobsAPI(t *testing.T) {
	r, c, _ := newFLRig(t)
	model, err := safetensors.EncodeF32(map[string][]float32{"w": {0, 0}}, nil, nil)
	require.NoError(t, err)
	body := func(v map[string]any) []byte {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return b
	}
	spec := map[string]any{
		"experimentId": "e1",
		"initialModel": model,
		"taskWasm":     wasmHeader,
		"participants": []map[string]any{{"propletId": "p1"}, {"propletId": "p2"}},
		"kOfN":         2,
		"rounds":       map[string]any{"total": 1},
		"aggregator":   map[string]any{"algorithm": "fedmedian"},
	}
	code, job := r.do(http.MethodPost, "/v1/federated-jobs", "application/json", body(spec), "Bearer "+token)
	require.Equal(t, http.StatusCreated, code, job)
	id := job["id"].(string)
	status := job["status"].(map[string]any)
	require.Equal(t, "Running", status["phase"])
	require.EqualValues(t, 1, status["currentRound"])
	rounds := status["rounds"].([]any)
	require.Len(t, rounds[0].(map[string]any)["participants"], 2)

	code, got := r.do(http.MethodGet, "/v1/federated-jobs/"+id, "", nil, "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, id, got["id"])
	code, list := r.do(http.MethodGet, "/v1/federated-jobs", "", nil, "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, list["items"], 1)
	code, cps := r.do(http.MethodGet, "/v1/federated-jobs/"+id+"/checkpoints", "", nil, "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, cps["items"])

	// The initial model is served by digest.
	modelDigest := status["modelDigest"].(string)
	req, err := http.NewRequest(http.MethodGet, r.srv.URL+"/v1/models/"+modelDigest, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_ = resp.Body.Close()

	code, stopped := r.do(http.MethodPost, "/v1/federated-jobs/"+id+"/stop", "", nil, "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Stopped", stopped["status"].(map[string]any)["phase"])
	code, _ = r.do(http.MethodPost, "/v1/federated-jobs/"+id+"/stop", "", nil, "Bearer "+token)
	require.Equal(t, http.StatusConflict, code)

	j, err := c.Get(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, fl.JobStopped, j.Status.Phase)
}

func TestFederatedJobsAPIRefusals(t *testing.T) {
	r, _, _ := newFLRig(t)
	model, err := safetensors.EncodeF32(map[string][]float32{"w": {0}}, nil, nil)
	require.NoError(t, err)
	base := func() map[string]any {
		return map[string]any{
			"initialModel": model, "taskWasm": wasmHeader,
			"participants": []map[string]any{{"propletId": "p1"}}, "rounds": map[string]any{"total": 1},
		}
	}
	tests := []struct {
		name string
		mod  func(map[string]any)
		code int
	}{
		{"unknown field", func(m map[string]any) { m["bogus"] = 1 }, http.StatusBadRequest},
		{"not a model", func(m map[string]any) { m["initialModel"] = []byte("junk") }, http.StatusBadRequest},
		{"not wasm", func(m map[string]any) { m["taskWasm"] = []byte("junk") }, http.StatusBadRequest},
		{"model twice", func(m map[string]any) { m["modelRef"] = wire.BlobScheme + "sha256:00" }, http.StatusBadRequest},
		{"no rounds", func(m map[string]any) { m["rounds"] = map[string]any{"total": 0} }, http.StatusBadRequest},
		{"bad algorithm", func(m map[string]any) { m["aggregator"] = map[string]any{"algorithm": "x"} }, http.StatusBadRequest},
		{"missing model blob", func(m map[string]any) {
			delete(m, "initialModel")
			m["modelRef"] = wire.BlobScheme + "sha256:" + "0000000000000000000000000000000000000000000000000000000000000000"
		}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.mod(m)
			b, err := json.Marshal(m)
			require.NoError(t, err)
			code, body := r.do(http.MethodPost, "/v1/federated-jobs", "application/json", b, "Bearer "+token)
			require.Equal(t, tc.code, code, body)
		})
	}
	for _, path := range []string{"/v1/federated-jobs/nope", "/v1/federated-jobs/nope/checkpoints", "/v1/models/sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"} {
		code, _ := r.do(http.MethodGet, path, "", nil, "Bearer "+token)
		require.Equal(t, http.StatusNotFound, code, path)
	}
	code, _ := r.do(http.MethodGet, "/v1/models/xyz", "", nil, "Bearer "+token)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = r.do(http.MethodGet, "/v1/federated-jobs", "", nil, "")
	require.Equal(t, http.StatusUnauthorized, code)
}

// TestFederatedJobModelFromRegistry: a modelRef naming an OCI artifact is
// pulled from a real registry (on loopback) when the job is created; a
// registry that does not answer is a 502, an artifact that is not a model
// a 400.
func TestFederatedJobModelFromRegistry(t *testing.T) {
	r, _, _ := newFLRig(t)
	model, err := safetensors.EncodeF32(map[string][]float32{"w": {1, 2}}, nil, nil)
	require.NoError(t, err)
	reg, err := ocipush.ParseRegistry("oci://" + ocitest.Serve(t, ocitest.Handler()) + "/models/digits")
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "v1", model, ocipush.Options{})
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "junk", []byte("not a model"), ocipush.Options{})
	require.NoError(t, err)
	create := func(modelRef string) (int, map[string]any) {
		b, err := json.Marshal(map[string]any{
			"modelRef": modelRef, "taskWasm": wasmHeader,
			"participants": []map[string]any{{"propletId": "p1"}}, "rounds": map[string]any{"total": 1},
		})
		require.NoError(t, err)
		return r.do(http.MethodPost, "/v1/federated-jobs", "application/json", b, "Bearer "+token)
	}

	code, job := create(reg.String() + ":v1")
	require.Equal(t, http.StatusCreated, code, job)
	require.Equal(t, reg.String()+":v1", job["spec"].(map[string]any)["modelRef"])
	sum := sha256.Sum256(model)
	require.Equal(t, "sha256:"+hex.EncodeToString(sum[:]), job["status"].(map[string]any)["modelDigest"])

	code, body := create(reg.String() + ":junk")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body["detail"], "not a safetensors model")

	closed := "oci://" + mqtttest.FreeAddr(t) + "/models/digits:v1"
	code, body = create(closed)
	require.Equal(t, http.StatusBadGateway, code, body)
	require.Equal(t, "bad-gateway", body["code"])
	require.Contains(t, body["detail"], closed)
}
