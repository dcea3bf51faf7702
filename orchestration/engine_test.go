package orchestration_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type command struct {
	stop    bool
	proplet string
	task    string
	attempt int
}

// fakeDispatcher records commands; fail makes StartTask return an error.
type fakeDispatcher struct {
	mu   sync.Mutex
	cmds []command
	// windows and reasons are the starts' windows and the stops' reasons,
	// in order.
	windows []orchestration.StartWindow
	reasons []string
	fail    error
}

func (d *fakeDispatcher) StartTask(_ context.Context, propletID string, t orchestration.Task, w orchestration.StartWindow) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.cmds = append(d.cmds, command{proplet: propletID, task: t.ID, attempt: t.Status.Attempt})
	d.windows = append(d.windows, w)
	return nil
}

func (d *fakeDispatcher) StopTask(_ context.Context, propletID, taskID string, attempt int, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cmds = append(d.cmds, command{stop: true, proplet: propletID, task: taskID, attempt: attempt})
	d.reasons = append(d.reasons, reason)
	return nil
}

func (d *fakeDispatcher) starts() []command {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []command
	for _, c := range d.cmds {
		if !c.stop {
			out = append(out, c)
		}
	}
	return out
}

func (d *fakeDispatcher) stops() []command {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []command
	for _, c := range d.cmds {
		if c.stop {
			out = append(out, c)
		}
	}
	return out
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	clock *fakeClock
	disp  *fakeDispatcher
	store orchestration.Store
	eng   *orchestration.Engine
	cfg   orchestration.Config
	// random is the engine's jitter source; 0 (the default) keeps every
	// retry delay at its full backoff.
	random float64
	// link, when set, is the engine's view of the broker link.
	link orchestration.BrokerLink
}

var quiet = slog.New(slog.DiscardHandler)

var testCfg = orchestration.Config{
	HeartbeatTimeout: 10 * time.Second,
	DefaultTimeout:   time.Minute,
	DeadlineGrace:    5 * time.Second,
	BackoffBase:      time.Second,
	BackoffMax:       4 * time.Second,
}

func newHarness(t *testing.T, cfg orchestration.Config) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		ctx:   context.Background(),
		clock: &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		disp:  &fakeDispatcher{},
		store: memory.New(),
		cfg:   cfg,
	}
	h.restart()
	return h
}

// restart builds a fresh engine over the same store, as a manager restart.
func (h *harness) restart() {
	h.t.Helper()
	eng, err := orchestration.New(h.cfg, orchestration.Deps{Store: h.store, Dispatcher: h.disp, Clock: h.clock, Logger: quiet,
		Random: func() float64 { return h.random }, Link: h.link})
	require.NoError(h.t, err)
	require.NoError(h.t, eng.Recover(h.ctx))
	h.eng = eng
}

func (h *harness) join(id string, slots int, labels map[string]string) {
	h.t.Helper()
	require.NoError(h.t, h.eng.PropletUp(h.ctx, orchestration.Proplet{ID: id, Slots: slots, Labels: labels, Instance: "i-" + id}))
}

func (h *harness) submit(spec orchestration.TaskSpec) orchestration.Task {
	h.t.Helper()
	if spec.Image == "" {
		spec.Image = "oci://registry.local/app:v1"
	}
	task, err := h.eng.Submit(h.ctx, spec)
	require.NoError(h.t, err)
	return task
}

func (h *harness) get(id string) orchestration.Task {
	h.t.Helper()
	task, err := h.eng.Get(h.ctx, id)
	require.NoError(h.t, err)
	return task
}

func (h *harness) event(id string, attempt int, typ orchestration.EventType) bool {
	h.t.Helper()
	ok, err := h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: id, Attempt: attempt, Type: typ})
	require.NoError(h.t, err)
	return ok
}

func (h *harness) fail(id string, attempt int, reason string) bool {
	h.t.Helper()
	ok, err := h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: id, Attempt: attempt, Type: orchestration.EventFailed, Reason: reason, Error: "boom"})
	require.NoError(h.t, err)
	return ok
}

