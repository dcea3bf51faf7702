package core_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/storage/memory"
	"github.com/absmach/propeller/test/mqtttest"
)

const wait = 20 * time.Second

// recorder is a task and proplet observer.
type recorder struct {
	mu      sync.Mutex
	phases  map[string][]orchestration.Phase
	members []string
}

func (r *recorder) task(t orchestration.Task) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phases == nil {
		r.phases = map[string][]orchestration.Phase{}
	}
	r.phases[t.ID] = append(r.phases[t.ID], t.Status.Phase)
}

// proplet records what the engine says of a proplet when the observer
// hears of it (QoS 1 may repeat a status).
func (r *recorder) proplet(id string, alive bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := " left"
	if alive {
		state = " joined"
	}
	r.members = append(r.members, id+state)
}

func (r *recorder) seen(id string) []orchestration.Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]orchestration.Phase(nil), r.phases[id]...)
}

func (r *recorder) joined() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.members...)
}

type fixture struct {
	core *core.Core
	conn *mqttconn.Conn
	rec  *recorder
	done chan error
}

// start builds a core over the memory stores and an embedded broker, as
// the managers do, and runs it until the test ends.
func start(t *testing.T) *fixture {
	t.Helper()
	conn, err := mqttconn.Open(mqttconn.Config{
		Addr: "127.0.0.1:0", JoinToken: mqtttest.JoinToken, ManagerSecret: mqtttest.ManagerSecret,
		Logger: mqtttest.Logger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	rec := &recorder{}
	f := &fixture{conn: conn, rec: rec, done: make(chan error, 1)}
	// Observers run once Run started, after f.core is set.
	c, err := core.New(core.Config{}, core.Deps{
		Tasks: memory.New(), FLJobs: memory.NewFLStore(), Blobs: bs, MQTT: conn, Logger: mqtttest.Logger(),
		TaskObservers:    []func(orchestration.Task){rec.task},
		PropletObservers: []func(string){func(id string) { rec.proplet(id, f.alive(id)) }},
	})
	require.NoError(t, err)
	require.Error(t, c.CheckReady(), "ready before Run")
	f.core = c

	ctx, cancel := context.WithCancel(context.Background())
	go func() { f.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-f.done)
	})
	select {
	case <-c.Ready():
	case err := <-f.done:
		t.Fatalf("run ended before ready: %v", err)
	}
	require.NoError(t, c.CheckReady())
	return f
}

func (f *fixture) alive(id string) bool {
	ps, err := f.core.Engine().Proplets(context.Background())
	for _, p := range ps {
		if p.ID == id {
			return err == nil && p.Alive
		}
	}
	return false
}

// proplet joins with one slot and returns its command stream.
func (f *fixture) proplet(t *testing.T, id string) (*mqtttest.Proplet, <-chan paho.Message) {
	t.Helper()
	env := mqtttest.Env{URL: "mqtt://" + f.conn.Addr, Secret: func(string) string { return mqtttest.JoinToken }}
	p := mqtttest.MustConnect(t, env, id, mqtttest.ProplerOpts{})
	_, cmds := p.Subscribe(t, p.Topics.Commands(id))
	p.Publish(t, wire.KindStatus, &wire.Status{ID: id, State: wire.StateOnline, Instance: "i1", Capacity: wire.Capacity{Slots: 1}}, true)
	require.Eventually(t, func() bool {
		ps, err := f.core.Engine().Proplets(t.Context())
		return err == nil && len(ps) == 1 && ps[0].Alive
	}, wait, 5*time.Millisecond)
	return p, cmds
}

func nextStart(t *testing.T, cmds <-chan paho.Message) *wire.StartTask {
	t.Helper()
	for {
		select {
		case m := <-cmds:
			var c wire.Command
			require.NoError(t, wire.Decode(m.Payload(), &c))
			if c.Type == wire.CommandStart {
				return c.Start
			}
		case <-time.After(wait):
			t.Fatal("no start command")
		}
	}
}

func TestTaskRunsThroughTheLinkAndEngine(t *testing.T) {
	f := start(t)
	p, cmds := f.proplet(t, "p1")
	require.Eventually(t, func() bool { return slices.Contains(f.rec.joined(), "p1 joined") }, wait, 5*time.Millisecond,
		"the proplet observer hears the join")

	task, err := f.core.Engine().Submit(t.Context(), orchestration.TaskSpec{Name: "hello", Image: "oci://reg/hello:1", PropletID: "p1"})
	require.NoError(t, err)
	st := nextStart(t, cmds)
	require.Equal(t, task.ID, st.TaskID)
	p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventRunning}, false)
	p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventSucceeded,
		Result: &wire.Result{Stdout: "hi"}}, false)
	require.Eventually(t, func() bool {
		got, err := f.core.Engine().Get(t.Context(), task.ID)
		return err == nil && got.Status.Phase == orchestration.PhaseSucceeded
	}, wait, 5*time.Millisecond)
	require.Contains(t, f.rec.seen(task.ID), orchestration.PhaseSucceeded, "task observers see the engine's commits")

	p.Publish(t, wire.KindStatus, &wire.Status{ID: "p1", State: wire.StateOffline, Instance: "i1"}, true)
	require.Eventually(t, func() bool { return slices.Contains(f.rec.joined(), "p1 left") }, wait, 5*time.Millisecond)
}

func tensor(t *testing.T, w ...float32) []byte {
	t.Helper()
	b, err := safetensors.EncodeF32(map[string][]float32{"w": w}, map[string][]int{"w": {len(w)}}, nil)
	require.NoError(t, err)
	return b
}

