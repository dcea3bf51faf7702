package rest_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/test/apitest"
)

// TestAnswersMatchTheDocument drives every route through the SDK over
// apitest.Transport: each request and each answer, errors included, must
// be what api/rest/openapi.yaml declares.
func TestAnswersMatchTheDocument(t *testing.T) {
	r := newFLRigWithModel(t)
	ctx := context.Background()
	c, err := api.NewClient(r.srv.URL, token, api.WithHTTPClient(&http.Client{Transport: apitest.Transport(t, nil)}))
	require.NoError(t, err)
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "p1", Slots: 1}))

	require.NoError(t, c.Healthz(ctx))
	require.NoError(t, c.Readyz(ctx))
	_, err = c.OpenAPI(ctx)
	require.NoError(t, err)

	var h http.Header
	task, err := c.CreateTask(ctx, api.TaskRequest{Name: "later", Suspend: true, Labels: map[string]string{"k": "v"}}, api.WithRequestID("doc-1"), api.WithResponseHeader(&h))
	require.NoError(t, err)
	require.Equal(t, "/v1/tasks/"+task.ID, h.Get("Location"))
	_, err = c.UploadWasm(ctx, task.ID, wasmHeader)
	require.NoError(t, err)
	_, err = c.StartTask(ctx, task.ID)
	require.NoError(t, err)
	_, err = c.StartTask(ctx, task.ID)
	require.True(t, api.IsConflict(err), "%v", err)
	_, err = c.GetTask(ctx, task.ID)
	require.NoError(t, err)
	_, err = c.ListTasks(ctx, api.TaskFilter{Phases: []string{api.PhaseScheduled}, Labels: map[string]string{"k": "v"}, Name: "later", PropletID: "p1", Page: api.Page{Limit: 1}})
	require.NoError(t, err)
	_, err = c.StopTask(ctx, task.ID)
	require.NoError(t, err)
	require.NoError(t, c.DeleteTask(ctx, task.ID))
	_, err = c.GetTask(ctx, task.ID)
	require.True(t, api.IsNotFound(err), "%v", err)

	_, err = c.ListProplets(ctx, api.Page{Limit: 1})
	require.NoError(t, err)
	_, err = c.GetProplet(ctx, "p1")
	require.NoError(t, err)
	_, err = c.GetCredential(ctx, "p1")
	require.True(t, api.HasCode(err, api.CodeNotImplemented), "%v", err)

	job, err := c.CreateFederatedJob(ctx, api.FederatedJobRequest{
		FederatedJobSpec: api.FederatedJobSpec{
			Participants: []api.Participant{{PropletID: "p1"}}, KOfN: 1,
			Rounds: api.Rounds{Total: 1}, Aggregator: api.Aggregator{Algorithm: "fedavg"},
		},
		InitialModel: r.model, TaskWasm: wasmHeader,
	}, api.WithIdempotencyKey("doc-job"))
	require.NoError(t, err)
	again, err := c.CreateFederatedJob(ctx, api.FederatedJobRequest{
		FederatedJobSpec: api.FederatedJobSpec{
			Participants: []api.Participant{{PropletID: "p1"}}, KOfN: 1,
			Rounds: api.Rounds{Total: 1}, Aggregator: api.Aggregator{Algorithm: "fedavg"},
		},
		InitialModel: r.model, TaskWasm: wasmHeader,
	}, api.WithIdempotencyKey("doc-job"), api.WithResponseHeader(&h))
	require.NoError(t, err)
	require.Equal(t, job.ID, again.ID)
	require.Equal(t, "true", h.Get(api.HeaderIdempotentReplay))
	_, err = c.ListFederatedJobs(ctx, api.Page{Limit: 1})
	require.NoError(t, err)
	_, err = c.GetFederatedJob(ctx, job.ID)
	require.NoError(t, err)
	_, err = c.ListCheckpoints(ctx, job.ID, api.Page{Limit: 1})
	require.NoError(t, err)
	_, err = c.Model(ctx, job.Status.ModelDigest)
	require.NoError(t, err)
	_, err = c.StopFederatedJob(ctx, job.ID)
	require.NoError(t, err)
	_, err = c.StopFederatedJob(ctx, job.ID)
	require.True(t, api.IsConflict(err), "%v", err)
	require.NoError(t, c.DeleteProplet(ctx, "p1"))

	// Refusals are declared answers too (the document cannot tell that a
	// task needs a module or suspend, so that request is valid to it).
	_, err = c.CreateTask(ctx, api.TaskRequest{Name: "x"})
	require.True(t, api.HasCode(err, api.CodeInvalidRequest), "%v", err)
	_, err = c.GetTask(ctx, "nope")
	require.True(t, api.IsNotFound(err), "%v", err)
	bad, err := api.NewClient(r.srv.URL, "wrong", api.WithHTTPClient(&http.Client{Transport: apitest.Transport(t, nil)}))
	require.NoError(t, err)
	_, err = bad.ListTasks(ctx, api.TaskFilter{})
	require.True(t, api.IsUnauthorized(err), "%v", err)
}
