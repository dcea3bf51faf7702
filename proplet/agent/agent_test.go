package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

func forEachBroker(t *testing.T, fn func(t *testing.T, b broker)) {
	for _, k := range brokerKinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.start(t)) })
	}
}

func TestStatusRetainedForLateSubscriberAndHeartbeats(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		id := randID("p-")
		// A first observer proves the agent is up before the late one
		// subscribes, so the late one can only learn from the retained copy.
		early := newManager(t, b.URL())
		a := startAgent(t, testConfig(t, b.URL(), id), newFakeExec())
		early.waitStatus(t, func(s wire.Status) bool { return s.ID == id && s.State == wire.StateOnline })

		late := newManager(t, b.URL())
		st := late.waitStatus(t, func(s wire.Status) bool { return s.ID == id })
		require.Equal(t, wire.StateOnline, st.State)
		require.Equal(t, map[string]string{"zone": "edge-1", "arch": "arm64"}, st.Labels)
		require.Equal(t, wire.Capacity{Slots: 2, MemoryBytes: 64 << 20}, st.Capacity)
		require.Equal(t, agent.RuntimeName, st.Runtime)
		require.Equal(t, "v0.0.0-test", st.Version)
		require.Equal(t, a.Instance(), st.Instance)
		require.NotEmpty(t, st.Instance)

		hb := late.waitHeartbeat(t, func(h wire.Heartbeat) bool { return h.ID == id })
		require.Equal(t, 2, hb.FreeSlots)
		require.Equal(t, a.Instance(), hb.Instance)
		require.Empty(t, hb.Running)

		a.Stop(t)
		after := newManager(t, b.URL())
		off := after.waitStatus(t, func(s wire.Status) bool { return s.ID == id })
		require.Equal(t, wire.StateOffline, off.State, "a clean shutdown leaves an offline retained status")
	})
}

func TestLastWillWhenConnectionDies(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		id := randID("p-")
		m := newManager(t, b.URL())
		addr := b.URL()[len("mqtt://"):]
		px := startProxy(t, addr)
		a := startAgent(t, testConfig(t, px.URL(), id), newFakeExec())
		m.waitStatus(t, func(s wire.Status) bool { return s.ID == id && s.State == wire.StateOnline })

		px.Cut(true)
		will := m.waitStatus(t, func(s wire.Status) bool { return s.ID == id && s.State == wire.StateOffline })
		require.Equal(t, a.Instance(), will.Instance)
		require.Equal(t, agent.RuntimeName, will.Runtime)

		late := newManager(t, b.URL())
		st := late.waitStatus(t, func(s wire.Status) bool { return s.ID == id })
		require.Equal(t, wire.StateOffline, st.State, "the will is retained")

		// The agent reconnects on its own and announces itself again.
		px.Allow()
		require.Eventually(t, func() bool {
			m.mu.Lock()
			defer m.mu.Unlock()
			sawWill := false
			for _, s := range m.statuses {
				if s.ID != id {
					continue
				}
				if s.State == wire.StateOffline {
					sawWill = true
				} else if sawWill {
					return true
				}
			}
			return false
		}, waitFor, 5*time.Millisecond)
	})
}

