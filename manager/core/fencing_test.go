package core_test

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
	"github.com/absmach/propeller/test/mqtttest"
)

func nextStop(t *testing.T, cmds <-chan paho.Message) *wire.StopTask {
	t.Helper()
	for {
		select {
		case m := <-cmds:
			var c wire.Command
			require.NoError(t, wire.Decode(m.Payload(), &c))
			if c.Type == wire.CommandStop {
				return c.Stop
			}
		case <-time.After(wait):
			t.Fatal("no stop command")
		}
	}
}

// A proplet paused past its heartbeat deadline loses its attempt, which
// is retried on another proplet; when it resumes still running the lost
// attempt, its first heartbeat gets that attempt stopped (Superseded)
// over the broker, and the retry's result is the one recorded. Starts
// carry their window on the engine's clock.
func TestPausedPropletsLostAttemptIsStopped(t *testing.T) {
	conn, err := mqttconn.Open(mqttconn.Config{Addr: "127.0.0.1:0", JoinToken: mqtttest.JoinToken,
		ManagerSecret: mqtttest.ManagerSecret, Logger: mqtttest.Logger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	hb := 10 * time.Second
	c, err := core.New(core.Config{Engine: orchestration.Config{HeartbeatTimeout: hb, BackoffBase: time.Millisecond}},
		core.Deps{Tasks: memory.New(), FLJobs: memory.NewFLStore(), Blobs: bs, MQTT: conn, Clock: clock, Logger: mqtttest.Logger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	<-c.Ready()
	eng := c.Engine()
	env := mqtttest.Env{URL: "mqtt://" + conn.Addr, Secret: func(string) string { return mqtttest.JoinToken }}
	join := func(id string) (*mqtttest.Proplet, <-chan paho.Message) {
		p := mqtttest.MustConnect(t, env, id, mqtttest.ProplerOpts{})
		_, cmds := p.Subscribe(t, p.Topics.Commands(id))
		p.Publish(t, wire.KindStatus, &wire.Status{ID: id, State: wire.StateOnline, Instance: "i-" + id, Capacity: wire.Capacity{Slots: 1}}, true)
		require.Eventually(t, func() bool {
			pr, err := eng.Proplet(t.Context(), id)
			return err == nil && pr.Alive
		}, wait, 5*time.Millisecond)
		return p, cmds
	}
	taskOf := func(id string) orchestration.Task {
		got, err := eng.Get(t.Context(), id)
		require.NoError(t, err)
		return got
	}

	p1, cmds1 := join("p1")
	task, err := eng.Submit(t.Context(), orchestration.TaskSpec{Name: "long", Image: "oci://reg/long:1",
		PropletIDs: []string{"p1", "p2"}, MaxAttempts: 2})
	require.NoError(t, err)
	st := nextStart(t, cmds1)
	require.Equal(t, 1, st.Attempt)
	require.Equal(t, clock.Now(), st.Sent)
	require.Equal(t, clock.Now().Add(hb), st.NotAfter)
	first := wire.TaskRef{TaskID: task.ID, Attempt: 1}
	p1.Publish(t, wire.KindEvents, &wire.Event{TaskID: task.ID, Attempt: 1, Type: wire.EventRunning}, false)
	require.Eventually(t, func() bool { return taskOf(task.ID).Status.Phase == orchestration.PhaseRunning }, wait, 5*time.Millisecond)

	// p1 pauses; past its deadline it is lost and the task goes to p2.
	clock.Advance(hb + time.Second)
	p2, cmds2 := join("p2")
	eng.Tick(t.Context())
	clock.Advance(time.Second)
	eng.Tick(t.Context())
	st2 := nextStart(t, cmds2)
	require.Equal(t, 2, st2.Attempt)

	// p1 resumes with the lost attempt still running.
	p1.Publish(t, wire.KindHeartbeat, &wire.Heartbeat{ID: "p1", Instance: "i-p1", Running: []wire.TaskRef{first}}, false)
	stop := nextStop(t, cmds1)
	require.Equal(t, &wire.StopTask{TaskID: task.ID, Attempt: 1, Reason: orchestration.ReasonSuperseded}, stop)
	p1.Publish(t, wire.KindEvents, &wire.Event{TaskID: task.ID, Attempt: 1, Type: wire.EventFailed, Reason: wire.ReasonStopped}, false)

	p2.Publish(t, wire.KindEvents, &wire.Event{TaskID: task.ID, Attempt: 2, Type: wire.EventSucceeded, Result: &wire.Result{Stdout: "p2"}}, false)
	require.Eventually(t, func() bool { return taskOf(task.ID).Status.Phase == orchestration.PhaseSucceeded }, wait, 5*time.Millisecond)
	got := taskOf(task.ID)
	require.Equal(t, 2, got.Status.Attempt)
	require.Equal(t, "p2", got.Status.Stdout)
}
