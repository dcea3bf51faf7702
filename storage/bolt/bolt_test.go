package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/storetest"
)

func openT(t testing.TB, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestration.Store {
		s := openT(t, filepath.Join(t.TempDir(), "propeller.db"))
		t.Cleanup(func() {
			// Every case must leave the indexes exactly in line with the
			// records.
			require.NoError(t, s.Check())
			require.NoError(t, s.Close())
		})
		return s
	})
}

func TestLockedByAnotherHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "propeller.db")
	s := openT(t, path)
	// flock is per open file description, so a second Open in this process
	// contends exactly like a second process would.
	_, err := bolt.Open(path, bolt.Options{LockTimeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, bolt.ErrLocked)
	require.ErrorContains(t, err, path)
	require.NoError(t, s.Close())

	s2, err := bolt.Open(path, bolt.Options{LockTimeout: 50 * time.Millisecond})
	require.NoError(t, err, "the lock is released on Close")
	require.NoError(t, s2.Close())
}

func TestReopenKeepsTasksAndIndexes(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "propeller.db")
	s := openT(t, path)
	want := storetest.NewTask("t-1", orchestration.PhaseRunning)
	want.Status.PropletID = "p-1"
	want.Spec.Labels = map[string]string{"app": "a"}
	require.NoError(t, s.CreateTask(ctx, want))
	require.NoError(t, s.PutProplet(ctx, orchestration.Proplet{ID: "p-1", Slots: 2}))
	require.NoError(t, s.Close())

	s = openT(t, path)
	defer func() { require.NoError(t, s.Close()) }()
	require.NoError(t, s.Check())
	got, err := s.GetTask(ctx, "t-1")
	require.NoError(t, err)
	require.Equal(t, want, got)
	for _, f := range []orchestration.TaskFilter{
		{Phases: []orchestration.Phase{orchestration.PhaseRunning}},
		{PropletID: "p-1"},
		{Labels: map[string]string{"app": "a"}},
	} {
		page, err := s.ListTasks(ctx, f)
		require.NoError(t, err)
		require.Len(t, page.Tasks, 1)
	}
	ps, err := s.ListProplets(ctx)
	require.NoError(t, err)
	require.Equal(t, []orchestration.Proplet{{ID: "p-1", Slots: 2}}, ps)
}

func TestWritesAfterCloseAndPanickingUpdate(t *testing.T) {
	ctx := t.Context()
	s := openT(t, filepath.Join(t.TempDir(), "propeller.db"))
	require.NoError(t, s.CreateTask(ctx, storetest.NewTask("t-1", orchestration.PhasePending)))
	// A panicking UpdateFunc panics in its caller and leaves the shared
	// committer working.
	require.Panics(t, func() {
		_, _ = s.UpdateTask(ctx, "t-1", func(*orchestration.Task) error { panic("boom") })
	})
	got, err := s.UpdateTask(ctx, "t-1", func(tk *orchestration.Task) error {
		tk.Status.Attempt = 7
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 7, got.Status.Attempt)

	require.NoError(t, s.Close())
	require.ErrorIs(t, s.CreateTask(ctx, storetest.NewTask("t-2", orchestration.PhasePending)), bolt.ErrClosed)
}
