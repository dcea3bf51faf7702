package bolt_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/storetest"
)

// TestBatchIsOneCommit: 1,000 tasks with their index entries and the
// idempotency record go to disk in one transaction, so one fsync, and stay
// there across a reopen.
func TestBatchIsOneCommit(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "propeller.db")
	s := openT(t, path)
	tasks := make([]orchestration.Task, orchestration.MaxBatchSize)
	rec := &orchestration.IdempotencyRecord{Key: "k-1000", Fingerprint: "fp", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := range tasks {
		tasks[i] = storetest.NewTask(fmt.Sprintf("t-%04d", i), orchestration.PhasePending)
		tasks[i].Spec.Labels = map[string]string{"batch": "b1"}
		rec.TaskIDs = append(rec.TaskIDs, tasks[i].ID)
	}
	before, err := s.Stats()
	require.NoError(t, err)
	require.NoError(t, s.CreateTasks(ctx, tasks, rec))
	after, err := s.Stats()
	require.NoError(t, err)
	require.Equal(t, uint64(1), after.Commits-before.Commits, "one commit for the whole batch")
	require.Equal(t, len(tasks), after.Tasks)

	// A prune with nothing old enough writes nothing.
	n, err := s.PruneIdempotency(ctx, rec.CreatedAt)
	require.NoError(t, err)
	require.Zero(t, n)
	idle, err := s.Stats()
	require.NoError(t, err)
	require.Equal(t, after.Commits, idle.Commits)
	require.NoError(t, s.Close())

	s = openT(t, path)
	defer func() { require.NoError(t, s.Close()) }()
	require.NoError(t, s.Check())
	got, err := s.GetIdempotency(ctx, "k-1000")
	require.NoError(t, err)
	require.Equal(t, *rec, got)
	page, err := s.ListTasks(ctx, orchestration.TaskFilter{Labels: map[string]string{"batch": "b1"}, Limit: 1000})
	require.NoError(t, err)
	require.Len(t, page.Tasks, len(tasks))
	require.Empty(t, page.Continue)
}
