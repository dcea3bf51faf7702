package operator_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
)

// regardingRecorder keeps the events recorded on objects of some
// namespaces as "namespace/name uid type reason: note".
type regardingRecorder struct {
	namespaces []string
	mu         sync.Mutex
	got        []string
}

func (r *regardingRecorder) Eventf(regarding, _ runtime.Object, typ, reason, _, note string, args ...any) {
	m, err := meta.Accessor(regarding)
	if err != nil {
		panic(err)
	}
	if !slices.Contains(r.namespaces, m.GetNamespace()) {
		return // another test's leftovers
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s/%s %s %s %s: %s", m.GetNamespace(), m.GetName(), m.GetUID(), typ, reason, fmt.Sprintf(note, args...)))
}

func (r *regardingRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestUnservedSweeps drives the watch's sweeps one by one against the API
// server: a WasmTask outside the operator's namespace that nobody admits
// is told once, on its second sweep; one admitted meanwhile (by the
// operator serving its namespace) is not, nor is one admitted before, nor
// one in the operator's own namespace.
func TestUnservedSweeps(t *testing.T) {
	home, away, taken := newNamespace(t), newNamespace(t), newNamespace(t)
	ctx := t.Context()
	create := func(ns, name string) *v1.WasmTask {
		wt := newTask(ns, name, "http://example.invalid/m.wasm", nil)
		require.NoError(t, k8s.Create(ctx, wt))
		return wt
	}
	admit := func(wt *v1.WasmTask) {
		wt.Status.Phase = v1.TaskPending
		require.NoError(t, k8s.Status().Update(ctx, wt))
	}
	create(home, "mine")
	lost := create(away, "lost")
	admit(create(taken, "theirs"))
	slow := create(taken, "slow")

	rec := &regardingRecorder{namespaces: []string{home, away, taken}}
	sweep := operator.UnservedSweep(k8s, rec, home)
	sweep(ctx)
	require.Empty(t, rec.take(), "the first sighting is the grace")
	admit(slow)
	late := create(away, "late")
	sweep(ctx)
	msg := fmt.Sprintf("not served: the operator runs the WasmTasks of namespace %q only; apply it in %q, or run the operator with --all-namespaces", home, home)
	require.Equal(t, []string{fmt.Sprintf("%s/lost %s Warning NamespaceNotServed: %s", away, lost.UID, msg)}, rec.take())
	sweep(ctx)
	require.Equal(t, []string{fmt.Sprintf("%s/late %s Warning NamespaceNotServed: %s", away, late.UID, msg)}, rec.take(), "told once each")
	sweep(ctx)
	require.Empty(t, rec.take())
}
