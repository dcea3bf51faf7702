package e2e_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestLostStartIsSentAgain: a proplet, scripted over MQTT against the real
// manager and its broker, swallows the first start of an attempt and keeps
// heartbeating without listing it, as if a broker had lost the command.
// Once --reconcile-grace passed and two heartbeats did not list it, the
// manager sends the same start again; the proplet then reports it done
// and the task succeeds on attempt 1.
func TestLostStartIsSentAgain(t *testing.T) {
	add := exampletest.Build(t, "add")
	s := harness.NewSystem(t)
	s.StartManager("--reconcile-grace", "1s")
	const id = "scripted"
	env := mqtttest.Env{Name: "embedded", URL: "mqtt://" + s.MQTTAddr, Secret: s.Token}
	p := mqtttest.MustConnect(t, env, id, mqtttest.ProplerOpts{})
	qos, cmds := p.Subscribe(t, p.Topics.Commands(id))
	require.Equal(t, byte(1), qos)
	p.Publish(t, wire.KindStatus, &wire.Status{ID: id, State: wire.StateOnline, Instance: "i1", Capacity: wire.Capacity{Slots: 1}}, true)
	s.WaitAlive(id)
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				b, _ := wire.Encode(&wire.Heartbeat{ID: id, Instance: "i1", FreeSlots: 1})
				p.Client.Publish(p.Topics.Heartbeat(id), 0, false, b)
			}
		}
	}()

	task := s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{1, 2}, PropletID: id})
	start := func() *wire.StartTask {
		t.Helper()
		var m paho.Message
		select {
		case m = <-cmds:
		case <-time.After(30 * time.Second):
			t.Fatal("no start command")
		}
		var c wire.Command
		require.NoError(t, wire.Decode(m.Payload(), &c))
		require.Equal(t, wire.CommandStart, c.Type)
		return c.Start
	}
	first := start() // swallowed
	require.Equal(t, task.ID, first.TaskID)
	require.Equal(t, 1, first.Attempt)
	again := start()
	require.Equal(t, task.ID, again.TaskID)
	require.Equal(t, 1, again.Attempt, "the same attempt, asked for again")

	p.Publish(t, wire.KindEvents, &wire.Event{TaskID: task.ID, Attempt: 1, Type: wire.EventSucceeded,
		Result: &wire.Result{Results: []float64{3}}}, false)
	got := s.Wait(task.ID)
	require.Equal(t, "Succeeded", got.Phase, "%s %s", got.Reason, got.Message)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, []float64{3}, got.Results)
}
