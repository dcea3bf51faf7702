package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

// drainStarted counts, per task, the attempts fx started so far.
func drainStarted(fx *fakeExec) map[string]int {
	n := map[string]int{}
	for {
		select {
		case ref := <-fx.started:
			n[ref.TaskID]++
		default:
			return n
		}
	}
}

// TestFastAttemptCostsOneCommit: an attempt that ends before its lazy
// acceptance fires is made durable by its terminal record alone, one
// fsync; one still running when it fires costs two. Either way the start
// command is acknowledged, and the PUBACK of the event removes it.
func TestFastAttemptCostsOneCommit(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	cfg := testConfig(t, b.URL(), id)
	var clock *agent.AcceptClock
	a := startOnlineWith(t, m, cfg, fx, func(a *agent.Agent) { clock = agent.ManualAcceptance(a) })
	ob := agent.OutboxOf(a.Agent)

	settled := func() {
		t.Helper()
		require.Eventually(t, func() bool { return a.Pending() == 0 && b.inflight(id) == 0 }, waitFor, time.Millisecond,
			"outbox drained and start acknowledged")
	}
	for range 3 {
		before := ob.Syncs()
		task := randID("t-")
		m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "ok"})
		m.waitEvent(t, task, wire.EventSucceeded)
		settled()
		require.Equal(t, uint64(1), ob.Syncs()-before, "a fast attempt costs one fsync")
		require.False(t, clock.Fire(wire.TaskRef{TaskID: task, Attempt: 1}), "its acceptance timer was stopped")
	}

	drainStarted(fx)
	before := ob.Syncs()
	slow := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: slow, Attempt: 1, Function: "block"})
	<-fx.started
	require.True(t, clock.Fire(wire.TaskRef{TaskID: slow, Attempt: 1}))
	require.Eventually(t, func() bool { return b.inflight(id) == 0 }, waitFor, time.Millisecond,
		"a running attempt's start is acknowledged once its acceptance is durable")
	require.Equal(t, uint64(1), ob.Syncs()-before)
	fx.release(slow)
	m.waitEvent(t, slow, wire.EventSucceeded)
	settled()
	// Its start was acknowledged at acceptance, and the final event is
	// published before its commit: wait for the finish to be recorded.
	require.Eventually(t, func() bool { return agent.Recorded(a.Agent, wire.TaskRef{TaskID: slow, Attempt: 1}) }, waitFor, time.Millisecond)
	require.Equal(t, uint64(2), ob.Syncs()-before, "acceptance and terminal record")
}

// TestPublishDoesNotWaitForCommit holds the outbox's fsync: the terminal
// event still reaches the manager and is acknowledged, but the start
// command is acknowledged only after the commit. The attempt's finish is
// durable, so a restarted proplet neither re-sends the event nor re-runs
// the attempt.
func TestPublishDoesNotWaitForCommit(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	cfg := testConfig(t, b.URL(), id)
	gate := make(chan struct{})
	a := startOnlineWith(t, m, cfg, fx, func(a *agent.Agent) {
		agent.OutboxOf(a).SetBeforeSync(func() { <-gate })
	})

	task := randID("t-")
	st := wire.StartTask{TaskID: task, Attempt: 1, Function: "ok"}
	m.start(t, id, st)
	m.waitEvent(t, task, wire.EventSucceeded)
	require.Eventually(t, func() bool { return a.Pending() == 0 }, waitFor, time.Millisecond,
		"PUBACK removes the event while its record is still being committed")
	require.Equal(t, 1, b.inflight(id), "the start waits for the commit")
	close(gate)
	require.Eventually(t, func() bool { return b.inflight(id) == 0 }, waitFor, time.Millisecond)

	a.Stop(t)
	startOnline(t, m, cfg, fx)
	m.start(t, id, st)
	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Equal(t, 1, m.countEvents(task, wire.EventSucceeded))
	require.Equal(t, 1, drainStarted(fx)[task])
}