func TestSubmitSchedulesOnAliveProplet(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 2, nil)
	task := h.submit(orchestration.TaskSpec{Name: "hello"})

	got := h.get(task.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, "p1", got.Status.PropletID)
	require.Equal(t, 1, got.Status.Attempt)
	require.Equal(t, []command{{proplet: "p1", task: task.ID, attempt: 1}}, h.disp.starts())
	require.Equal(t, h.clock.Now().Add(time.Minute+5*time.Second), got.Status.Deadline)

	require.True(t, h.event(task.ID, 1, orchestration.EventRunning))
	require.Equal(t, orchestration.PhaseRunning, h.get(task.ID).Status.Phase)

	code := 0
	ok, err := h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{
		TaskID: task.ID, Attempt: 1, Type: orchestration.EventSucceeded,
		Results: []float64{42}, Stdout: "hi\n", ExitCode: &code,
	})
	require.NoError(t, err)
	require.True(t, ok)
	got = h.get(task.ID)
	require.Equal(t, orchestration.PhaseSucceeded, got.Status.Phase)
	require.Equal(t, []float64{42}, got.Status.Results)
	require.Equal(t, "hi\n", got.Status.Stdout)
	require.Equal(t, orchestration.ReasonSucceeded, got.Status.Reason)
	require.False(t, got.Status.FinishedAt.IsZero())

	p, err := h.eng.Proplet(h.ctx, "p1")
	require.NoError(t, err)
	require.Empty(t, p.Running, "the slot is released")
}

func TestQueueWaitsForCapacity(t *testing.T) {
	h := newHarness(t, testCfg)
	a := h.submit(orchestration.TaskSpec{})
	b := h.submit(orchestration.TaskSpec{})
	require.Equal(t, orchestration.PhasePending, h.get(a.ID).Status.Phase)

	h.eng.Tick(h.ctx)
	got := h.get(a.ID)
	require.Equal(t, orchestration.ReasonUnschedulable, got.Status.Reason)
	require.Equal(t, "no live proplet", got.Status.Message)

	h.join("p1", 1, nil)
	require.Equal(t, orchestration.PhaseScheduled, h.get(a.ID).Status.Phase, "FIFO: first submitted runs first")
	require.Empty(t, h.get(a.ID).Status.Reason)
	require.Equal(t, orchestration.PhasePending, h.get(b.ID).Status.Phase, "one slot only")

	h.event(a.ID, 1, orchestration.EventSucceeded)
	require.Equal(t, orchestration.PhaseScheduled, h.get(b.ID).Status.Phase, "freed slot goes to the next task")
}

func TestSuspendAndStart(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{Suspend: true})
	require.Equal(t, orchestration.PhasePending, h.get(task.ID).Status.Phase)
	require.Equal(t, orchestration.ReasonSuspended, h.get(task.ID).Status.Reason)
	require.Empty(t, h.disp.starts())

	got, err := h.eng.Start(h.ctx, task.ID)
	require.NoError(t, err)
	require.False(t, got.Spec.Suspend)
	require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)

	_, err = h.eng.Start(h.ctx, task.ID)
	require.ErrorIs(t, err, orchestration.ErrNoChange, "starting twice is a no-op")
}

func TestEventIdempotency(t *testing.T) {
	type step struct {
		attempt int
		typ     orchestration.EventType
		applied bool
	}
	tests := []struct {
		name  string
		steps []step
		phase orchestration.Phase
	}{
		{"in order", []step{{1, "accepted", false}, {1, "running", true}, {1, "succeeded", true}}, orchestration.PhaseSucceeded},
		{"duplicate running", []step{{1, "running", true}, {1, "running", false}}, orchestration.PhaseRunning},
		{"duplicate success", []step{{1, "succeeded", true}, {1, "succeeded", false}}, orchestration.PhaseSucceeded},
		{"success before running", []step{{1, "succeeded", true}, {1, "running", false}}, orchestration.PhaseSucceeded},
		{"failure after success", []step{{1, "succeeded", true}, {1, "failed", false}}, orchestration.PhaseSucceeded},
		{"stale attempt", []step{{0, "running", false}, {2, "succeeded", false}}, orchestration.PhaseScheduled},
		{"unknown type", []step{{1, "exploded", false}}, orchestration.PhaseScheduled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("p1", 1, nil)
			task := h.submit(orchestration.TaskSpec{MaxAttempts: 1})
			for i, s := range tc.steps {
				require.Equal(t, s.applied, h.event(task.ID, s.attempt, s.typ), "step %d", i)
			}
			require.Equal(t, tc.phase, h.get(task.ID).Status.Phase)
		})
	}
}