func TestTaskOutcomes(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	a := startOnline(t, m, testConfig(t, b.URL(), id), fx)

	cases := []struct {
		name     string
		function string
		want     []string
		reason   string
	}{
		// Attempts that end within hintDelay send only their terminal event.
		{"success", "ok", []string{wire.EventSucceeded}, ""},
		{"trap", "trap", []string{wire.EventFailed}, wire.ReasonTrap},
		{"fails before running", "fail-early", []string{wire.EventFailed}, wire.ReasonArtifact},
		{"executor panic", "panic", []string{wire.EventFailed}, wire.ReasonInvalidTask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := randID("t-")
			m.start(t, id, wire.StartTask{TaskID: task, Attempt: 3, Name: "n", Function: tc.function, Inputs: []float64{1, 2}})
			final := m.waitEvent(t, task, tc.want[len(tc.want)-1])
			var types []string
			for _, e := range m.eventsOf(task) {
				types = append(types, e.Type)
				require.Equal(t, 3, e.Attempt)
				require.Equal(t, a.Instance(), e.Instance)
				require.False(t, e.Time.IsZero())
			}
			require.Equal(t, tc.want, types)
			require.Equal(t, tc.reason, final.Reason)
			if tc.reason == "" {
				require.NotNil(t, final.Result)
				require.Equal(t, []float64{1, 2}, final.Result.Results)
				require.Equal(t, "hello n", final.Result.Stdout)
				require.Equal(t, int64(1), final.Metrics.RunMS)
			} else {
				require.NotEmpty(t, final.Error)
			}
		})
	}
}

func TestFLUpdatePublished(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	startOnline(t, m, testConfig(t, b.URL(), id), newFakeExec())

	task := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "fl",
		Env: map[string]string{"ROUND_ID": "r7", "MODEL_URI": wire.RelayScheme + "x"}})
	m.waitEvent(t, task, wire.EventSucceeded)
	require.Eventually(t, func() bool { return len(m.flUpdates()) == 1 }, waitFor, 5*time.Millisecond)
	up := m.flUpdates()[0]
	require.Equal(t, "r7", up.RoundID)
	require.Equal(t, task, up.TaskID)
	require.Equal(t, 1, up.Attempt)
	require.Equal(t, int64(42), up.NumSamples)
	require.Equal(t, []byte{1, 2, 3}, up.Tensor)
	require.Equal(t, 0.5, up.Metrics["loss"])
}

func TestSlotsLimit(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	startOnline(t, m, testConfig(t, b.URL(), id), fx) // 2 slots

	t1, t2, t3 := randID("t-"), randID("t-"), randID("t-")
	m.start(t, id, wire.StartTask{TaskID: t1, Attempt: 1, Function: "block"})
	m.start(t, id, wire.StartTask{TaskID: t2, Attempt: 1, Function: "block"})
	m.waitEvent(t, t1, wire.EventRunning)
	m.waitEvent(t, t2, wire.EventRunning)
	hb := m.waitHeartbeat(t, func(h wire.Heartbeat) bool { return h.ID == id && h.FreeSlots == 0 })
	require.ElementsMatch(t, []wire.TaskRef{{TaskID: t1, Attempt: 1}, {TaskID: t2, Attempt: 1}}, hb.Running)

	m.start(t, id, wire.StartTask{TaskID: t3, Attempt: 1, Function: "ok"})
	ev := m.waitEvent(t, t3, wire.EventFailed)
	require.Equal(t, wire.ReasonNoCapacity, ev.Reason)
	require.Equal(t, 0, m.countEvents(t3, wire.EventAccepted))

	// A rejected attempt is not remembered: offered again with a free slot
	// it runs.
	fx.release(t1)
	m.waitEvent(t, t1, wire.EventSucceeded)
	m.start(t, id, wire.StartTask{TaskID: t3, Attempt: 1, Function: "ok"})
	m.waitEvent(t, t3, wire.EventSucceeded)
	fx.release(t2)
	m.waitEvent(t, t2, wire.EventSucceeded)
}

