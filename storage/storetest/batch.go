package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

// batchStore is a store with the optional batch and idempotency ports.
type batchStore interface {
	orchestration.Store
	orchestration.BatchCreator
	orchestration.IdempotencyStore
}

// runOptional runs the cases of the optional ports, BatchCreator and
// IdempotencyStore, as subtests named Batch/..., for a store that
// implements them. A store without them (the operator's CRD store) gets
// no such subtest rather than a skipped one: the engine never calls these
// ports there, it creates a batch task by task. The test log says which
// way the suite went.
func runOptional(t *testing.T, newStore func(t *testing.T) orchestration.Store) {
	probe := newStore(t)
	_, batch := probe.(orchestration.BatchCreator)
	_, idem := probe.(orchestration.IdempotencyStore)
	if batch != idem {
		t.Fatalf("%T implements only one of BatchCreator and IdempotencyStore; the engine needs both or neither", probe)
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s batchStore)
	}{
		{"CreateTasks", testCreateTasks},
		{"CreateTasksAllOrNothing", testCreateTasksAllOrNothing},
		{"IdempotencyRecord", testIdempotencyRecord},
		{"IdempotencySameKeyConcurrently", testIdempotencySameKeyConcurrently},
		{"IdempotencyPrune", testIdempotencyPrune},
		{"IdempotencyIsolation", testIdempotencyIsolation},
		{"BatchCanceledContext", testBatchCanceledContext},
	}
	if !batch {
		t.Logf("%T implements neither BatchCreator nor IdempotencyStore: their %d cases do not apply", probe, len(cases))
		return
	}
	t.Logf("%T implements BatchCreator and IdempotencyStore: running their %d cases", probe, len(cases))
	for _, c := range cases {
		t.Run("Batch/"+c.name, func(t *testing.T) {
			c.fn(t, newStore(t).(batchStore))
		})
	}
}

func record(key string, at time.Time, ids ...string) *orchestration.IdempotencyRecord {
	return &orchestration.IdempotencyRecord{Key: key, Fingerprint: "fp-" + key, TaskIDs: ids, CreatedAt: at}
}

func requireMissing(t *testing.T, s orchestration.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := s.GetTask(ctxT(t), id)
		require.ErrorIs(t, err, orchestration.ErrNotFound, "task %s", id)
	}
}

func testCreateTasks(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	in := []orchestration.Task{
		NewTask("t-b1", orchestration.PhasePending),
		NewTask("t-b2", orchestration.PhaseScheduled),
		NewTask("t-b3", orchestration.PhasePending),
	}
	in[1].Status.PropletID = "p-1"
	in[2].Spec.Labels = map[string]string{"app": "batch"}
	require.NoError(t, s.CreateTasks(ctx, in, nil))
	for _, want := range in {
		got, err := s.GetTask(ctx, want.ID)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	// The index entries come with the records.
	require.Equal(t, []string{"t-b1", "t-b3"}, listAll(t, s, orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhasePending}}))
	require.Equal(t, []string{"t-b2"}, listAll(t, s, orchestration.TaskFilter{PropletID: "p-1"}))
	require.Equal(t, []string{"t-b3"}, listAll(t, s, orchestration.TaskFilter{Labels: map[string]string{"app": "batch"}}))
	require.ErrorIs(t, s.CreateTask(ctx, NewTask("t-b2", orchestration.PhasePending)), orchestration.ErrExists)
}

func testCreateTasksAllOrNothing(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	old := NewTask("t-old", orchestration.PhaseRunning)
	require.NoError(t, s.CreateTask(ctx, old))

	batch := []orchestration.Task{NewTask("t-n1", orchestration.PhasePending), NewTask("t-old", orchestration.PhasePending), NewTask("t-n2", orchestration.PhasePending)}
	err := s.CreateTasks(ctx, batch, record("k-fail", base, "t-n1", "t-old", "t-n2"))
	require.ErrorIs(t, err, orchestration.ErrExists)
	require.ErrorContains(t, err, "t-old")
	requireMissing(t, s, "t-n1", "t-n2")
	got, err := s.GetTask(ctx, "t-old")
	require.NoError(t, err)
	require.Equal(t, old, got, "a rejected batch must not overwrite")
	_, err = s.GetIdempotency(ctx, "k-fail")
	require.ErrorIs(t, err, orchestration.ErrNotFound, "nor record its key")

	dup := []orchestration.Task{NewTask("t-d", orchestration.PhasePending), NewTask("t-d", orchestration.PhasePending)}
	require.ErrorIs(t, s.CreateTasks(ctx, dup, nil), orchestration.ErrInvalid)
	requireMissing(t, s, "t-d")
	empty := []orchestration.Task{NewTask("t-e", orchestration.PhasePending), NewTask("", orchestration.PhasePending)}
	require.ErrorIs(t, s.CreateTasks(ctx, empty, nil), orchestration.ErrInvalid)
	requireMissing(t, s, "t-e")
	require.ErrorIs(t, s.CreateTasks(ctx, []orchestration.Task{NewTask("t-k", orchestration.PhasePending)}, record("", base, "t-k")), orchestration.ErrInvalid)
	requireMissing(t, s, "t-k")
}

