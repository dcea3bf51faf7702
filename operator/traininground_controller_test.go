package operator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// requireOwnedBy: o has exactly one owner reference, the controller
// reference to owner (by UID), which blocks the owner's deletion until o
// is gone (what the garbage collector needs for foreground deletion).
func requireOwnedBy(t *testing.T, o, owner client.Object, kind string) {
	t.Helper()
	refs := o.GetOwnerReferences()
	require.Len(t, refs, 1, o.GetName())
	ref := refs[0]
	require.Equal(t, v1.GroupVersion.String(), ref.APIVersion, o.GetName())
	require.Equal(t, kind, ref.Kind, o.GetName())
	require.Equal(t, owner.GetName(), ref.Name, o.GetName())
	require.Equal(t, owner.GetUID(), ref.UID, o.GetName())
	require.True(t, ref.Controller != nil && *ref.Controller, o.GetName())
	require.True(t, ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion, o.GetName())
}

func roundEvents(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	require.NoError(t, k8s.List(t.Context(), list, client.InNamespace(ns)))
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "TrainingRound" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// TestTrainingRoundOwnsItsTasks: a round's WasmTasks are created owned by
// its TrainingRound, which exists before them and is owned by the
// FederatedJob; the round's status counts its participants by task phase
// (pending while the pinned proplets are unknown, failed once the round
// fails at its deadline and its tasks are stopped), with conditions and
// events following the round.
func TestTrainingRoundOwnsItsTasks(t *testing.T) {
	e := newFLData(t)
	e.op = startOperatorIn(t, e.ns, "", e.dataDir)
	// No proplet p1 or p2 is running: the tasks wait, unschedulable.
	e.create("owned", 2, func(s *v1.FederatedJobSpec) {
		s.Participants = []v1.Participant{{PropletID: "p1"}, {PropletID: "p2"}}
		s.TimeoutSeconds = 8
		s.OnRoundFailure = &v1.FailurePolicy{Action: "fail"}
	})
	fj := e.get("owned")
	const round = "owned-r1-a0"
	tr := &v1.TrainingRound{}
	require.Eventually(t, func() bool {
		require.NoError(t, client.IgnoreNotFound(k8s.Get(t.Context(), client.ObjectKey{Namespace: e.ns, Name: round}, tr)))
		p := tr.Status.Participants
		// The phase and the conditions have different writers (the job's
		// controller and the round's): wait for both.
		c := meta.FindStatusCondition(tr.Status.Conditions, v1.ConditionProgressing)
		return p.Pending == 2 && c != nil && c.Status == metav1.ConditionTrue && c.Reason == "Running" &&
			tr.Status.Phase == v1.FLRunning
	}, 7*time.Second, 50*time.Millisecond, "round never showed two pending participants: %+v", tr.Status)
	requireOwnedBy(t, tr, fj, "FederatedJob")
	require.False(t, meta.IsStatusConditionTrue(tr.Status.Conditions, v1.ConditionReady))
	require.Equal(t, tr.Generation, tr.Status.ObservedGeneration)

	tasks := &v1.WasmTaskList{}
	require.NoError(t, k8s.List(t.Context(), tasks, client.InNamespace(e.ns)))
	require.Len(t, tasks.Items, 2)
	for _, wt := range tasks.Items {
		requireOwnedBy(t, &wt, tr, "TrainingRound")
		require.False(t, wt.CreationTimestamp.Before(&tr.CreationTimestamp), "task %s older than its round", wt.Name)
		require.True(t, slices.Contains(tr.Status.Tasks, wt.Name), wt.Name)
	}

	// The deadline fails the round (and, with action fail, the job); its
	// tasks are stopped.
	require.Eventually(t, func() bool {
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(tr), tr))
		return tr.Status.Phase == v1.FLFailed && tr.Status.Participants.Failed == 2 &&
			meta.IsStatusConditionFalse(tr.Status.Conditions, v1.ConditionProgressing)
	}, time.Minute, 100*time.Millisecond, "round never failed with two failed participants: %+v", tr.Status)
	require.Zero(t, tr.Status.Participants.Pending)
	require.NotNil(t, tr.Status.CompletedAt)
	ready := meta.FindStatusCondition(tr.Status.Conditions, v1.ConditionReady)
	require.Equal(t, metav1.ConditionFalse, ready.Status)
	require.Equal(t, tr.Status.Reason, ready.Reason)
	require.NotEmpty(t, ready.Message)

	var reasons []string
	require.Eventually(t, func() bool {
		reasons = reasons[:0]
		for _, ev := range roundEvents(t, e.ns, round) {
			reasons = append(reasons, ev.Reason)
		}
		return slices.Contains(reasons, "Running") && slices.Contains(reasons, tr.Status.Reason) &&
			slices.Contains(reasons, "ParticipantFailed")
	}, 30*time.Second, 100*time.Millisecond, "round events: %v", reasons)

	// Deleting the job: the owner chain above is what the garbage
	// collector (absent in envtest) follows down to the tasks.
	require.NoError(t, k8s.Delete(t.Context(), fj))
}