// TestDuplicateStart: a repeated start never runs an attempt again; for a
// finished attempt it re-sends the result (the manager asks after a
// restart because the broker may have lost it), as long as this process
// remembers it.
func TestDuplicateStart(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	cfg := testConfig(t, b.URL(), id)
	a := startOnline(t, m, cfg, fx)

	task := randID("t-")
	st := wire.StartTask{TaskID: task, Attempt: 1, Function: "block"}
	m.start(t, id, st)
	m.waitEvent(t, task, wire.EventRunning)
	m.start(t, id, st) // while running
	// Commands are handled in order: once a later task finished, the
	// repeated start was handled while task still ran.
	during := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: during, Attempt: 1})
	m.waitEvent(t, during, wire.EventSucceeded)
	fx.release(task)
	m.waitEvent(t, task, wire.EventSucceeded)
	require.Len(t, m.eventsOf(task), 3)
	first := m.eventsOf(task)[2]
	// The final event is published while its commit is still pending; a
	// start repeated before the commit is taken for a redelivery of the
	// running attempt's, which the outbox answers, not the ledger.
	require.Eventually(t, func() bool { return agent.Recorded(a.Agent, wire.TaskRef{TaskID: task, Attempt: 1}) }, waitFor, time.Millisecond)
	m.start(t, id, st) // after it finished: the same result again
	require.Eventually(t, func() bool { return m.countEvents(task, wire.EventSucceeded) == 2 }, waitFor, 5*time.Millisecond)
	again := m.eventsOf(task)[3]
	require.Equal(t, first, again, "the very report, not a new run")

	// Commands and events are ordered, so once a later task finished the
	// repeated starts were handled.
	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Len(t, m.eventsOf(task), 4)
	require.Len(t, fx.started, 3)

	// The memory of finished attempts survives a restart; their reports
	// are kept in memory only, so a new process has none to send.
	a.Stop(t)
	startOnline(t, m, cfg, fx)
	m.start(t, id, st)
	barrier2 := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier2, Attempt: 1})
	m.waitEvent(t, barrier2, wire.EventSucceeded)
	require.Len(t, m.eventsOf(task), 4)

	// A new attempt of the same task is a different thing and runs.
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 2})
	require.Eventually(t, func() bool { return m.countEvents(task, wire.EventSucceeded) == 3 }, waitFor, 5*time.Millisecond)
	require.Equal(t, 2, m.eventsOf(task)[len(m.eventsOf(task))-1].Attempt)
}

func TestStopCancelsPromptly(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	startOnline(t, m, testConfig(t, b.URL(), id), newFakeExec())

	task := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "block"})
	m.waitEvent(t, task, wire.EventRunning)
	m.stop(t, id, wire.TaskRef{TaskID: task, Attempt: 1})
	ev := m.waitEvent(t, task, wire.EventFailed)
	require.Equal(t, wire.ReasonStopped, ev.Reason)

	// Stopping an unknown or finished attempt is harmless.
	m.stop(t, id, wire.TaskRef{TaskID: task, Attempt: 1})
	m.stop(t, id, wire.TaskRef{TaskID: "nope", Attempt: 9})
	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Len(t, m.eventsOf(task), 3)
}

// TestReconnectDeliversResultOnce stops the broker while a task runs, lets
// the task finish while the broker is down, and restarts the broker on the
// same port: the result arrives, once.
func TestReconnectDeliversResultOnce(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		m := newManager(t, b.URL())
		id := randID("p-")
		fx := newFakeExec()
		a := startOnline(t, m, testConfig(t, b.URL(), id), fx)

		task := randID("t-")
		m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "block"})
		m.waitEvent(t, task, wire.EventRunning)

		subs := m.subscriptions()
		b.Stop(t)
		fx.release(task)
		require.Eventually(t, func() bool { return a.Pending() > 0 }, waitFor, 5*time.Millisecond,
			"the result waits in the outbox")

		if !b.KeepsSessions() {
			// This broker forgets subscriptions on restart; hold the
			// proplet back until the manager subscribed again, or the
			// event would be published to nobody.
			b.Gate(id, false)
		}
		b.Start(t)
		m.waitSubscribed(t, subs+1)
		b.Gate(id, true)

		m.waitEvent(t, task, wire.EventSucceeded)
		require.Eventually(t, func() bool { return a.Pending() == 0 }, waitFor, 5*time.Millisecond)
		barrier := randID("t-")
		m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
		m.waitEvent(t, barrier, wire.EventSucceeded)
		require.Equal(t, 1, m.countEvents(task, wire.EventSucceeded))
	})
}

