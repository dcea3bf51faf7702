package operator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// testRef records at once, on an object named by the id.
func testRef(id string, record func(runtime.Object)) {
	record(&v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: id}})
}

func task(phase orchestration.Phase, reason, proplet string) orchestration.Task {
	return orchestration.Task{ID: "t1", Status: orchestration.TaskStatus{Phase: phase, Reason: reason, PropletID: proplet, Attempt: 1}}
}

// drain returns the events recorded so far.
func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestTransitionsFoldShortProgress(t *testing.T) {
	rec := events.NewFakeRecorder(16)
	slow := 0
	tr := newTransitions(rec, testRef, time.Hour, func(string) { slow++ })
	tr.observe(task(orchestration.PhasePending, "", ""))
	tr.observe(task(orchestration.PhaseScheduled, "", "p1"))
	tr.observe(task(orchestration.PhaseRunning, "", "p1"))
	require.Empty(t, drain(rec), "progress waits for its hold")
	tr.observe(task(orchestration.PhaseSucceeded, orchestration.ReasonSucceeded, "p1"))
	require.Equal(t, []string{"Normal Succeeded attempt 1: Succeeded on p1"}, drain(rec))
	require.Zero(t, slow)
	require.Empty(t, tr.progress)
	require.Empty(t, tr.last)
}

func TestTransitionsWarningsAtOnce(t *testing.T) {
	rec := events.NewFakeRecorder(16)
	tr := newTransitions(rec, testRef, time.Hour, nil)
	un := task(orchestration.PhasePending, orchestration.ReasonUnschedulable, "")
	un.Status.Message = "no live proplet"
	tr.observe(un)
	tr.observe(un) // unchanged: not repeated
	require.Equal(t, []string{"Warning Unschedulable attempt 1: Pending: no live proplet"}, drain(rec))
}

func TestTransitionsReleaseLongProgress(t *testing.T) {
	rec := events.NewFakeRecorder(16)
	slow := make(chan string, 1)
	tr := newTransitions(rec, testRef, time.Millisecond, func(id string) { slow <- id })
	tr.observe(task(orchestration.PhaseScheduled, "", "p1"))
	require.Equal(t, "t1", <-slow, "a task in flight past the hold is reported slow")
	require.Equal(t, []string{"Normal Scheduled attempt 1: Scheduled on p1"}, drain(rec))
	tr.observe(task(orchestration.PhaseFailed, "Error", "p1"))
	require.Equal(t, []string{"Warning Error attempt 1: Failed on p1"}, drain(rec))
}

func TestTransitionsForgetDeletedTask(t *testing.T) {
	rec := events.NewFakeRecorder(16)
	slow := 0
	tr := newTransitions(rec, testRef, time.Hour, func(string) { slow++ })
	tr.observe(task(orchestration.PhaseRunning, "", "p1"))
	require.Len(t, tr.progress, 1)
	tr.forget("t1")
	require.Empty(t, tr.progress)
	require.Empty(t, tr.last)
	require.Empty(t, drain(rec), "no event for an object that is gone")
	require.Zero(t, slow)
}