func TestEventFromOtherPropletIgnored(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{})
	ok, err := h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: task.ID, Attempt: 1, PropletID: "p2", Type: orchestration.EventSucceeded})
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = h.eng.RecordEvent(h.ctx, orchestration.TaskEvent{TaskID: "nope", Attempt: 1, Type: orchestration.EventSucceeded})
	require.NoError(t, err)
	require.False(t, ok, "events for unknown tasks are dropped")
}

// A proplet that refuses a start for want of a slot ran nothing: the task
// waits the base backoff and the same attempt is placed again, so even a
// task with one attempt survives refusals and then runs.
func TestNoCapacityUsesNoAttempt(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 1})

	for range 3 {
		require.True(t, h.fail(task.ID, 1, orchestration.ReasonNoCapacity))
		got := h.get(task.ID)
		require.Equal(t, orchestration.PhasePending, got.Status.Phase)
		require.Equal(t, orchestration.ReasonNoCapacity, got.Status.Reason)
		require.Contains(t, got.Status.Message, "p1 had no free slot")
		require.Empty(t, got.Status.LastFailure, "not a failure of the task")
		require.Equal(t, h.clock.Now().Add(time.Second), got.Status.NotBefore)
		h.clock.Advance(time.Second)
		h.eng.Tick(h.ctx)
		require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)
		require.Equal(t, 1, h.get(task.ID).Status.Attempt, "the same attempt, placed again")
	}
	require.Len(t, h.disp.starts(), 4)
	require.True(t, h.event(task.ID, 1, orchestration.EventSucceeded))
	require.Equal(t, orchestration.PhaseSucceeded, h.get(task.ID).Status.Phase)
}

// A task is placed only where a proplet offers the memory it asks for
// (memory_bytes, or its memory_pages cap); where none does, it says so.
func TestMemoryAwarePlacement(t *testing.T) {
	h := newHarness(t, testCfg)
	join := func(id string, memory int64) {
		require.NoError(t, h.eng.PropletUp(h.ctx, orchestration.Proplet{ID: id, Slots: 8, MemoryBytes: memory}))
	}
	join("small", 64<<20)
	join("big", 512<<20)

	for _, spec := range []orchestration.TaskSpec{
		{MemoryBytes: 256 << 20},
		{MemoryPages: 4096}, // 256 MiB
		{MemoryBytes: 1 << 20, MemoryPages: 4096},
	} {
		got := h.get(h.submit(spec).ID)
		require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
		require.Equal(t, "big", got.Status.PropletID, "%+v", spec)
	}
	require.Equal(t, "small", h.get(h.submit(orchestration.TaskSpec{MemoryBytes: 64 << 20}).ID).Status.PropletID,
		"round robin continues among those that fit")

	huge := h.submit(orchestration.TaskSpec{MemoryBytes: 1 << 30})
	h.eng.Tick(h.ctx)
	got := h.get(huge.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase)
	require.Equal(t, orchestration.ReasonUnschedulable, got.Status.Reason)
	require.Equal(t, "no live proplet offers a task 1024 MiB (the most offered: 512 MiB)", got.Status.Message)

	pinned := h.submit(orchestration.TaskSpec{PropletID: "small", MemoryBytes: 128 << 20})
	h.eng.Tick(h.ctx)
	require.Equal(t, "proplet small offers a task 64 MiB, this one needs 128 MiB", h.get(pinned.ID).Status.Message)

	// A proplet that does not say what it offers is assumed to fit.
	join("silent", 0)
	h.eng.Tick(h.ctx)
	got = h.get(huge.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, "silent", got.Status.PropletID)

	_, err := h.eng.Submit(h.ctx, orchestration.TaskSpec{Image: "oci://x/y", MemoryBytes: -1})
	require.ErrorIs(t, err, orchestration.ErrInvalid)
}

