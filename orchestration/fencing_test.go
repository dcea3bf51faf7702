package orchestration_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

func (h *harness) beat(id string, running ...orchestration.AttemptRef) {
	h.t.Helper()
	require.NoError(h.t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: id, Instance: "i-" + id, Running: running}))
}

// An attempt lost with its proplet is stopped as soon as the proplet shows
// up again still running it, and keeps being stopped while it is listed;
// the retry running elsewhere is left alone, and only its result counts.
func TestLostAttemptIsStoppedWhenItsPropletReturns(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 2, PropletIDs: []string{"p1", "p2"}})
	require.Equal(t, "p1", h.get(task.ID).Status.PropletID)
	require.True(t, h.event(task.ID, 1, orchestration.EventRunning))

	// p1 pauses past its heartbeat deadline; p2 joins meanwhile.
	h.clock.Advance(testCfg.HeartbeatTimeout + time.Second)
	h.join("p2", 1, nil)
	h.eng.Tick(h.ctx)
	h.clock.Advance(testCfg.BackoffBase)
	h.eng.Tick(h.ctx)
	got := h.get(task.ID)
	require.Equal(t, 2, got.Status.Attempt)
	require.Equal(t, "p2", got.Status.PropletID)
	require.Empty(t, h.disp.stops(), "a lost proplet cannot be told anything")

	// p1 resumes, still running attempt 1; p2 runs attempt 2.
	first := orchestration.AttemptRef{TaskID: task.ID, Attempt: 1}
	h.beat("p1", first)
	require.Equal(t, []command{{stop: true, proplet: "p1", task: task.ID, attempt: 1}}, h.disp.stops())
	require.Equal(t, []string{orchestration.ReasonSuperseded}, h.disp.reasons)
	h.beat("p2", orchestration.AttemptRef{TaskID: task.ID, Attempt: 2})
	require.Len(t, h.disp.stops(), 1, "the current attempt runs on")
	h.beat("p1", first)
	require.Len(t, h.disp.stops(), 2, "stopped again while still listed")
	h.beat("p1")
	require.Len(t, h.disp.stops(), 2)

	// Whatever the superseded attempt reports never counts.
	ok, err := h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: task.ID, Attempt: 1, PropletID: "p1",
		Type: orchestration.EventSucceeded, Stdout: "stale"})
	require.NoError(t, err)
	require.False(t, ok)
	require.False(t, h.fail(task.ID, 1, "Stopped"))
	got = h.get(task.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, 2, got.Status.Attempt)

	ok, err = h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: task.ID, Attempt: 2, PropletID: "p2",
		Type: orchestration.EventSucceeded, Stdout: "fresh"})
	require.NoError(t, err)
	require.True(t, ok)
	got = h.get(task.ID)
	require.Equal(t, orchestration.PhaseSucceeded, got.Status.Phase)
	require.Equal(t, "fresh", got.Status.Stdout)

	// Even after it succeeded elsewhere, a late success of attempt 1
	// changes nothing.
	ok, err = h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: task.ID, Attempt: 1, PropletID: "p1",
		Type: orchestration.EventSucceeded, Stdout: "stale"})
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, "fresh", h.get(task.ID).Status.Stdout)
}

// An attempt that timed out and was retried on the same proplet is stopped
// if the proplet still lists it beside the retry.
func TestTimedOutAttemptListedBesideItsRetryIsStopped(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 2, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 2, Timeout: time.Second})
	h.clock.Advance(time.Second + testCfg.DeadlineGrace + time.Millisecond)
	h.beat("p1", orchestration.AttemptRef{TaskID: task.ID, Attempt: 1})
	h.eng.Tick(h.ctx) // deadline: stopped, retried after the backoff
	h.clock.Advance(testCfg.BackoffBase)
	h.eng.Tick(h.ctx)
	require.Equal(t, 2, h.get(task.ID).Status.Attempt)
	stops := len(h.disp.stops())
	h.beat("p1", orchestration.AttemptRef{TaskID: task.ID, Attempt: 1}, orchestration.AttemptRef{TaskID: task.ID, Attempt: 2})
	require.Len(t, h.disp.stops(), stops+1)
	require.Equal(t, command{stop: true, proplet: "p1", task: task.ID, attempt: 1}, h.disp.stops()[stops])
}

// Every start carries a window of one heartbeat timeout from when it was
// sent, re-sent starts a fresh one.
func TestStartsCarryAWindow(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	h.submit(orchestration.TaskSpec{})
	now := h.clock.Now()
	require.Equal(t, []orchestration.StartWindow{{Sent: now, NotAfter: now.Add(testCfg.HeartbeatTimeout)}}, h.disp.windows)
}

// A proplet that got the current attempt's start too late ran nothing: the
// same attempt is placed again, using no attempt.
func TestExpiredStartUsesNoAttempt(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 1})
	require.True(t, h.fail(task.ID, 1, orchestration.ReasonExpired))
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase)
	require.Contains(t, got.Status.Message, "too late")
	h.clock.Advance(testCfg.BackoffBase)
	h.eng.Tick(h.ctx)
	got = h.get(task.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, 1, got.Status.Attempt)
}
