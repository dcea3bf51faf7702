package operator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
)

// TestAllNamespaces: an operator with AllNamespaces runs the WasmTasks of
// its own namespace and of another one through one engine and one
// proplet. Tasks of the same name in both are distinct; results, events
// and PropletGroup targeting stay in the task's namespace; a task running
// elsewhere gets the finalizer, survives an operator restart under its
// id, and is stopped on the proplet when deleted. A FederatedJob elsewhere
// is told where FederatedJobs run.
func TestAllNamespaces(t *testing.T) {
	home, team := newNamespace(t), newNamespace(t)
	url := serveModules(t, "arith", "spin")
	dataDir := t.TempDir()
	all := func(c *operator.Config) { c.AllNamespaces = true }
	op := startOperatorIn(t, home, "", dataDir, all)
	// Slots to spare: objects other tests left in their namespaces are
	// this operator's too.
	startProplet(t, op.mqttAddr, "shared", "--labels", "tier=edge", "--slots", "16")
	ctx := t.Context()

	for i, ns := range []string{home, team} {
		require.NoError(t, k8s.Create(ctx, newTask(ns, "add", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{float64(i), 10}
		})))
	}
	for i, ns := range []string{home, team} {
		got := waitPhase(t, ns, "add", v1.TaskSucceeded)
		require.Equal(t, []float64{float64(i) + 10}, got.Status.Results, ns)
		require.Equal(t, "shared", got.Status.PropletID)
		require.Eventually(t, func() bool {
			return slices.Contains(eventNotes(t, ns, "add"), "Succeeded: attempt 1: Succeeded on shared")
		}, 30*time.Second, 100*time.Millisecond, "no result event in %s", ns)
	}

	g := &v1.PropletGroup{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "edge"}}
	g.Spec.Selector = map[string]string{"tier": "edge"}
	require.NoError(t, k8s.Create(ctx, g))
	require.NoError(t, k8s.Create(ctx, newTask(team, "grouped", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{4, 4}
		s.PropletGroupRef = &v1.LocalObjectReference{Name: "edge"}
	})))
	got := waitPhase(t, team, "grouped", v1.TaskSucceeded)
	require.Equal(t, map[string]string{"tier": "edge"}, got.Status.Selector)

	// FederatedJobs are served in the operator's namespace only, and say so.
	b, err := os.ReadFile(filepath.Join("..", "deploy", "examples", "federatedjob.yaml"))
	require.NoError(t, err)
	fj := &v1.FederatedJob{}
	require.NoError(t, yaml.Unmarshal(b, fj))
	fj.Namespace = team
	require.NoError(t, k8s.Create(ctx, fj))
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(fj), got))
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "NamespaceNotServed" &&
			strings.Contains(c.Message, home) && got.Status.Phase == ""
	}, 30*time.Second, 50*time.Millisecond)

	spin := newTask(team, "spin", url+"/spin.wasm", nil)
	require.NoError(t, k8s.Create(ctx, spin))
	require.Eventually(t, func() bool {
		got := getTask(t, team, "spin")
		return got.Status.Phase == v1.TaskRunning && slices.Contains(got.Finalizers, operator.TaskFinalizer)
	}, 30*time.Second, 50*time.Millisecond)

	addr := op.mqttAddr
	op.stop(t)
	startOperatorIn(t, home, addr, dataDir, all)
	require.NoError(t, k8s.Delete(ctx, spin))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(spin), &v1.WasmTask{}))
	}, 30*time.Second, 50*time.Millisecond)
	// Only an engine that recovered the task under its id could stop it.
	require.Contains(t, eventNotes(t, team, "spin"), "Stopped: stopped on deletion")
}

// TestOwnNamespaceOnly: without AllNamespaces a WasmTask elsewhere is not
// the operator's: it gets no status, and a Warning event that `kubectl
// describe` shows says where WasmTasks run.
func TestOwnNamespaceOnly(t *testing.T) {
	home, other := newNamespace(t), newNamespace(t)
	url := serveModules(t, "arith")
	op := startOperatorIn(t, home, "", t.TempDir(), func(c *operator.Config) { c.UnservedInterval = 100 * time.Millisecond })
	startProplet(t, op.mqttAddr, "solo", "--slots", "2")
	for _, ns := range []string{other, home} {
		require.NoError(t, k8s.Create(t.Context(), newTask(ns, "add", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{1, 1}
		})))
	}
	waitPhase(t, home, "add", v1.TaskSucceeded)
	// The home task ran after the other was created; the other stays untouched.
	elsewhere := getTask(t, other, "add")
	require.Empty(t, elsewhere.Status.Phase)
	cs, err := kubernetes.NewForConfig(restCfg)
	require.NoError(t, err)
	want := fmt.Sprintf("Warning %s: not served: the operator runs the WasmTasks of namespace %q only; apply it in %q, or run the operator with --all-namespaces",
		operator.ReasonNamespaceNotServed, home, home)
	require.Eventually(t, func() bool {
		return slices.Contains(describedEvents(t, cs, elsewhere), want)
	}, 30*time.Second, 50*time.Millisecond, "no %q in %v", want, describedEvents(t, cs, elsewhere))
	require.Empty(t, getTask(t, other, "add").Status.Phase, "an event, not a status: the namespace may get an operator of its own")
	for _, e := range eventNotes(t, home, "add") {
		require.NotContains(t, e, operator.ReasonNamespaceNotServed)
	}
}