// An attempt its proplet does not list in two heartbeats in a row, once
// ReconcileGrace passed, is asked for again (same attempt), at most three
// times; one the proplet lists is left alone.
func TestHeartbeatReconcile(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 2, nil)
	lost := h.submit(orchestration.TaskSpec{})
	runs := h.submit(orchestration.TaskSpec{})
	beat := func() {
		t.Helper()
		require.NoError(t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p1", Instance: "i-p1",
			Running: []orchestration.AttemptRef{{TaskID: runs.ID, Attempt: 1}}}))
	}
	startsOf := func(id string) int {
		n := 0
		for _, c := range h.disp.starts() {
			if c.task == id {
				require.Equal(t, 1, c.attempt)
				n++
			}
		}
		return n
	}
	beat()
	beat()
	require.Equal(t, 1, startsOf(lost.ID), "within the grace: the start may still be on its way")

	h.clock.Advance(10 * time.Second)
	beat()
	require.Equal(t, 1, startsOf(lost.ID), "one heartbeat may predate the start")
	beat()
	require.Equal(t, 2, startsOf(lost.ID), "asked for again")
	for range 10 {
		beat()
	}
	require.Equal(t, 4, startsOf(lost.ID), "at most three times")
	require.Equal(t, 1, startsOf(runs.ID), "a listed attempt is not asked for")
	require.Equal(t, orchestration.PhaseScheduled, h.get(lost.ID).Status.Phase)
	require.Equal(t, 1, h.get(lost.ID).Status.Attempt)
}

func TestRetryWithBackoff(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 3})

	require.True(t, h.fail(task.ID, 1, "Trap"))
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase)
	require.Equal(t, "Trap", got.Status.Reason)
	require.Contains(t, got.Status.Message, "attempt 1 on p1 failed: Trap: boom")
	require.Equal(t, got.Status.Message, got.Status.LastFailure)
	require.Equal(t, h.clock.Now().Add(time.Second), got.Status.NotBefore)

	h.eng.Tick(h.ctx)
	require.Len(t, h.disp.starts(), 1, "backoff not elapsed")
	h.clock.Advance(time.Second)
	h.eng.Tick(h.ctx)
	require.Len(t, h.disp.starts(), 2)
	require.Equal(t, 2, h.get(task.ID).Status.Attempt)

	require.False(t, h.fail(task.ID, 1, "Trap"), "stale failure of attempt 1")
	require.True(t, h.fail(task.ID, 2, "Trap"))
	require.Equal(t, h.clock.Now().Add(2*time.Second), h.get(task.ID).Status.NotBefore, "backoff doubles")
	h.clock.Advance(2 * time.Second)
	h.eng.Tick(h.ctx)
	require.True(t, h.fail(task.ID, 3, "NonZeroExit"))

	got = h.get(task.ID)
	require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
	require.Equal(t, "NonZeroExit", got.Status.Reason)
	require.Equal(t, "boom", got.Status.Message)
	require.Equal(t, 3, got.Status.Attempt)
	h.clock.Advance(time.Hour)
	h.eng.Tick(h.ctx)
	require.Len(t, h.disp.starts(), 3, "no attempt after the last")
}

