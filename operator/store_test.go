package operator_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/orchestration/fl/fltest"
	"github.com/absmach/propeller/storage/storetest"
)

// TestStoreConformance runs the shared TaskStore suite against the
// CRD-backed store on a real API server.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestration.Store {
		return operator.NewStore(k8s, newNamespace(t))
	})
}

// TestStoreRejectsNonNameIDs: an id is an object name.
func TestStoreRejectsNonNameIDs(t *testing.T) {
	s := operator.NewStore(k8s, newNamespace(t))
	for _, id := range []string{"Upper", "has space", "x/y", "-lead"} {
		err := s.CreateTask(t.Context(), storetest.NewTask(id, orchestration.PhasePending))
		require.ErrorIs(t, err, orchestration.ErrInvalid, id)
		_, err = s.GetTask(t.Context(), id)
		require.ErrorIs(t, err, orchestration.ErrNotFound, id)
	}
}

// TestStoreEngineIDs: ids from the engine's generator are valid names and
// list in creation order.
func TestStoreEngineIDs(t *testing.T) {
	s := operator.NewStore(k8s, newNamespace(t))
	gen := orchestration.NewTimeIDGen(orchestration.SystemClock{})
	var want []string
	for range 5 {
		id := gen()
		want = append(want, id)
		require.NoError(t, s.CreateTask(t.Context(), storetest.NewTask(id, orchestration.PhasePending)))
	}
	page, err := s.ListTasks(t.Context(), orchestration.TaskFilter{})
	require.NoError(t, err)
	var got []string
	for _, tk := range page.Tasks {
		got = append(got, tk.ID)
	}
	require.Equal(t, want, got)
}

// TestFLStoreConformance runs the shared fl.Store suite on the job records.
func TestFLStoreConformance(t *testing.T) {
	fltest.TestStore(t, func(t *testing.T) fl.Store {
		return operator.NewFLStore(k8s, newNamespace(t))
	})
}
