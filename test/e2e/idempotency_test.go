package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

// TestIdempotentCreateSurvivesKill: the same create sent twice makes one
// task, and so does a third time after the manager was SIGKILLed and
// started again on its data dir; the same holds for a batch. Reusing the
// key for another request is refused, and the tasks run once.
func TestIdempotentCreateSurvivesKill(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager()
	ctx := context.Background()
	req := rest.TaskRequest{Name: "once", File: add, Function: "add", Inputs: []float64{40, 2}, Labels: map[string]string{"run": "idem"}}
	create := func(key string) (rest.Task, http.Header) {
		t.Helper()
		var h http.Header
		task, err := s.Client.CreateTask(ctx, req, rest.WithIdempotencyKey(key), rest.WithResponseHeader(&h))
		require.NoError(t, err)
		return task, h
	}
	first, h := create("create-1")
	require.Empty(t, h.Get(rest.HeaderIdempotentReplay))
	again, h := create("create-1")
	require.Equal(t, "true", h.Get(rest.HeaderIdempotentReplay))
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, "/v1/tasks/"+first.ID, h.Get("Location"))

	batchReq := []rest.TaskRequest{req, req, req}
	batch, err := s.Client.CreateTasks(ctx, batchReq, rest.WithIdempotencyKey("batch-1"))
	require.NoError(t, err)
	require.Len(t, batch, 3)

	s.Manager.Kill()
	s.StartManager()

	after, h := create("create-1")
	require.Equal(t, "true", h.Get(rest.HeaderIdempotentReplay), "the key outlives a SIGKILL")
	require.Equal(t, first.ID, after.ID)
	var bh http.Header
	replayed, err := s.Client.CreateTasks(ctx, batchReq, rest.WithIdempotencyKey("batch-1"), rest.WithResponseHeader(&bh))
	require.NoError(t, err)
	require.Equal(t, "true", bh.Get(rest.HeaderIdempotentReplay))
	require.Equal(t, taskIDs(batch), taskIDs(replayed))

	_, err = s.Client.CreateTask(ctx, rest.TaskRequest{Name: "other", File: add, Function: "add", Inputs: []float64{1, 1}}, rest.WithIdempotencyKey("create-1"))
	require.True(t, rest.HasCode(err, rest.CodeIdempotencyKeyReused), "%v", err)

	// Only now a proplet: every task the retries named runs, once.
	s.StartProplet("edge-a")
	s.WaitAlive("edge-a")
	tasks := waitAll(t, s.Client, "idem", 4)
	for _, task := range tasks {
		require.Equal(t, rest.PhaseSucceeded, task.Phase, "%s: %s %s", task.ID, task.Reason, task.Message)
		require.Equal(t, []float64{42}, task.Results)
		require.Equal(t, 1, task.Attempt)
	}
	require.ElementsMatch(t, append([]string{first.ID}, taskIDs(batch)...), taskIDs(tasks), "one task per create, none for the retries")
}

// TestBatchOfThousand: 1,000 tasks in one request, in request order, all
// Succeeded on a real proplet with the results their inputs give.
func TestBatchOfThousand(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("edge-a", "--slots", "64")
	s.WaitAlive("edge-a")
	reqs := make([]rest.TaskRequest, 1000)
	for i := range reqs {
		reqs[i] = rest.TaskRequest{Name: fmt.Sprintf("b-%04d", i), File: add, Function: "add", Inputs: []float64{float64(i), 1}, Labels: map[string]string{"run": "thousand"}}
	}
	created, err := s.Client.CreateTasks(context.Background(), reqs)
	require.NoError(t, err)
	require.Len(t, created, len(reqs))
	for i, task := range created {
		require.Equal(t, reqs[i].Name, task.Name, "in request order")
	}
	done := map[string]rest.Task{}
	for _, task := range waitAll(t, s.Client, "thousand", len(reqs)) {
		done[task.ID] = task
	}
	for i, c := range created {
		task := done[c.ID]
		require.Equal(t, rest.PhaseSucceeded, task.Phase, "%s: %s %s", task.Name, task.Reason, task.Message)
		require.Equal(t, []float64{float64(i) + 1}, task.Results, task.Name)
	}
}

func taskIDs(tasks []rest.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}
