package operator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"

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
		return operator.NewStore(k8s, newNamespace(t), nil)
	})
}

// TestStoreConformanceCoalescing runs the suite with held writes that
// never flush by themselves: every read must see them anyway.
func TestStoreConformanceCoalescing(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestration.Store {
		s := operator.NewStore(k8s, newNamespace(t), nil)
		s.Coalesce(time.Hour)
		return s
	})
}

// TestStoreCoalescedAdmission: releasing a kubectl-created object is held
// back; the store reads it released, the server does not have it until
// the next write or the timer carries it.
func TestStoreCoalescedAdmission(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	s := operator.NewStore(k8s, ns, nil)
	s.Coalesce(time.Hour)
	release := func(tk *orchestration.Task) error { tk.Spec.Suspend = false; tk.Status.Reason = ""; return nil }
	server := func(name string) *v1.WasmTask {
		obj := &v1.WasmTask{}
		require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj))
		return obj
	}

	// Carried by the next write.
	require.NoError(t, k8s.Create(ctx, &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a"}, Spec: v1.WasmTaskSpec{ImageURL: "https://example.com/a.wasm"}}))
	got, err := s.UpdateTask(ctx, "a", release)
	require.NoError(t, err)
	require.False(t, got.Spec.Suspend)
	require.Empty(t, server("a").Status.Phase, "held back")
	got, err = s.GetTask(ctx, "a")
	require.NoError(t, err)
	require.False(t, got.Spec.Suspend)
	page, err := s.ListTasks(ctx, orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhasePending}})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	require.False(t, page.Tasks[0].Spec.Suspend)
	_, err = s.UpdateTask(ctx, "a", func(tk *orchestration.Task) error {
		tk.Status.Phase = orchestration.PhaseScheduled
		tk.Status.PropletID = "p1"
		tk.Status.Attempt = 1
		return nil
	})
	require.NoError(t, err)
	obj := server("a")
	require.Equal(t, v1.TaskScheduled, obj.Status.Phase)
	require.False(t, obj.Status.Held)

	// Scheduled -> Running is held; another writer (conditions) in between
	// does not lose it.
	_, err = s.UpdateTask(ctx, "a", func(tk *orchestration.Task) error { tk.Status.Phase = orchestration.PhaseRunning; return nil })
	require.NoError(t, err)
	require.Equal(t, v1.TaskScheduled, server("a").Status.Phase)
	obj = server("a")
	before := obj.DeepCopy()
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: "Other", Status: metav1.ConditionTrue, Reason: "Test"})
	require.NoError(t, k8s.Status().Patch(ctx, obj, client.MergeFrom(before)))
	got, err = s.GetTask(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, orchestration.PhaseRunning, got.Status.Phase)
	_, err = s.UpdateTask(ctx, "a", func(tk *orchestration.Task) error {
		tk.Status.Phase = orchestration.PhaseSucceeded
		tk.Status.Results = []float64{5}
		return nil
	})
	require.NoError(t, err)
	obj = server("a")
	require.Equal(t, v1.TaskSucceeded, obj.Status.Phase)
	require.Equal(t, []float64{5}, obj.Status.Results)
	require.True(t, meta.IsStatusConditionTrue(obj.Status.Conditions, "Other"))

	// Written by the timer when nothing follows.
	s2 := operator.NewStore(k8s, ns, nil)
	s2.Coalesce(time.Millisecond)
	require.NoError(t, k8s.Create(ctx, &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}, Spec: v1.WasmTaskSpec{ImageURL: "https://example.com/b.wasm"}}))
	_, err = s2.UpdateTask(ctx, "b", release)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		obj := server("b")
		return obj.Status.Phase == v1.TaskPending && !obj.Status.Held
	}, 30*time.Second, 20*time.Millisecond)
}