func TestDeadline(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{Timeout: 10 * time.Second, MaxAttempts: 1})
	h.event(task.ID, 1, orchestration.EventRunning)

	h.clock.Advance(15 * time.Second) // timeout + grace, not past it
	require.NoError(t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p1"}))
	h.eng.Tick(h.ctx)
	require.Equal(t, orchestration.PhaseRunning, h.get(task.ID).Status.Phase)

	h.clock.Advance(time.Millisecond)
	h.eng.Tick(h.ctx)
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
	require.Equal(t, orchestration.ReasonDeadlineExceeded, got.Status.Reason)
	require.Equal(t, []command{{stop: true, proplet: "p1", task: task.ID, attempt: 1}}, h.disp.stops())
	require.False(t, h.event(task.ID, 1, orchestration.EventSucceeded), "late result is ignored")
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name     string
		prepare  func(h *harness, id string)
		wantStop bool
	}{
		{"pending", func(*harness, string) {}, false},
		{"scheduled", func(h *harness, _ string) { h.join("p1", 1, nil) }, true},
		{"running", func(h *harness, id string) {
			h.join("p1", 1, nil)
			h.event(id, 1, orchestration.EventRunning)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			task := h.submit(orchestration.TaskSpec{})
			tc.prepare(h, task.ID)

			got, err := h.eng.Stop(h.ctx, task.ID, "user asked")
			require.NoError(t, err)
			require.Equal(t, orchestration.PhaseCancelled, got.Status.Phase)
			require.Equal(t, orchestration.ReasonCancelled, got.Status.Reason)
			require.Equal(t, "user asked", got.Status.Message)
			require.Equal(t, tc.wantStop, len(h.disp.stops()) == 1)

			require.False(t, h.event(task.ID, 1, orchestration.EventSucceeded))
			require.Equal(t, orchestration.PhaseCancelled, h.get(task.ID).Status.Phase)
			_, err = h.eng.Stop(h.ctx, task.ID, "")
			require.ErrorIs(t, err, orchestration.ErrTerminal)

			h.join("p9", 1, nil)
			require.NotEqual(t, "p9", h.get(task.ID).Status.PropletID, "a cancelled task never runs")
		})
	}
}

func TestCancelFreesSlot(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	a := h.submit(orchestration.TaskSpec{})
	b := h.submit(orchestration.TaskSpec{})
	_, err := h.eng.Stop(h.ctx, a.ID, "")
	require.NoError(t, err)
	require.Equal(t, orchestration.PhaseScheduled, h.get(b.ID).Status.Phase)
}