// A round's task goes out through the engine and its update comes back
// through the link to the coordinator, which closes the round on the
// task's success (seen through the engine's observer).
func TestFederatedRoundThroughTheLink(t *testing.T) {
	f := start(t)
	p, cmds := f.proplet(t, "p1")
	model, err := f.core.Blobs().PutBytes(tensor(t, 0, 0))
	require.NoError(t, err)
	job, err := f.core.FL().Create(t.Context(), fl.JobSpec{
		ModelRef: wire.BlobScheme + model, TaskWasmImage: "oci://reg/train:1",
		Participants: []fl.Participant{{PropletID: "p1"}}, Rounds: fl.Rounds{Total: 1},
	})
	require.NoError(t, err)

	st := nextStart(t, cmds)
	require.Equal(t, "1", st.Env[fl.EnvRoundID])
	p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventRunning}, false)
	p.Publish(t, wire.KindFLUpdates, &wire.FLUpdate{JobID: job.ID, RoundID: st.Env[fl.EnvRoundID], TaskID: st.TaskID,
		Attempt: st.Attempt, NumSamples: 10, Tensor: tensor(t, 2, 4)}, false)
	p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventSucceeded}, false)

	require.Eventually(t, func() bool {
		j, err := f.core.FL().Get(t.Context(), job.ID)
		return err == nil && j.Status.Phase == fl.JobSucceeded
	}, wait, 10*time.Millisecond)
	cps, err := f.core.FL().Checkpoints(t.Context(), job.ID)
	require.NoError(t, err)
	require.Len(t, cps, 1)
	b, err := f.core.Blobs().Blob(t.Context(), cps[0].Digest)
	require.NoError(t, err)
	got, _, err := safetensors.DecodeF32(b)
	require.NoError(t, err)
	require.Equal(t, []float32{2, 4}, got["w"], "the one update is the new model")
}

// A participant's failure reaches the coordinator only as a task change,
// through the engine's observer: with no update, the round fails at once
// rather than at its deadline.
func TestFederatedRoundSeesTaskFailure(t *testing.T) {
	f := start(t)
	p, cmds := f.proplet(t, "p1")
	model, err := f.core.Blobs().PutBytes(tensor(t, 0, 0))
	require.NoError(t, err)
	job, err := f.core.FL().Create(t.Context(), fl.JobSpec{
		ModelRef: wire.BlobScheme + model, TaskWasmImage: "oci://reg/train:1",
		Participants: []fl.Participant{{PropletID: "p1"}}, Rounds: fl.Rounds{Total: 1},
		OnRoundFailure: fl.FailurePolicy{Action: fl.ActionFail},
	})
	require.NoError(t, err)
	// Every attempt the engine makes fails.
	require.Eventually(t, func() bool {
		for len(cmds) > 0 {
			var c wire.Command
			if wire.Decode((<-cmds).Payload(), &c) != nil || c.Type != wire.CommandStart {
				continue
			}
			ev, _ := wire.Encode(&wire.Event{TaskID: c.Start.TaskID, Attempt: c.Start.Attempt, Type: wire.EventFailed, Error: "boom"})
			p.Client.Publish(p.Topics.Events("p1"), 1, false, ev).Wait()
		}
		j, err := f.core.FL().Get(t.Context(), job.ID)
		return err == nil && j.Status.Phase == fl.JobFailed
	}, wait, 10*time.Millisecond)
	j, err := f.core.FL().Get(t.Context(), job.ID)
	require.NoError(t, err)
	require.Equal(t, "RoundFailed", j.Status.Reason)
	require.Contains(t, j.Status.Message, "every participant finished")
}

func TestNewRequiresItsPorts(t *testing.T) {
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	conn := &mqttconn.Conn{}
	full := core.Deps{Tasks: memory.New(), FLJobs: memory.NewFLStore(), Blobs: bs, MQTT: conn}
	for name, mod := range map[string]func(*core.Deps){
		"task store":   func(d *core.Deps) { d.Tasks = nil },
		"FL job store": func(d *core.Deps) { d.FLJobs = nil },
		"blob store":   func(d *core.Deps) { d.Blobs = nil },
		"MQTT":         func(d *core.Deps) { d.MQTT = nil },
	} {
		d := full
		mod(&d)
		_, err := core.New(core.Config{}, d)
		require.ErrorContains(t, err, name)
	}
	_, err = core.New(core.Config{}, full)
	require.ErrorContains(t, err, "broker url", "the connection's link config is checked at New")
}

// A broker that never answers ends Run with the connect error, and the
// coordinator it started stops with it.
func TestRunEndsWhenTheBrokerIsUnreachable(t *testing.T) {
	conn, err := mqttconn.Open(mqttconn.Config{Broker: "mqtt://" + mqtttest.FreeAddr(t), Logger: mqtttest.Logger()})
	require.NoError(t, err)
	bs, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	c, err := core.New(core.Config{ConnectTimeout: 200 * time.Millisecond}, core.Deps{
		Tasks: memory.New(), FLJobs: memory.NewFLStore(), Blobs: bs, MQTT: conn, Logger: mqtttest.Logger(),
	})
	require.NoError(t, err)
	require.ErrorContains(t, c.Run(t.Context()), "link: connect")
	require.ErrorContains(t, c.CheckReady(), "recovering")
	require.ErrorContains(t, c.Run(t.Context()), "already run")
}
