package operator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration"
)

// describedEvents lists wt's events as `kubectl describe` does: core/v1
// Events whose involvedObject has wt's name, namespace, kind and uid.
func describedEvents(t *testing.T, cs kubernetes.Interface, wt *v1.WasmTask) []string {
	t.Helper()
	list, err := cs.CoreV1().Events(wt.Namespace).Search(operator.Scheme(), wt)
	require.NoError(t, err)
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	return out
}

// TestEventsDescribed: the engine's events are attached to their WasmTask
// by uid, so the field selector of `kubectl describe wasmtask` finds them:
// a result, a warning recorded at admission, and the result of a task the
// engine itself created (as federated learning does) moments before it
// ended. Every event of the namespace names its object's uid.
func TestEventsDescribed(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith")
	built := make(chan *core.Core, 1)
	op := startOperatorIn(t, ns, "", t.TempDir(), func(c *operator.Config) {
		c.Built = func(c *core.Core) { built <- c }
	})
	engine := (<-built).Engine()
	startProplet(t, op.mqttAddr, "desc-1")
	cs, err := kubernetes.NewForConfig(restCfg)
	require.NoError(t, err)

	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "add", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{1, 2}
	})))
	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "pinned", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.PropletID = "ghost"
	})))
	made, err := engine.Submit(t.Context(), orchestration.TaskSpec{
		Name: "made", Image: url + "/arith.wasm", Function: "add", Inputs: []float64{2, 2},
	})
	require.NoError(t, err)

	for _, c := range []struct{ name, want string }{
		{"add", "Normal Succeeded: attempt 1: Succeeded on desc-1"},
		{"pinned", "Warning Unschedulable: attempt 0: Pending: proplet ghost is not known"},
		{made.ID, "Normal Succeeded: attempt 1: Succeeded on desc-1"},
	} {
		wt := getTask(t, ns, c.name)
		require.NotEmpty(t, wt.UID)
		require.Eventually(t, func() bool {
			return slices.Contains(describedEvents(t, cs, wt), c.want)
		}, 30*time.Second, 100*time.Millisecond, "kubectl describe shows no %q for %s: %v", c.want, c.name, describedEvents(t, cs, wt))
	}

	all := &corev1.EventList{}
	require.NoError(t, k8s.List(t.Context(), all, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("involvedObject.kind", "WasmTask")}))
	require.NotEmpty(t, all.Items)
	for _, e := range all.Items {
		wt := getTask(t, ns, e.InvolvedObject.Name)
		require.Equal(t, wt.UID, e.InvolvedObject.UID, "event %s/%s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
	}
}

// TestTaskRefSources: an event's object comes from the informer cache once
// it has synced, at once; before that, from the API server, later.
func TestTaskRefSources(t *testing.T) {
	ns := newNamespace(t)
	wt := newTask(ns, "ref", "http://example.invalid/m.wasm", nil)
	require.NoError(t, k8s.Create(t.Context(), wt))
	store := operator.NewStore(k8s, ns, nil)
	informers, err := cache.New(restCfg, cache.Options{Scheme: operator.Scheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	require.NoError(t, err)

	got := make(chan runtime.Object, 1)
	record := func(obj runtime.Object) { got <- obj }
	uidOf := func(obj runtime.Object) types.UID {
		m, err := meta.Accessor(obj)
		require.NoError(t, err)
		require.Equal(t, "ref", m.GetName())
		require.Equal(t, ns, m.GetNamespace())
		return m.GetUID()
	}
	operator.ResolveTaskRef(store, informers, k8s, "ref", record)
	require.Equal(t, wt.UID, uidOf(<-got), "read from the API server while the cache has not synced")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = informers.Start(ctx) }()
	require.True(t, informers.WaitForCacheSync(ctx))
	// The object predates the cache, so its initial list has it.
	operator.ResolveTaskRef(store, informers, k8s, "ref", record)
	select {
	case obj := <-got:
		require.Equal(t, wt.UID, uidOf(obj))
	default:
		t.Fatal("a synced cache answers before resolve returns")
	}
}
