package link_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/test/mqtttest"
)

var topics wire.Topics

const wait = 10 * time.Second

type flRec struct {
	id string
	u  wire.FLUpdate
}

// sink records everything on channels so tests wait on them.
type sink struct {
	ups    chan orchestration.Proplet
	downs  chan string
	hbs    chan orchestration.Heartbeat
	events chan orchestration.TaskEvent
	fl     chan flRec
}

func newSink() *sink {
	return &sink{
		ups:    make(chan orchestration.Proplet, 100),
		downs:  make(chan string, 100),
		hbs:    make(chan orchestration.Heartbeat, 100),
		events: make(chan orchestration.TaskEvent, 100),
		fl:     make(chan flRec, 100),
	}
}

// assigned is a sink that also answers which tasks run where, as the
// engine does, so the relay serves these tasks' artifacts.
type assigned struct {
	*sink
	tasks []orchestration.Task
}

func (a assigned) List(_ context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	var page orchestration.TaskPage
	for _, t := range a.tasks {
		if f.Match(&t) {
			page.Tasks = append(page.Tasks, t)
		}
	}
	return page, nil
}

// runningOn is a task Running on proplet id whose module is blob digest.
func runningOn(id, digest string) orchestration.Task {
	return orchestration.Task{ID: "t-" + id + digest[len(digest)-4:], Spec: orchestration.TaskSpec{Image: wire.BlobScheme + digest},
		Status: orchestration.TaskStatus{Phase: orchestration.PhaseRunning, PropletID: id}}
}

func (s *sink) PropletUp(_ context.Context, p orchestration.Proplet) error { s.ups <- p; return nil }
func (s *sink) PropletDown(_ context.Context, id string) error             { s.downs <- id; return nil }
func (s *sink) Heartbeat(_ context.Context, hb orchestration.Heartbeat) error {
	s.hbs <- hb
	return nil
}
func (s *sink) RecordEvent(_ context.Context, ev orchestration.TaskEvent) (bool, error) {
	s.events <- ev
	return true, nil
}
func (s *sink) FLUpdate(_ context.Context, id string, u wire.FLUpdate) error {
	s.fl <- flRec{id, u}
	return nil
}

type blobs map[string][]byte

func (b blobs) Blob(_ context.Context, d string) ([]byte, error) {
	if v, ok := b[d]; ok {
		return v, nil
	}
	return nil, errors.New("not found")
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing received within %s", wait)
		panic("unreachable")
	}
}

func startLink(t *testing.T, env mqtttest.Env, s link.Sink, mod func(*link.Config)) *link.Link {
	t.Helper()
	cfg := link.Config{
		BrokerURL: env.URL,
		Username:  mqtttest.ManagerUser,
		Password:  mqtttest.ManagerSecret,
		Logger:    mqtttest.Logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := link.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, l.Start(ctx, s))
	return l
}

func decodeCommand(t *testing.T, m paho.Message) wire.Command {
	t.Helper()
	var c wire.Command
	require.NoError(t, wire.Decode(m.Payload(), &c))
	return c
}

func forEachBroker(t *testing.T, fn func(t *testing.T, env mqtttest.Env)) {
	for _, mk := range mqtttest.Envs() {
		env := mk(t)
		t.Run(env.Name, func(t *testing.T) { fn(t, env) })
	}
}