func TestLostProplet(t *testing.T) {
	tests := []struct {
		name string
		// where the retry may go: p1 is eligible again if it came back.
		retryOn []string
		lose    func(h *harness)
	}{
		{"heartbeat deadline", []string{"p2"}, func(h *harness) {
			h.clock.Advance(9 * time.Second)
			require.NoError(h.t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p2"}))
			h.clock.Advance(2 * time.Second)
			h.eng.Tick(h.ctx)
		}},
		{"last will", []string{"p2"}, func(h *harness) { require.NoError(h.t, h.eng.PropletDown(h.ctx, "p1")) }},
		{"restarted process", []string{"p1", "p2"}, func(h *harness) {
			require.NoError(h.t, h.eng.PropletUp(h.ctx, orchestration.Proplet{ID: "p1", Slots: 1, Instance: "new"}))
		}},
		{"removed", []string{"p2"}, func(h *harness) { require.NoError(h.t, h.eng.RemoveProplet(h.ctx, "p1")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("p1", 1, map[string]string{"zone": "a"})
			retried := h.submit(orchestration.TaskSpec{MaxAttempts: 2})
			h.event(retried.ID, 1, orchestration.EventRunning)
			h.join("p1", 2, map[string]string{"zone": "a"})
			last := h.submit(orchestration.TaskSpec{MaxAttempts: 1, Selector: map[string]string{"zone": "a"}})
			require.Equal(t, "p1", h.get(last.ID).Status.PropletID)
			h.join("p2", 1, nil)

			tc.lose(h)

			got := h.get(last.ID)
			require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
			require.Equal(t, orchestration.ReasonPropletLost, got.Status.Reason)

			got = h.get(retried.ID)
			require.Equal(t, orchestration.PhasePending, got.Status.Phase)
			require.Equal(t, orchestration.ReasonPropletLost, got.Status.Reason)
			h.clock.Advance(time.Second)
			require.NoError(t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p2"}))
			h.eng.Tick(h.ctx)
			got = h.get(retried.ID)
			require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
			require.Contains(t, tc.retryOn, got.Status.PropletID)
			require.Equal(t, 2, got.Status.Attempt)
		})
	}
}

func TestPlacementConstraints(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("edge-1", 4, map[string]string{"arch": "arm64", "zone": "a"})
	h.join("edge-2", 4, map[string]string{"arch": "amd64", "zone": "a"})

	sel := h.submit(orchestration.TaskSpec{Selector: map[string]string{"arch": "amd64"}})
	require.Equal(t, "edge-2", h.get(sel.ID).Status.PropletID)

	pinned := h.submit(orchestration.TaskSpec{PropletID: "edge-1"})
	require.Equal(t, "edge-1", h.get(pinned.ID).Status.PropletID)

	none := h.submit(orchestration.TaskSpec{Selector: map[string]string{"gpu": "yes"}})
	dead := h.submit(orchestration.TaskSpec{PropletID: "edge-9"})
	require.NoError(t, h.eng.PropletDown(h.ctx, "edge-1"))
	down := h.submit(orchestration.TaskSpec{PropletID: "edge-1"})
	h.eng.Tick(h.ctx)
	for id, msg := range map[string]string{
		none.ID: "no live proplet matches selector map[gpu:yes]",
		dead.ID: "proplet edge-9 is not known",
		down.ID: "proplet edge-1 is not alive",
	} {
		got := h.get(id)
		require.Equal(t, orchestration.PhasePending, got.Status.Phase)
		require.Equal(t, orchestration.ReasonUnschedulable, got.Status.Reason)
		require.Equal(t, msg, got.Status.Message)
	}
	h.join("edge-1", 4, map[string]string{"arch": "arm64", "zone": "a"})
	require.Equal(t, orchestration.PhaseScheduled, h.get(down.ID).Status.Phase, "runs once its proplet is back")
}

func TestPolicies(t *testing.T) {
	t.Run("round-robin", func(t *testing.T) {
		h := newHarness(t, testCfg)
		for _, id := range []string{"a", "b", "c"} {
			h.join(id, 10, nil)
		}
		count := map[string]int{}
		for range 9 {
			task := h.submit(orchestration.TaskSpec{})
			count[h.get(task.ID).Status.PropletID]++
		}
		require.Equal(t, map[string]int{"a": 3, "b": 3, "c": 3}, count)
	})
	t.Run("least-loaded", func(t *testing.T) {
		cfg := testCfg
		cfg.Policy = orchestration.PolicyLeastLoaded
		h := newHarness(t, cfg)
		h.join("small", 2, nil)
		h.join("big", 6, nil)
		count := map[string]int{}
		for range 8 {
			task := h.submit(orchestration.TaskSpec{})
			count[h.get(task.ID).Status.PropletID]++
		}
		require.Equal(t, map[string]int{"small": 2, "big": 6}, count, "load share stays even")
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := orchestration.New(orchestration.Config{Policy: "random"}, orchestration.Deps{Store: memory.New(), Dispatcher: &fakeDispatcher{}})
		require.ErrorIs(t, err, orchestration.ErrInvalid)
	})
}

func TestDispatchFailureRetries(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	h.disp.fail = errors.New("broker down")
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 2})
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase)
	require.Equal(t, orchestration.ReasonDispatchFailed, got.Status.Reason)

	h.disp.fail = nil
	h.clock.Advance(time.Second)
	h.eng.Tick(h.ctx)
	require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)
	require.Equal(t, 2, h.get(task.ID).Status.Attempt)
}

