package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/apitest"
	"github.com/absmach/propeller/test/harness"
)

// uploadLimit is the manager's --max-upload-bytes in TestAPIContract.
const uploadLimit = 64 << 10

// TestAPIContract drives each operation of the API and each error code through the harness's client, which validates every
// request and answer against the OpenAPI document (apitest.Transport):
// a field, header or status the document does not have fails the test.
func TestAPIContract(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager("--max-upload-bytes", strconv.Itoa(uploadLimit))
	s.StartProplet("edge-a", "--labels", "zone=a")
	s.WaitAlive("edge-a")
	ctx := context.Background()
	c := s.Client

	t.Run("the served document is the committed one", func(t *testing.T) {
		served, err := c.OpenAPI(ctx)
		require.NoError(t, err)
		committed, err := yaml.YAMLToJSON(rest.OpenAPIYAML)
		require.NoError(t, err)
		require.JSONEq(t, string(committed), string(served))
	})

	t.Run("create, get, list, delete", func(t *testing.T) {
		var h http.Header
		task, err := c.CreateTask(ctx, rest.TaskRequest{Name: "contract-add", File: add, Function: "add", Inputs: []float64{40, 2}, Labels: map[string]string{"suite": "contract"}}, rest.WithResponseHeader(&h))
		require.NoError(t, err)
		require.Equal(t, "/v1/tasks/"+task.ID, h.Get("Location"))
		got := s.Wait(task.ID)
		require.Equal(t, rest.PhaseSucceeded, got.Phase, got.Message)
		require.Equal(t, []float64{42}, got.Results)

		other := s.Create(rest.TaskRequest{Name: "contract-held", ImageURL: "oci://registry.invalid/held:1", Labels: map[string]string{"suite": "contract"}, Suspend: true})
		l, err := c.ListTasks(ctx, rest.TaskFilter{Labels: map[string]string{"suite": "contract"}, Phases: []string{rest.PhaseSucceeded, rest.PhasePending}, Page: rest.Page{Limit: 1}})
		require.NoError(t, err)
		require.Len(t, l.Items, 1)
		require.Equal(t, task.ID, l.Items[0].ID, "oldest first")
		require.NotEmpty(t, l.Continue)
		l, err = c.ListTasks(ctx, rest.TaskFilter{Labels: map[string]string{"suite": "contract"}, Page: rest.Page{Limit: 1, Continue: l.Continue}})
		require.NoError(t, err)
		require.Len(t, l.Items, 1)
		require.Equal(t, other.ID, l.Items[0].ID)
		l, err = c.ListTasks(ctx, rest.TaskFilter{Name: "contract-held"})
		require.NoError(t, err)
		require.Len(t, l.Items, 1)
		require.Empty(t, l.Continue, "the last page")

		require.NoError(t, c.DeleteTask(ctx, task.ID))
		_, err = c.GetTask(ctx, task.ID)
		requireCode(t, err, rest.CodeNotFound)
		require.ErrorContains(t, err, task.ID, "the detail names the id")
	})

	t.Run("suspend, upload, start", func(t *testing.T) {
		task := s.Create(rest.TaskRequest{Name: "contract-upload", Function: "add", Inputs: []float64{1, 2}, Suspend: true})
		require.Equal(t, rest.PhasePending, task.Phase)
		task, err := c.UploadWasm(ctx, task.ID, add)
		require.NoError(t, err)
		require.NotEmpty(t, task.Digest)
		_, err = c.StartTask(ctx, task.ID)
		require.NoError(t, err)
		got := s.Wait(task.ID)
		require.Equal(t, []float64{3}, got.Results)

		_, err = c.StartTask(ctx, task.ID)
		requireCode(t, err, rest.CodeConflict)
		_, err = c.UploadWasm(ctx, task.ID, add)
		requireCode(t, err, rest.CodeConflict)
	})

	t.Run("stop", func(t *testing.T) {
		task := s.Create(rest.TaskRequest{Name: "contract-stop", ImageURL: "oci://registry.invalid/stop:1", Suspend: true})
		task, err := c.StopTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, rest.PhaseCancelled, task.Phase)
		_, err = c.StopTask(ctx, task.ID)
		requireCode(t, err, rest.CodeConflict)
	})

	t.Run("proplets", func(t *testing.T) {
		l, err := c.ListProplets(ctx, rest.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, l.Items, 1)
		require.Empty(t, l.Continue)
		p, err := c.GetProplet(ctx, "edge-a")
		require.NoError(t, err)
		require.True(t, p.Alive)
		require.Equal(t, map[string]string{"zone": "a"}, p.Labels)
		_, err = c.GetProplet(ctx, "edge-none")
		requireCode(t, err, rest.CodeNotFound)
		requireCode(t, c.DeleteProplet(ctx, "edge-none"), rest.CodeNotFound)
	})

	// TestIdempotentCreateSurvivesKill and TestBatchOfThousand drive the
	// happy paths of batches and keys; these are their refusals.
	t.Run("batch and idempotency refusals", func(t *testing.T) {
		ok := rest.TaskRequest{Name: "contract-batch", ImageURL: "oci://registry.invalid/b:1", Suspend: true}
		_, err := c.CreateTasks(ctx, []rest.TaskRequest{ok, {Name: "no-module"}})
		requireCode(t, err, rest.CodeInvalidRequest)
		require.ErrorContains(t, err, "tasks[1]", "the detail names the element")
		l, err := c.ListTasks(ctx, rest.TaskFilter{Name: "contract-batch"})
		require.NoError(t, err)
		require.Empty(t, l.Items, "all or none")

		_, err = c.CreateTasks(apitest.InvalidRequest(ctx), nil)
		requireCode(t, err, rest.CodeInvalidRequest)
		_, err = c.CreateTasks(apitest.InvalidRequest(ctx), make([]rest.TaskRequest, 1001))
		requireCode(t, err, rest.CodeInvalidRequest)

		batch, err := c.CreateTasks(ctx, []rest.TaskRequest{ok, ok}, rest.WithIdempotencyKey("contract-batch-key"))
		require.NoError(t, err)
		require.Len(t, batch, 2)
		_, err = c.CreateTasks(ctx, []rest.TaskRequest{ok}, rest.WithIdempotencyKey("contract-batch-key"))
		requireCode(t, err, rest.CodeIdempotencyKeyReused)
		_, err = c.CreateTask(ctx, ok, rest.WithIdempotencyKey("contract-batch-key"))
		requireCode(t, err, rest.CodeIdempotencyKeyReused)
		_, err = c.CreateTask(apitest.InvalidRequest(ctx), ok, rest.WithIdempotencyKey(strings.Repeat("k", 256)))
		requireCode(t, err, rest.CodeInvalidRequest)
	})

	t.Run("request ids", func(t *testing.T) {
		var h http.Header
		_, err := c.CreateTask(ctx, rest.TaskRequest{Name: "contract-rid", ImageURL: "oci://registry.invalid/rid:1", Suspend: true}, rest.WithRequestID("contract-req-1"), rest.WithResponseHeader(&h))
		require.NoError(t, err)
		require.Equal(t, "contract-req-1", h.Get(rest.HeaderRequestID), "the client's id is echoed")

		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/tasks/no-such-task", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.APIToken)
		resp, err := s.HTTP.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var p rest.Problem
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
		require.NotEmpty(t, resp.Header.Get(rest.HeaderRequestID), "the manager makes one up")
		require.Equal(t, resp.Header.Get(rest.HeaderRequestID), p.RequestID, "and puts it in the problem")
		require.Equal(t, "/v1/tasks/no-such-task", p.Instance)
	})

	t.Run("federated job: idempotent retry, 422, stop", func(t *testing.T) {
		model, err := safetensors.EncodeF32(map[string][]float32{"w": {0, 0}}, map[string][]int{"w": {2}}, nil)
		require.NoError(t, err)
		req := rest.FederatedJobRequest{
			FederatedJobSpec: rest.FederatedJobSpec{
				Participants: []rest.Participant{{PropletID: "edge-fl-absent"}},
				Rounds:       rest.Rounds{Total: 1}, Aggregator: rest.Aggregator{Algorithm: "fedavg"},
			},
			InitialModel: model, TaskWasm: add,
		}
		var h http.Header
		job, err := c.CreateFederatedJob(ctx, req, rest.WithIdempotencyKey("contract-job"), rest.WithResponseHeader(&h))
		require.NoError(t, err)
		require.Equal(t, "/v1/federated-jobs/"+job.ID, h.Get("Location"))
		require.Empty(t, h.Get(rest.HeaderIdempotentReplay))
		again, err := c.CreateFederatedJob(ctx, req, rest.WithIdempotencyKey("contract-job"), rest.WithResponseHeader(&h))
		require.NoError(t, err)
		require.Equal(t, job.ID, again.ID, "a retry finds the first job")
		require.Equal(t, "true", h.Get(rest.HeaderIdempotentReplay))
		other := req
		other.Rounds.Total = 2
		_, err = c.CreateFederatedJob(ctx, other, rest.WithIdempotencyKey("contract-job"))
		requireCode(t, err, rest.CodeIdempotencyKeyReused)

		l, err := c.ListFederatedJobs(ctx, rest.Page{Limit: 1})
		require.NoError(t, err)
		require.Len(t, l.Items, 1)
		cps, err := c.ListCheckpoints(ctx, job.ID, rest.Page{})
		require.NoError(t, err)
		require.Empty(t, cps.Items)
		b, err := c.Model(ctx, job.Status.ModelDigest)
		require.NoError(t, err)
		require.Equal(t, model, b)
		_, err = c.Model(ctx, "sha256:"+strings.Repeat("0", 64))
		requireCode(t, err, rest.CodeNotFound)
		_, err = c.Model(ctx, "not-a-digest")
		requireCode(t, err, rest.CodeInvalidRequest)

		stopped, err := c.StopFederatedJob(ctx, job.ID)
		require.NoError(t, err)
		require.Equal(t, rest.JobStopped, stopped.Status.Phase)
		_, err = c.StopFederatedJob(ctx, job.ID)
		requireCode(t, err, rest.CodeConflict)
		_, err = c.GetFederatedJob(ctx, "no-such-job")
		requireCode(t, err, rest.CodeNotFound)
	})

	t.Run("400 invalid-request", func(t *testing.T) {
		for _, req := range []rest.TaskRequest{
			{Name: "no-module"},
			{Name: "pin-and-select", ImageURL: "oci://x/y:1", PropletID: "edge-a", Selector: map[string]string{"zone": "a"}},
			{Name: "not-wasm", File: []byte("MZ not a module")},
		} {
			_, err := c.CreateTask(ctx, req)
			requireCode(t, err, rest.CodeInvalidRequest)
		}
		// Refused by the document as well as the server.
		_, err := c.CreateTask(apitest.InvalidRequest(ctx), rest.TaskRequest{Name: "negative", ImageURL: "oci://x/y:1", TimeoutSeconds: -1})
		requireCode(t, err, rest.CodeInvalidRequest)
		_, err = c.ListTasks(apitest.InvalidRequest(ctx), rest.TaskFilter{Phases: []string{"Sleeping"}})
		requireCode(t, err, rest.CodeInvalidRequest)
	})

	t.Run("400 malformed-body", func(t *testing.T) {
		for _, tc := range []struct {
			body string
			// The document cannot say "one JSON value": the validator
			// reads the first and accepts the request.
			specRefuses bool
		}{
			{`{"name":`, true},
			{`{"image_url":"oci://x/y:1"}`, true},
			{`{"name":"a"} {"name":"b"}`, false},
		} {
			rctx := ctx
			if tc.specRefuses {
				rctx = apitest.InvalidRequest(ctx)
			}
			status, p := raw(t, s, rctx, http.MethodPost, "/v1/tasks", "application/json", []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, status, tc.body)
			require.Equal(t, rest.CodeMalformedBody, p.Code, tc.body)
		}
	})

	t.Run("401 unauthorized", func(t *testing.T) {
		wrong, err := rest.NewClient(s.URL, "wrong", rest.WithHTTPClient(s.HTTP))
		require.NoError(t, err)
		_, err = wrong.ListTasks(ctx, rest.TaskFilter{})
		requireCode(t, err, rest.CodeUnauthorized)
		none, err := rest.NewClient(s.URL, "", rest.WithHTTPClient(s.HTTP))
		require.NoError(t, err)
		_, err = none.GetTask(apitest.InvalidRequest(ctx), "any")
		requireCode(t, err, rest.CodeUnauthorized)
	})

	t.Run("404 not-found", func(t *testing.T) {
		_, err := c.GetTask(ctx, "no-such-task")
		requireCode(t, err, rest.CodeNotFound)
		require.ErrorContains(t, err, `"no-such-task"`)
		requireCode(t, c.DeleteTask(ctx, "no-such-task"), rest.CodeNotFound)
		_, err = c.StopTask(ctx, "no-such-task")
		requireCode(t, err, rest.CodeNotFound)
		status, p := raw(t, s, apitest.UnknownRoute(ctx), http.MethodGet, "/v1/no-such-route", "", nil)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, rest.CodeNotFound, p.Code)
	})

	t.Run("405 method-not-allowed", func(t *testing.T) {
		// The transport checks Allow against the document's methods.
		for _, r := range []struct{ method, path string }{
			{http.MethodPatch, "/v1/tasks/any"},
			{http.MethodPut, "/v1/tasks"},
			{http.MethodDelete, "/v1/proplets"},
		} {
			status, p := raw(t, s, apitest.UnknownRoute(ctx), r.method, r.path, "", nil)
			require.Equal(t, http.StatusMethodNotAllowed, status, "%s %s", r.method, r.path)
			require.Equal(t, rest.CodeMethodNotAllowed, p.Code)
		}
	})

	t.Run("413 payload-too-large", func(t *testing.T) {
		big := append(append([]byte{}, add[:8]...), make([]byte, uploadLimit+1)...)
		_, err := c.CreateTask(ctx, rest.TaskRequest{Name: "big", File: big})
		requireCode(t, err, rest.CodePayloadTooLarge)
		held := s.Create(rest.TaskRequest{Name: "big-upload", Suspend: true})
		_, err = c.UploadWasm(ctx, held.ID, big)
		requireCode(t, err, rest.CodePayloadTooLarge)
	})

	t.Run("415 unsupported-media-type", func(t *testing.T) {
		status, p := raw(t, s, apitest.InvalidRequest(ctx), http.MethodPost, "/v1/tasks", "text/plain", []byte(`{"name":"x"}`))
		require.Equal(t, http.StatusUnsupportedMediaType, status)
		require.Equal(t, rest.CodeUnsupportedMediaType, p.Code)
		held := s.Create(rest.TaskRequest{Name: "upload-json", Suspend: true})
		status, p = raw(t, s, apitest.InvalidRequest(ctx), http.MethodPut, "/v1/tasks/"+held.ID+"/wasm", "application/json", add)
		require.Equal(t, http.StatusUnsupportedMediaType, status)
		require.Equal(t, rest.CodeUnsupportedMediaType, p.Code)
	})
}

// raw sends a request the SDK would not, through the validating client,
// and returns its status and problem.
func raw(t *testing.T, s *harness.System, ctx context.Context, method, path, ctype string, body []byte) (int, rest.Problem) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.APIToken)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := s.HTTP.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var p rest.Problem
	require.NoError(t, json.Unmarshal(b, &p), "%d %s", resp.StatusCode, b)
	return resp.StatusCode, p
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	require.Error(t, err)
	p, ok := rest.AsProblem(err)
	require.True(t, ok, "%v is not a problem", err)
	require.Equal(t, code, p.Code, "%v", err)
}