func TestDispatchReachesOnlyAddressedProplet(t *testing.T) {
	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		l := startLink(t, env, newSink(), nil)
		p1 := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
		p2 := mqtttest.MustConnect(t, env, "p2", mqtttest.ProplerOpts{})
		_, c1 := p1.Subscribe(t, topics.Commands("p1"))
		_, c2 := p2.Subscribe(t, topics.Commands("p2"))

		task := orchestration.Task{
			ID: "t1",
			Spec: orchestration.TaskSpec{
				Name: "hello", Image: "oci://reg/hello:1", Digest: "sha256:" + hex.EncodeToString(make([]byte, 32)),
				Function: "add", Inputs: []float64{1, 2}, CLIArgs: []string{"-v"}, Env: map[string]string{"K": "V"},
				Timeout: 1500 * time.Millisecond, MemoryPages: 16,
			},
			Status: orchestration.TaskStatus{Attempt: 3},
		}
		ctx := context.Background()
		sent := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		require.NoError(t, l.StartTask(ctx, "p1", task, orchestration.StartWindow{Sent: sent, NotAfter: sent.Add(15 * time.Second)}))
		require.NoError(t, l.StopTask(ctx, "p2", "t2", 1, "Cancelled"))

		cmd := decodeCommand(t, recv(t, c1))
		require.Equal(t, wire.CommandStart, cmd.Type)
		require.Equal(t, &wire.StartTask{
			TaskID: "t1", Attempt: 3, Name: "hello",
			Artifact: wire.Artifact{URI: "oci://reg/hello:1", Digest: task.Spec.Digest},
			Function: "add", Inputs: []float64{1, 2}, CLIArgs: []string{"-v"}, Env: map[string]string{"K": "V"},
			TimeoutMS: 1500, MemoryPages: 16, Sent: sent, NotAfter: sent.Add(15 * time.Second),
		}, cmd.Start)

		// p2's first message is its own stop: the start for p1 never
		// reached it.
		cmd = decodeCommand(t, recv(t, c2))
		require.Equal(t, wire.CommandStop, cmd.Type)
		require.Equal(t, &wire.StopTask{TaskID: "t2", Attempt: 1, Reason: "Cancelled"}, cmd.Stop)

		require.NoError(t, l.StopTask(ctx, "p1", "t1", 3, "x"))
		cmd = decodeCommand(t, recv(t, c1))
		require.Equal(t, "t1", cmd.Stop.TaskID)

		st := l.Stats()
		require.EqualValues(t, 3, st.Dispatched)
		require.True(t, st.Connected)

		require.ErrorIs(t, l.StartTask(ctx, "+", task, orchestration.StartWindow{}), orchestration.ErrInvalid)
		require.ErrorIs(t, l.StartTask(ctx, "p1", orchestration.Task{ID: "x"}, orchestration.StartWindow{}), orchestration.ErrInvalid)
	})
}

func TestReportsReachSink(t *testing.T) {
	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		s := newSink()
		startLink(t, env, s, nil)
		p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{
			Will: &wire.Status{ID: "p1", State: wire.StateOffline, Instance: "i1"},
		})
		now := time.Now().UTC().Truncate(time.Millisecond)
		p.Publish(t, wire.KindStatus, &wire.Status{
			ID: "p1", State: wire.StateOnline, Instance: "i1", Labels: map[string]string{"zone": "a"},
			Capacity: wire.Capacity{Slots: 4, MemoryBytes: 1 << 30}, Runtime: "wazero", Version: "v1", Time: now,
		}, true)
		up := recv(t, s.ups)
		require.Equal(t, orchestration.Proplet{
			ID: "p1", Labels: map[string]string{"zone": "a"}, Slots: 4, MemoryBytes: 1 << 30,
			Runtime: "wazero", Version: "v1", Instance: "i1", Alive: true, LastSeen: now,
		}, up)

		p.Publish(t, wire.KindHeartbeat, &wire.Heartbeat{ID: "p1", Instance: "i1", FreeSlots: 3, Running: []wire.TaskRef{{TaskID: "t", Attempt: 2}}}, false)
		require.Equal(t, orchestration.Heartbeat{
			PropletID: "p1", Instance: "i1", FreeSlots: 3, Running: []orchestration.AttemptRef{{TaskID: "t", Attempt: 2}},
		}, recv(t, s.hbs))

		code := 0
		p.Publish(t, wire.KindEvents, &wire.Event{
			TaskID: "t", Attempt: 2, Type: wire.EventSucceeded, Time: now,
			Result: &wire.Result{Results: []float64{3}, Stdout: "out", Stderr: "err", ExitCode: &code},
		}, false)
		require.Equal(t, orchestration.TaskEvent{
			TaskID: "t", Attempt: 2, PropletID: "p1", Type: orchestration.EventSucceeded, Time: now,
			Results: []float64{3}, Stdout: "out", Stderr: "err", ExitCode: &code,
		}, recv(t, s.events))

		p.Publish(t, wire.KindEvents, &wire.Event{TaskID: "t", Attempt: 3, Type: wire.EventFailed, Reason: wire.ReasonTrap, Error: "boom"}, false)
		ev := recv(t, s.events)
		require.Equal(t, orchestration.EventFailed, ev.Type)
		require.Equal(t, wire.ReasonTrap, ev.Reason)
		require.Equal(t, "boom", ev.Error)

		p.Publish(t, wire.KindFLUpdates, &wire.FLUpdate{RoundID: "r1", TaskID: "t", Attempt: 2, NumSamples: 10, Tensor: []byte{1, 2}}, false)
		fl := recv(t, s.fl)
		require.Equal(t, "p1", fl.id)
		require.Equal(t, int64(10), fl.u.NumSamples)
		require.Equal(t, []byte{1, 2}, fl.u.Tensor)

		// Abrupt loss: no DISCONNECT, so the broker sends the will.
		p.Kill()
		require.Equal(t, "p1", recv(t, s.downs))
	})
}