// TestStoreRejectsNonNameIDs: an id is an object name.
func TestStoreRejectsNonNameIDs(t *testing.T) {
	s := operator.NewStore(k8s, newNamespace(t), nil)
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
	s := operator.NewStore(k8s, newNamespace(t), nil)
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

// ownersFunc is an operator.Owners from a function.
type ownersFunc func(orchestration.Task) (*metav1.OwnerReference, error)

func (f ownersFunc) Owner(_ context.Context, t orchestration.Task) (*metav1.OwnerReference, error) {
	return f(t)
}

// TestStoreOwners: a new task's object carries the reference its Owners
// returns, none when it returns nil, and a failing Owners fails the
// create before anything is written.
func TestStoreOwners(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: ns}}
	require.NoError(t, k8s.Create(ctx, owner))
	ref := metav1.NewControllerRef(owner, corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	s := operator.NewStore(k8s, ns, ownersFunc(func(tk orchestration.Task) (*metav1.OwnerReference, error) {
		switch tk.ID {
		case "owned":
			return ref, nil
		case "broken":
			return nil, errors.New("owner lookup failed")
		}
		return nil, nil
	}))

	require.NoError(t, s.CreateTask(ctx, storetest.NewTask("owned", orchestration.PhasePending)))
	obj := &v1.WasmTask{}
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "owned"}, obj))
	require.Equal(t, []metav1.OwnerReference{*ref}, obj.OwnerReferences)

	require.NoError(t, s.CreateTask(ctx, storetest.NewTask("plain", orchestration.PhasePending)))
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "plain"}, obj))
	require.Empty(t, obj.OwnerReferences)

	err := s.CreateTask(ctx, storetest.NewTask("broken", orchestration.PhasePending))
	require.ErrorContains(t, err, "owner lookup failed")
	_, err = s.GetTask(ctx, "broken")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
}

// TestFLStoreConformance runs the shared fl.Store suite on the job records.
func TestFLStoreConformance(t *testing.T) {
	fltest.TestStore(t, func(t *testing.T) fl.Store {
		return operator.NewFLStore(k8s, newNamespace(t))
	})
}

// TestStoreAllNamespaces: with AllNamespaces a task id "<ns>/<name>"
// names a WasmTask in ns, a plain id one in the store's namespace, and
// lists page across namespaces in one order. (The conformance suite needs
// a store of its own; across all namespaces it would see other tests'
// objects, so this one filters by a label of its own.)
func TestStoreAllNamespaces(t *testing.T) {
	ctx := t.Context()
	home, team := newNamespace(t), newNamespace(t)
	s := operator.NewStore(k8s, home, nil)
	s.AllNamespaces()
	label := map[string]string{"suite": team}
	ids := []string{"a-home", team + "/b-team", team + "/c-team", "d-home"}
	for _, id := range ids {
		require.NoError(t, s.CreateTask(ctx, orchestration.Task{ID: id, Spec: orchestration.TaskSpec{Name: id, Image: "http://x/y.wasm", Labels: label},
			Status: orchestration.TaskStatus{Phase: orchestration.PhasePending, CreatedAt: time.Now()}}))
	}
	wt := &v1.WasmTask{}
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: team, Name: "b-team"}, wt))
	require.Equal(t, team+"/b-team", s.ID(wt.Namespace, wt.Name))
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: home, Name: "a-home"}, wt))

	got, err := s.UpdateTask(ctx, team+"/c-team", func(t *orchestration.Task) error {
		t.Status.Phase = orchestration.PhaseScheduled
		t.Status.PropletID = "p1"
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, team+"/c-team", got.ID)
	got, err = s.GetTask(ctx, team+"/c-team")
	require.NoError(t, err)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)

	// One task a page, in namespace/name order: every id once.
	var listed []string
	f := orchestration.TaskFilter{Labels: label, Limit: 1}
	for {
		page, err := s.ListTasks(ctx, f)
		require.NoError(t, err)
		for _, task := range page.Tasks {
			listed = append(listed, task.ID)
		}
		if page.Continue == "" {
			break
		}
		f.Continue = page.Continue
	}
	require.ElementsMatch(t, ids, listed)

	require.NoError(t, s.DeleteTask(ctx, team+"/b-team"))
	_, err = s.GetTask(ctx, team+"/b-team")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	_, err = s.GetTask(ctx, "Bad Namespace/x")
	require.ErrorIs(t, err, orchestration.ErrNotFound)

	// Without AllNamespaces a slash is no namespace: no such task.
	_, err = operator.NewStore(k8s, home, nil).GetTask(ctx, team+"/c-team")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
}