func TestRecovery(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 3, nil)
	h.join("p2", 3, nil)
	running := h.submit(orchestration.TaskSpec{PropletID: "p1"})
	h.event(running.ID, 1, orchestration.EventRunning)
	scheduled := h.submit(orchestration.TaskSpec{PropletID: "p1"})
	onP2 := h.submit(orchestration.TaskSpec{PropletID: "p2", MaxAttempts: 1})
	suspended := h.submit(orchestration.TaskSpec{Suspend: true})
	done := h.submit(orchestration.TaskSpec{PropletID: "p1"})
	h.event(done.ID, 1, orchestration.EventSucceeded)
	pinned := h.submit(orchestration.TaskSpec{PropletID: "p3"})
	startsBefore := len(h.disp.starts())

	h.restart()
	require.Len(t, h.disp.starts(), startsBefore, "nothing is sent before proplets report")

	// p1 comes back with the same process: its work continues. Both
	// in-flight starts are re-sent with the same attempt number: the
	// scheduled one may never have arrived, and the running one may have
	// ended with a result the broker lost; p1 answers either.
	h.join("p1", 3, nil)
	starts := h.disp.starts()
	require.ElementsMatch(t, []command{
		{proplet: "p1", task: running.ID, attempt: 1},
		{proplet: "p1", task: scheduled.ID, attempt: 1},
	}, starts[startsBefore:])
	require.True(t, h.event(running.ID, 1, orchestration.EventSucceeded))
	require.True(t, h.event(scheduled.ID, 1, orchestration.EventSucceeded))
	require.Equal(t, 1, h.get(running.ID).Status.Attempt)

	// p2 never returns: its task is lost once the deadline passes.
	h.clock.Advance(10*time.Second + time.Millisecond)
	require.NoError(t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p1"}))
	h.eng.Tick(h.ctx)
	require.Equal(t, orchestration.PhaseFailed, h.get(onP2.ID).Status.Phase)
	require.Equal(t, orchestration.ReasonPropletLost, h.get(onP2.ID).Status.Reason)

	require.Equal(t, orchestration.PhasePending, h.get(suspended.ID).Status.Phase)
	require.Equal(t, orchestration.PhaseSucceeded, h.get(done.ID).Status.Phase)
	h.join("p3", 1, nil)
	require.Equal(t, orchestration.PhaseScheduled, h.get(pinned.ID).Status.Phase, "queued task survives restart")

	ps, err := h.eng.Proplets(h.ctx)
	require.NoError(t, err)
	require.Len(t, ps, 3)
	require.False(t, ps[1].Alive, "p2 is listed, not alive")
}

func TestDelete(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{})
	require.NoError(t, h.eng.Delete(h.ctx, task.ID))
	require.Len(t, h.disp.stops(), 1)
	_, err := h.eng.Get(h.ctx, task.ID)
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	require.ErrorIs(t, h.eng.Delete(h.ctx, task.ID), orchestration.ErrNotFound)
	next := h.submit(orchestration.TaskSpec{})
	require.Equal(t, orchestration.PhaseScheduled, h.get(next.ID).Status.Phase, "slot was released")
}

func TestValidation(t *testing.T) {
	h := newHarness(t, testCfg)
	tests := []struct {
		name string
		spec orchestration.TaskSpec
		msg  string
	}{
		{"no image", orchestration.TaskSpec{}, "imageUrl is required"},
		{"bad scheme", orchestration.TaskSpec{Image: "ftp://x"}, "want oci://"},
		{"bad blob", orchestration.TaskSpec{Image: wire.BlobScheme + "sha256:zz"}, "want oci://"},
		{"bad digest", orchestration.TaskSpec{Image: "oci://x/y:z", Digest: "md5:1"}, "digest"},
		{"negative timeout", orchestration.TaskSpec{Image: "oci://x/y", Timeout: -1}, "timeout"},
		{"attempts", orchestration.TaskSpec{Image: "oci://x/y", MaxAttempts: 1000}, "maxAttempts"},
		{"both placements", orchestration.TaskSpec{Image: "oci://x/y", PropletID: "a", Selector: map[string]string{"a": "b"}}, "not both"},
		{"env key", orchestration.TaskSpec{Image: "oci://x/y", Env: map[string]string{"A=B": "c"}}, "env key"},
		{"pin and candidates", orchestration.TaskSpec{Image: "oci://x/y", PropletID: "a", PropletIDs: []string{"a"}}, "propletId or propletIds"},
		{"repeated candidate", orchestration.TaskSpec{Image: "oci://x/y", PropletIDs: []string{"a", "a"}}, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.eng.Submit(h.ctx, tc.spec)
			require.ErrorIs(t, err, orchestration.ErrInvalid)
			require.ErrorContains(t, err, tc.msg)
		})
	}
	page, err := h.eng.List(h.ctx, orchestration.TaskFilter{})
	require.NoError(t, err)
	require.Empty(t, page.Tasks, "nothing stored for bad input")
}