func TestRetainedStatusAfterManagerStart(t *testing.T) {
	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		p := mqtttest.MustConnect(t, env, "p2", mqtttest.ProplerOpts{})
		p.Publish(t, wire.KindStatus, &wire.Status{ID: "p2", State: wire.StateOnline, Capacity: wire.Capacity{Slots: 1}}, true)
		s := newSink()
		startLink(t, env, s, nil)
		require.Equal(t, "p2", recv(t, s.ups).ID)
	})
}

func TestStaleWillIgnored(t *testing.T) {
	env := mqtttest.Embedded(t)
	s := newSink()
	startLink(t, env, s, nil)
	p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
	p.Publish(t, wire.KindStatus, &wire.Status{ID: "p1", State: wire.StateOnline, Instance: "new"}, false)
	require.Equal(t, "new", recv(t, s.ups).Instance)
	// The previous instance's will, arriving late.
	p.Publish(t, wire.KindStatus, &wire.Status{ID: "p1", State: wire.StateOffline, Instance: "old"}, false)
	p.Publish(t, wire.KindStatus, &wire.Status{ID: "p1", State: wire.StateOffline, Instance: "new"}, false)
	require.Equal(t, "p1", recv(t, s.downs))
	require.Empty(t, s.downs)
}

func TestBadPayloadsAreDropped(t *testing.T) {
	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		s := newSink()
		l := startLink(t, env, s, nil)
		p := mqtttest.MustConnect(t, env, "p3", mqtttest.ProplerOpts{})
		bad := []struct {
			kind    string
			payload string
		}{
			{wire.KindEvents, "not json"},
			{wire.KindEvents, `{"v":99,"task_id":"t","type":"running"}`},
			{wire.KindEvents, `{"v":1,"task_id":"t","type":"exploded"}`},
			{wire.KindEvents, `{"v":1,"type":"running"}`},
			{wire.KindEvents, `{"v":1,"task_id":"t","attempt":-1,"type":"running"}`},
			{wire.KindEvents, `{"v":1,"task_id":{"x":1}}`},
			{wire.KindEvents, `null`},
			{wire.KindHeartbeat, `[1,2,3]`},
			{wire.KindHeartbeat, `{"v":1,"id":"someone-else"}`},
			{wire.KindStatus, `{"v":1,"id":"someone-else","state":"online"}`},
			{wire.KindStatus, `{"v":1,"id":"p3","state":"sleepy"}`},
			{wire.KindFLUpdates, `{"v":1,"round_id":"","task_id":"t"}`},
			{wire.KindFLUpdates, `{"v":1,"tensor":"!!notbase64"}`},
			{wire.KindArtifactRequest, `{"v":1,"digest":5}`},
		}
		for _, b := range bad {
			p.PublishRaw(t, topics.For("p3", b.kind), []byte(b.payload), false)
		}
		p.Publish(t, wire.KindEvents, &wire.Event{TaskID: "good", Attempt: 1, Type: wire.EventRunning}, false)
		// Events of different tasks are handled in parallel, so wait for
		// the count rather than relying on order.
		require.Equal(t, "good", recv(t, s.events).TaskID)
		require.Eventually(t, func() bool { return l.Stats().Dropped >= uint64(len(bad)) }, 10*time.Second, time.Millisecond)
		require.EqualValues(t, len(bad), l.Stats().Dropped)
		require.Empty(t, s.events)
		require.Empty(t, s.hbs)
		require.Empty(t, s.ups)
		require.Empty(t, s.fl)
	})
}