// TestOutboxSurvivesRestart produces a result while the proplet cannot
// reach the broker, stops the proplet, and starts a new one on the same
// state dir, which delivers it.
func TestOutboxSurvivesRestart(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	px := startProxy(t, b.addr)
	fx := newFakeExec()
	cfg := testConfig(t, px.URL(), id)
	cfg.ShutdownTimeout = 100 * time.Millisecond
	a := startOnline(t, m, cfg, fx)

	task := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "block"})
	m.waitEvent(t, task, wire.EventRunning)
	px.Cut(true)
	fx.release(task)
	require.Eventually(t, func() bool { return a.Pending() > 0 }, waitFor, 5*time.Millisecond)
	require.Equal(t, 1, a.Pending(), "only the terminal event is kept; progress events are hints")
	a.Stop(t)

	cfg.BrokerURL = b.URL()
	startOnline(t, m, cfg, fx)
	ev := m.waitEvent(t, task, wire.EventSucceeded)
	require.Equal(t, "hello ", ev.Result.Stdout)
	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Equal(t, 1, m.countEvents(task, wire.EventSucceeded))
}

// TestCrashWhileRunningReportsFailure: a proplet that dies with an attempt
// running reports it failed on its next start instead of forgetting it.
func TestCrashWhileRunningReportsFailure(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	cfg := testConfig(t, b.URL(), id)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	a := startOnline(t, m, cfg, fx)

	task := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "ignore-ctx"})
	m.waitEvent(t, task, wire.EventRunning)
	a.Stop(t) // the attempt ignores cancellation, like a hung process
	defer fx.release(task)

	a2 := startOnline(t, m, cfg, fx)
	ev := m.waitEvent(t, task, wire.EventFailed)
	require.Equal(t, wire.ReasonStopped, ev.Reason)
	require.Contains(t, ev.Error, "restarted")
	require.Equal(t, a2.Instance(), ev.Instance)
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "ok"})
	barrier := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: barrier, Attempt: 1})
	m.waitEvent(t, barrier, wire.EventSucceeded)
	require.Equal(t, 0, m.countEvents(task, wire.EventSucceeded), "a restarted attempt is not rerun")
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*agent.Config)
	}{
		{"bad id", func(c *agent.Config) { c.ID = "a/b" }},
		{"wildcard id", func(c *agent.Config) { c.ID = "+" }},
		{"no state dir", func(c *agent.Config) { c.StateDir = "" }},
		{"bad scheme", func(c *agent.Config) { c.BrokerURL = "http://x:1" }},
		{"no host", func(c *agent.Config) { c.BrokerURL = "mqtt://" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "mqtt://127.0.0.1:1", "p")
			tc.mod(&cfg)
			_, err := agent.New(cfg)
			require.Error(t, err)
		})
	}
	for _, u := range []string{"mqtt://127.0.0.1:1883", "mqtts://h:8883", "tcp://h:1", "ssl://h:2"} {
		cfg := testConfig(t, u, "p")
		_, err := agent.New(cfg)
		require.NoError(t, err, u)
	}
}

// TestProgressHintsForLongTasks: an attempt still running after the hint
// delay reports accepted and running before its terminal event.
func TestProgressHintsForLongTasks(t *testing.T) {
	b := startMochi(t)
	m := newManager(t, b.URL())
	id := randID("p-")
	fx := newFakeExec()
	startOnline(t, m, testConfig(t, b.URL(), id), fx)

	task := randID("t-")
	m.start(t, id, wire.StartTask{TaskID: task, Attempt: 1, Function: "block"})
	m.waitEvent(t, task, wire.EventRunning)
	fx.release(task)
	m.waitEvent(t, task, wire.EventSucceeded)
	var types []string
	for _, e := range m.eventsOf(task) {
		types = append(types, e.Type)
	}
	require.Equal(t, []string{wire.EventAccepted, wire.EventRunning, wire.EventSucceeded}, types)
}