func TestIDsAreOrdered(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1700000000, 0)}
	gen := orchestration.NewTimeIDGen(clock)
	prev := gen()
	for i := range 10000 {
		if i%3000 == 0 {
			clock.Advance(time.Millisecond)
		}
		id := gen()
		require.Greater(t, id, prev, fmt.Sprint(i))
		prev = id
	}
}

func TestModuleAttachedAfterCreate(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	task, err := h.eng.Submit(h.ctx, orchestration.TaskSpec{Name: "later", Suspend: true})
	require.NoError(t, err)

	_, err = h.eng.Start(h.ctx, task.ID)
	require.ErrorIs(t, err, orchestration.ErrInvalid, "nothing to run yet")

	_, err = h.eng.EditSuspended(h.ctx, task.ID, func(s *orchestration.TaskSpec) error {
		s.Image = "ftp://nope"
		return nil
	})
	require.ErrorIs(t, err, orchestration.ErrInvalid)

	digest := "sha256:" + strings.Repeat("ab", 32)
	got, err := h.eng.EditSuspended(h.ctx, task.ID, func(s *orchestration.TaskSpec) error {
		s.Image = wire.BlobScheme + digest
		s.Suspend = false // ignored: editing never releases the task
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, wire.BlobScheme+digest, got.Spec.Image)
	require.True(t, got.Spec.Suspend)

	_, err = h.eng.Start(h.ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)
	_, err = h.eng.EditSuspended(h.ctx, task.ID, func(*orchestration.TaskSpec) error { return nil })
	require.ErrorIs(t, err, orchestration.ErrConflict)
}

// TestStoreLosesTask covers a task deleted from the store without the
// engine (a WasmTask deleted before it carried a finalizer): its attempt
// is stopped and its slot serves the next task.
func TestStoreLosesTask(t *testing.T) {
	tests := []struct {
		name string
		// lose tells the engine, after the store dropped the task.
		lose func(h *harness, id string)
	}{
		{"Forget", func(h *harness, id string) { require.NoError(h.t, h.eng.Forget(h.ctx, id)) }},
		{"a proplet event", func(h *harness, id string) { require.False(h.t, h.event(id, 1, orchestration.EventRunning)) }},
		{"the deadline", func(h *harness, id string) {
			h.clock.Advance(time.Hour)
			require.NoError(h.t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: "p1"}))
			h.eng.Tick(h.ctx)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("p1", 1, nil)
			lost := h.submit(orchestration.TaskSpec{})
			queued := h.submit(orchestration.TaskSpec{})
			require.Equal(t, orchestration.PhasePending, h.get(queued.ID).Status.Phase, "one slot: the second task waits")

			require.NoError(t, h.eng.Forget(h.ctx, lost.ID), "the store still has it: no-op")
			require.Empty(t, h.disp.stops())

			require.NoError(t, h.store.DeleteTask(h.ctx, lost.ID))
			tc.lose(h, lost.ID)
			if tc.name != "the deadline" {
				require.Equal(t, []command{{stop: true, proplet: "p1", task: lost.ID, attempt: 1}}, h.disp.stops())
			}
			got := h.get(queued.ID)
			require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase, "the freed slot took the queued task")
			require.Equal(t, "p1", got.Status.PropletID)
			require.NoError(t, h.eng.Forget(h.ctx, lost.ID), "twice is harmless")
		})
	}
}