func TestPersistentSessionDeliversWhileManagerIsAway(t *testing.T) {
	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		clientID := mqtttest.UniqueClientID(wire.ManagerClientID)
		first := startLink(t, env, newSink(), func(c *link.Config) { c.ClientID = clientID })
		require.NoError(t, first.Close())

		p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
		for i := 1; i <= 5; i++ {
			p.Publish(t, wire.KindEvents, &wire.Event{TaskID: "t", Attempt: i, Type: wire.EventSucceeded}, false)
		}

		s := newSink()
		startLink(t, env, s, func(c *link.Config) { c.ClientID = clientID })
		// A resumed session may replay queued messages out of order (mochi
		// does); the engine's recording is order-insensitive.
		var got []int
		for range 5 {
			got = append(got, recv(t, s.events).Attempt)
		}
		require.ElementsMatch(t, []int{1, 2, 3, 4, 5}, got)
	})
}

func TestReconnectResubscribes(t *testing.T) {
	env := mqtttest.Mosquitto(t)
	s := newSink()
	l := startLink(t, env, s, nil)
	env.Restart(t) // Mosquitto runs without persistence: the session is gone.
	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.Reconnects >= 1 && st.Connected
	}, 30*time.Second, 20*time.Millisecond)
	require.GreaterOrEqual(t, l.Stats().ConnectionLost, uint64(1))
	p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
	// The link's subscribe may still be in flight just after CONNACK, so
	// keep publishing until one event gets through.
	require.Eventually(t, func() bool {
		p.Publish(t, wire.KindEvents, &wire.Event{TaskID: "after", Attempt: 1, Type: wire.EventRunning}, false)
		select {
		case ev := <-s.events:
			return ev.TaskID == "after"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, 20*time.Second, time.Millisecond)
	require.NoError(t, l.StartTask(context.Background(), "p1", orchestration.Task{ID: "x", Spec: orchestration.TaskSpec{Image: "https://x/y.wasm"}}, orchestration.StartWindow{}))
}

func TestArtifactRelay(t *testing.T) {
	big := bytes.Repeat([]byte("wasm"), 150_000) // 600,000 bytes: 3 chunks of 256 KiB
	sum := sha256.Sum256(big)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	corrupt := "sha256:" + hex.EncodeToString(make([]byte, 32))
	store := blobs{digest: big, corrupt: []byte("tampered")}
	missing := "sha256:" + hex.EncodeToString(bytes.Repeat([]byte{1}, 32))

	forEachBroker(t, func(t *testing.T, env mqtttest.Env) {
		var tasks []orchestration.Task
		for _, d := range []string{digest, corrupt, missing} {
			tasks = append(tasks, runningOn("p1", d))
		}
		l := startLink(t, env, assigned{newSink(), tasks}, func(c *link.Config) { c.Blobs = store })
		p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
		_, chunks := p.Subscribe(t, topics.ArtifactChunks("p1"))

		p.Publish(t, wire.KindArtifactRequest, &wire.ArtifactRequest{Digest: digest}, false)
		var got []byte
		for i := 0; i < 3; i++ {
			var c wire.ArtifactChunk
			require.NoError(t, wire.Decode(recv(t, chunks).Payload(), &c))
			require.Empty(t, c.Error)
			require.Equal(t, digest, c.Digest)
			require.Equal(t, i, c.Index)
			require.Equal(t, 3, c.Total)
			require.Equal(t, int64(len(big)), c.Size)
			got = append(got, c.Data...)
		}
		require.Equal(t, big, got)

		for _, d := range []string{missing, corrupt, "sha256:nothex", "../../etc/passwd"} {
			p.Publish(t, wire.KindArtifactRequest, &wire.ArtifactRequest{Digest: d}, false)
			var c wire.ArtifactChunk
			require.NoError(t, wire.Decode(recv(t, chunks).Payload(), &c))
			require.Equal(t, d, c.Digest)
			require.Equal(t, 1, c.Total)
			require.NotEmpty(t, c.Error)
			require.Empty(t, c.Data)
		}
		require.Eventually(t, func() bool {
			st := l.Stats()
			return st.BlobsRelayed == 1 && st.RelayFailures == 4
		}, wait, 10*time.Millisecond)
	})
}

// TestRelayServesOnlyAssignedArtifacts: two proplets, each running a task
// of its own module. Each gets its own module through the relay; asking
// for the other's digest, which it might have learnt anywhere, gets an
// error chunk and no bytes. A sink that cannot say what runs where gets
// nothing relayed at all.
func TestRelayServesOnlyAssignedArtifacts(t *testing.T) {
	modA, modB := []byte("\x00asm module of task a"), []byte("\x00asm module of task b")
	da, db := sha(modA), sha(modB)
	store := blobs{da: modA, db: modB}
	env := mqtttest.Embedded(t)
	l := startLink(t, env, assigned{newSink(), []orchestration.Task{runningOn("p1", da), runningOn("p2", db)}},
		func(c *link.Config) { c.Blobs = store })
	fetch := func(p *mqtttest.Proplet, chunks <-chan paho.Message, digest string) wire.ArtifactChunk {
		t.Helper()
		p.Publish(t, wire.KindArtifactRequest, &wire.ArtifactRequest{Digest: digest}, false)
		var c wire.ArtifactChunk
		require.NoError(t, wire.Decode(recv(t, chunks).Payload(), &c))
		require.Equal(t, digest, c.Digest)
		return c
	}
	p1 := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
	_, chunks1 := p1.Subscribe(t, topics.ArtifactChunks("p1"))
	p2 := mqtttest.MustConnect(t, env, "p2", mqtttest.ProplerOpts{})
	_, chunks2 := p2.Subscribe(t, topics.ArtifactChunks("p2"))

	c := fetch(p1, chunks1, da)
	require.Empty(t, c.Error)
	require.Equal(t, modA, c.Data)
	c = fetch(p2, chunks2, db)
	require.Empty(t, c.Error)
	require.Equal(t, modB, c.Data)

	c = fetch(p2, chunks2, da)
	require.Contains(t, c.Error, "not authorised")
	require.Empty(t, c.Data)
	c = fetch(p1, chunks1, db)
	require.Contains(t, c.Error, "not authorised")
	require.Empty(t, c.Data)
	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.BlobsRelayed == 2 && st.RelayFailures == 2
	}, wait, 10*time.Millisecond)
}

