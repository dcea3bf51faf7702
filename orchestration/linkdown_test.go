package orchestration_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

// fakeLink is the manager's broker link as the test sets it.
type fakeLink struct {
	mu       sync.Mutex
	up       bool
	connects uint64
}

func (l *fakeLink) LinkState() (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up, l.connects
}

func (l *fakeLink) set(up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if up && !l.up {
		l.connects++
	}
	l.up = up
}

func linkHarness(t *testing.T) (*harness, *fakeLink) {
	t.Helper()
	link := &fakeLink{up: true, connects: 1}
	h := newHarness(t, testCfg)
	h.link = link
	h.restart()
	return h, link
}

func (h *harness) alive(id string) bool {
	h.t.Helper()
	p, err := h.eng.Proplet(h.ctx, id)
	require.NoError(h.t, err)
	return p.Alive
}

// While the manager's own link is down no heartbeat can arrive, so no
// proplet is lost and no attempt's deadline passes; once it is back, every
// proplet gets a fresh heartbeat deadline, and only a proplet that stays
// silent past it is lost.
func TestLinkDownSuspendsLiveness(t *testing.T) {
	h, link := linkHarness(t)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 1, Timeout: 10 * time.Second})
	require.True(t, h.event(task.ID, 1, orchestration.EventRunning))
	h.eng.Tick(h.ctx)

	link.set(false)
	h.eng.Tick(h.ctx)
	h.clock.Advance(time.Minute) // past the heartbeat timeout and the attempt's deadline
	h.eng.Tick(h.ctx)
	require.Equal(t, orchestration.PhaseRunning, h.get(task.ID).Status.Phase)
	require.True(t, h.alive("p1"), "silence while the manager is cut off says nothing about the proplet")
	require.Empty(t, h.disp.stops())

	link.set(true)
	h.eng.Tick(h.ctx)
	h.clock.Advance(testCfg.HeartbeatTimeout - time.Second)
	h.eng.Tick(h.ctx)
	require.Equal(t, orchestration.PhaseRunning, h.get(task.ID).Status.Phase, "within the grace after the reconnection")
	require.True(t, h.alive("p1"))

	// The proplet's result arrives, queued by the broker meanwhile.
	require.True(t, h.event(task.ID, 1, orchestration.EventSucceeded))
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhaseSucceeded, got.Status.Phase)
	require.Equal(t, 1, got.Status.Attempt)
}

// The grace is bounded: a proplet that stays silent past its fresh
// deadline is lost as usual.
func TestLinkBackGraceIsBounded(t *testing.T) {
	h, link := linkHarness(t)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 1})
	link.set(false)
	h.eng.Tick(h.ctx)
	h.clock.Advance(time.Minute)
	h.eng.Tick(h.ctx)
	link.set(true)
	h.eng.Tick(h.ctx)
	h.clock.Advance(testCfg.HeartbeatTimeout + time.Second)
	h.eng.Tick(h.ctx)
	require.False(t, h.alive("p1"))
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
	require.Equal(t, orchestration.ReasonPropletLost, got.Status.Reason)
}

// A reconnection between two ticks (the link was never seen down) still
// gives every proplet a fresh deadline: heartbeats were lost meanwhile.
func TestLinkFlapBetweenTicksRefreshesDeadlines(t *testing.T) {
	h, link := linkHarness(t)
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 1})
	h.eng.Tick(h.ctx)
	h.clock.Advance(testCfg.HeartbeatTimeout - time.Second)
	link.set(false)
	link.set(true)
	h.eng.Tick(h.ctx)
	h.clock.Advance(2 * time.Second) // past the deadline of the last heartbeat
	h.eng.Tick(h.ctx)
	require.True(t, h.alive("p1"))
	require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)
}

// Nothing is placed while the link is down: its start would wait in the
// link and reach the proplet late. The task waits in the queue instead.
func TestNoPlacementWhileLinkDown(t *testing.T) {
	h, link := linkHarness(t)
	h.join("p1", 1, nil)
	link.set(false)
	task := h.submit(orchestration.TaskSpec{})
	h.eng.Tick(h.ctx)
	require.Empty(t, h.disp.starts())
	require.Equal(t, orchestration.PhasePending, h.get(task.ID).Status.Phase)
	link.set(true)
	h.eng.Tick(h.ctx)
	require.Len(t, h.disp.starts(), 1)
	require.Equal(t, orchestration.PhaseScheduled, h.get(task.ID).Status.Phase)
}