func testIdempotencyRecord(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	_, err := s.GetIdempotency(ctx, "k-1")
	require.ErrorIs(t, err, orchestration.ErrNotFound)

	rec := record("k-1", base, "t-i1", "t-i2")
	require.NoError(t, s.CreateTasks(ctx, []orchestration.Task{NewTask("t-i1", orchestration.PhasePending), NewTask("t-i2", orchestration.PhasePending)}, rec))
	got, err := s.GetIdempotency(ctx, "k-1")
	require.NoError(t, err)
	require.Equal(t, *rec, got)

	// A second batch under the same key is refused whole.
	err = s.CreateTasks(ctx, []orchestration.Task{NewTask("t-i3", orchestration.PhasePending)}, record("k-1", base.Add(time.Minute), "t-i3"))
	require.ErrorIs(t, err, orchestration.ErrExists)
	requireMissing(t, s, "t-i3")
	got, err = s.GetIdempotency(ctx, "k-1")
	require.NoError(t, err)
	require.Equal(t, *rec, got, "the first record stays")

	// Keys are exact: another key, even one with k-1 as a prefix, is free.
	require.NoError(t, s.CreateTasks(ctx, []orchestration.Task{NewTask("t-i3", orchestration.PhasePending)}, record("k-10", base, "t-i3")))
	got, err = s.GetIdempotency(ctx, "k-10")
	require.NoError(t, err)
	require.Equal(t, []string{"t-i3"}, got.TaskIDs)
}

func testIdempotencySameKeyConcurrently(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("t-c%02d", i)
			errs[i] = s.CreateTasks(ctx, []orchestration.Task{NewTask(id, orchestration.PhasePending)}, record("k-race", base, id))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "two batches recorded the same key")
			winner = i
			continue
		}
		require.ErrorIs(t, err, orchestration.ErrExists)
	}
	require.NotEqual(t, -1, winner, "one batch under the key wins")
	id := fmt.Sprintf("t-c%02d", winner)
	got, err := s.GetIdempotency(ctx, "k-race")
	require.NoError(t, err)
	require.Equal(t, []string{id}, got.TaskIDs)
	require.Equal(t, []string{id}, listAll(t, s, orchestration.TaskFilter{}), "only the winner's task is stored")
}

func testIdempotencyPrune(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	for i, key := range []string{"k-a", "k-b", "k-c"} {
		id := "t-p" + key
		require.NoError(t, s.CreateTasks(ctx, []orchestration.Task{NewTask(id, orchestration.PhasePending)}, record(key, base.Add(time.Duration(i)*time.Hour), id)))
	}
	prune := func(before time.Time) int {
		n, err := s.PruneIdempotency(ctx, before)
		require.NoError(t, err)
		return n
	}
	have := func(key string) bool {
		_, err := s.GetIdempotency(ctx, key)
		if err != nil {
			require.ErrorIs(t, err, orchestration.ErrNotFound)
		}
		return err == nil
	}
	require.Equal(t, 0, prune(base), "strictly before")
	require.Equal(t, 1, prune(base.Add(time.Hour)))
	require.False(t, have("k-a"))
	require.True(t, have("k-b"))
	require.True(t, have("k-c"))
	require.Equal(t, 0, prune(base.Add(time.Hour)), "nothing left that old")

	// A pruned key can be recorded again, and is then as new.
	require.NoError(t, s.CreateTasks(ctx, []orchestration.Task{NewTask("t-again", orchestration.PhasePending)}, record("k-a", base.Add(3*time.Hour), "t-again")))
	require.Equal(t, 1, prune(base.Add(90*time.Minute)), "only k-b")
	require.True(t, have("k-a"))
	require.False(t, have("k-b"))
	require.True(t, have("k-c"))
	require.Equal(t, 2, prune(base.Add(10*time.Hour)))
	require.False(t, have("k-a"))
	require.False(t, have("k-c"))

	// Pruning forgets keys, never tasks.
	require.Equal(t, []string{"t-again", "t-pk-a", "t-pk-b", "t-pk-c"}, listAll(t, s, orchestration.TaskFilter{}))
}

func testIdempotencyIsolation(t *testing.T, s batchStore) {
	ctx := ctxT(t)
	tasks := []orchestration.Task{NewTask("t-s1", orchestration.PhasePending)}
	tasks[0].Spec.Labels = map[string]string{"app": "a"}
	rec := record("k-iso", base, "t-s1")
	require.NoError(t, s.CreateTasks(ctx, tasks, rec))
	tasks[0].Spec.Labels["app"] = "changed"
	rec.TaskIDs[0] = "changed"

	got, err := s.GetIdempotency(ctx, "k-iso")
	require.NoError(t, err)
	require.Equal(t, []string{"t-s1"}, got.TaskIDs)
	got.TaskIDs[0] = "changed again"
	again, err := s.GetIdempotency(ctx, "k-iso")
	require.NoError(t, err)
	require.Equal(t, []string{"t-s1"}, again.TaskIDs)
	stored, err := s.GetTask(ctx, "t-s1")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"app": "a"}, stored.Spec.Labels)
}

func testBatchCanceledContext(t *testing.T, s batchStore) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	err := s.CreateTasks(ctx, []orchestration.Task{NewTask("t-cx", orchestration.PhasePending)}, record("k-cx", base, "t-cx"))
	require.ErrorIs(t, err, context.Canceled)
	requireMissing(t, s, "t-cx")
	_, err = s.GetIdempotency(ctx, "k-cx")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.PruneIdempotency(ctx, base)
	require.ErrorIs(t, err, context.Canceled)
}