// TestCrashInLazyWindowRerunsOnlyUnacked: X runs past its lazy acceptance,
// Y does not; the proplet dies with both hung. The next process reports X
// failed without running it again, and runs Y again, because Y's start was
// never acknowledged and the broker hands it over once more. The manager
// gets one result for each.
func TestCrashInLazyWindowRerunsOnlyUnacked(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	cfg := testConfig(t, b.URL(), id)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	var clock *agent.AcceptClock
	a := startOnlineWith(t, m, cfg, fx, func(a *agent.Agent) { clock = agent.ManualAcceptance(a) })

	x, y := randID("x-"), randID("y-")
	defer fx.release(x)
	m.start(t, id, wire.StartTask{TaskID: x, Attempt: 1, Function: "ignore-ctx"})
	require.Equal(t, x, (<-fx.started).TaskID)
	require.True(t, clock.Fire(wire.TaskRef{TaskID: x, Attempt: 1}))
	require.Eventually(t, func() bool { return b.inflight(id) == 0 }, waitFor, time.Millisecond)
	m.start(t, id, wire.StartTask{TaskID: y, Attempt: 1, Function: "ignore-ctx"})
	require.Equal(t, y, (<-fx.started).TaskID)
	require.Equal(t, 1, b.inflight(id), "y is inside its lazy window")
	a.Stop(t) // both attempts hang, so this leaves the disk as a crash would

	a2 := startOnlineWith(t, m, cfg, fx, func(a *agent.Agent) { agent.ManualAcceptance(a) })
	ev := m.waitEvent(t, x, wire.EventFailed)
	require.Equal(t, wire.ReasonStopped, ev.Reason)
	require.Equal(t, a2.Instance(), ev.Instance)
	require.Equal(t, y, (<-fx.started).TaskID, "the unacknowledged start is redelivered and runs again")
	fx.release(y) // ends both runs of y; the dead process's cannot report
	m.waitEvent(t, y, wire.EventSucceeded)

	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Equal(t, map[string]int{barrier: 1}, drainStarted(fx), "x ran once, y twice")
	require.Equal(t, 1, m.countEvents(x, wire.EventFailed))
	require.Zero(t, m.countEvents(x, wire.EventSucceeded))
	require.Equal(t, 1, m.countEvents(y, wire.EventSucceeded))
	require.Zero(t, m.countEvents(y, wire.EventFailed))
	require.Eventually(t, func() bool { return a2.Pending() == 0 && b.inflight(id) == 0 }, waitFor, time.Millisecond)
}

// TestTerminalEventAfterBrokerOutage: the link goes dead without either
// side noticing while an attempt ends, so its terminal event, published
// at once, and the start's PUBACK vanish. Once the connection is cut and
// comes back, the outbox sends the event again and the broker's
// redelivered start is recognised as done: one result, one run.
func TestTerminalEventAfterBrokerOutage(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		m := newManager(t, b.URL())
		id := randID("p-")
		px := startProxy(t, b.URL()[len("mqtt://"):])
		fx := newFakeExec()
		cfg := testConfig(t, px.URL(), id)
		cfg.HeartbeatInterval = time.Hour
		a := startOnline(t, m, cfg, fx)

		task := randID("t-")
		px.Blackhole(true)
		m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "ok"})
		require.Equal(t, task, (<-fx.started).TaskID)
		// The start's PUBACK is 4 bytes, the event far more; with the
		// link dead, nothing can remove the event from the outbox.
		require.Eventually(t, func() bool { return px.Dropped() > 64 && a.Pending() == 1 }, waitFor, time.Millisecond)
		px.Blackhole(false)
		px.Cut(false)

		m.waitEvent(t, task, wire.EventSucceeded)
		require.Eventually(t, func() bool { return a.Pending() == 0 }, waitFor, time.Millisecond)
		barrier := randID("t-")
		m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
		m.waitEvent(t, barrier, wire.EventSucceeded)
		require.Equal(t, 1, m.countEvents(task, wire.EventSucceeded))
		require.Zero(t, m.countEvents(task, wire.EventFailed))
		require.Equal(t, map[string]int{barrier: 1}, drainStarted(fx), "the redelivered start did not run again")
	})
}