func TestRelayRefusesWithoutAssignments(t *testing.T) {
	mod := []byte("\x00asm module")
	d := sha(mod)
	env := mqtttest.Embedded(t)
	startLink(t, env, newSink(), func(c *link.Config) { c.Blobs = blobs{d: mod} })
	p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
	_, chunks := p.Subscribe(t, topics.ArtifactChunks("p1"))
	p.Publish(t, wire.KindArtifactRequest, &wire.ArtifactRequest{Digest: d}, false)
	var c wire.ArtifactChunk
	require.NoError(t, wire.Decode(recv(t, chunks).Payload(), &c))
	require.Contains(t, c.Error, "not authorised")
	require.Empty(t, c.Data)
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestStartTaskWithUploadedBlob(t *testing.T) {
	small := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(small)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	env := mqtttest.Embedded(t)
	cases := []struct {
		name      string
		inlineMax int
		want      wire.Artifact
	}{
		{"inline", 0, wire.Artifact{Inline: small, Digest: digest}},
		{"relay", -1, wire.Artifact{URI: wire.RelayScheme + digest, Digest: digest}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := startLink(t, env, newSink(), func(c *link.Config) {
				c.Blobs = blobs{digest: small}
				c.InlineMax = tc.inlineMax
				c.ClientID = mqtttest.UniqueClientID(wire.ManagerClientID)
			})
			p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
			_, cmds := p.Subscribe(t, topics.Commands("p1"))
			require.NoError(t, l.StartTask(context.Background(), "p1", orchestration.Task{ID: "t", Spec: orchestration.TaskSpec{Image: wire.BlobScheme + digest}}, orchestration.StartWindow{}))
			require.Equal(t, tc.want, decodeCommand(t, recv(t, cmds)).Start.Artifact)
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"mqtt://localhost:1883", true},
		{"mqtts://localhost:8883", true},
		{"tcp://localhost:1883", true},
		{"ssl://localhost:8883", true},
		{"http://localhost:1883", false},
		{"localhost:1883", false},
		{"", false},
	}
	for _, tc := range cases {
		_, err := link.New(link.Config{BrokerURL: tc.url})
		if tc.ok {
			require.NoError(t, err, tc.url)
		} else {
			require.Error(t, err, tc.url)
		}
	}
	l, err := link.New(link.Config{BrokerURL: "mqtt://x:1"})
	require.NoError(t, err)
	require.ErrorContains(t, l.Start(t.Context(), nil), "sink is required")
}
