package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

// waitFor bounds every wait so that a broken test fails instead of hanging;
// it is a guard, never what makes a test pass.
const waitFor = 20 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("PROPLET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func randID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// manager plays the manager with a raw paho client: it records everything
// proplets publish and sends commands.
type manager struct {
	c      mqtt.Client
	topics wire.Topics

	mu         sync.Mutex
	statuses   []wire.Status
	heartbeats []wire.Heartbeat
	events     []wire.Event
	fl         []wire.FLUpdate
	subscribed int
	onRequest  func(id string, req wire.ArtifactRequest)
	onEvent    func(wire.Event) // called with mu held
}

func newManager(t testing.TB, url string) *manager {
	m := &manager{topics: wire.Topics{}}
	kinds := []string{wire.KindStatus, wire.KindHeartbeat, wire.KindEvents, wire.KindFLUpdates, wire.KindArtifactRequest}
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(randID(wire.ManagerClientID + "-")).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetOrderMatters(true).
		SetDefaultPublishHandler(m.onMessage).
		SetOnConnectHandler(func(c mqtt.Client) {
			filters := map[string]byte{}
			for _, k := range kinds {
				filters[m.topics.AllOf(k)] = 1
			}
			tok := c.SubscribeMultiple(filters, nil)
			go func() {
				if tok.Wait() && tok.Error() == nil {
					m.mu.Lock()
					m.subscribed++
					m.mu.Unlock()
				}
			}()
		})
	m.c = mqtt.NewClient(opts)
	tok := m.c.Connect()
	require.True(t, tok.WaitTimeout(waitFor))
	require.NoError(t, tok.Error())
	m.waitSubscribed(t, 1)
	t.Cleanup(func() { m.c.Disconnect(100) })
	return m
}

func (m *manager) waitSubscribed(t testing.TB, n int) {
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.subscribed >= n
	}, waitFor, 5*time.Millisecond)
}

func (m *manager) subscriptions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.subscribed
}

func (m *manager) onMessage(_ mqtt.Client, msg mqtt.Message) {
	id, kind, err := m.topics.Parse(msg.Topic())
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch kind {
	case wire.KindStatus:
		var s wire.Status
		if wire.Decode(msg.Payload(), &s) == nil {
			m.statuses = append(m.statuses, s)
		}
	case wire.KindHeartbeat:
		var h wire.Heartbeat
		if wire.Decode(msg.Payload(), &h) == nil {
			m.heartbeats = append(m.heartbeats, h)
		}
	case wire.KindEvents:
		var e wire.Event
		if wire.Decode(msg.Payload(), &e) == nil {
			m.events = append(m.events, e)
			if m.onEvent != nil {
				m.onEvent(e)
			}
		}
	case wire.KindFLUpdates:
		var u wire.FLUpdate
		if wire.Decode(msg.Payload(), &u) == nil {
			m.fl = append(m.fl, u)
		}
	case wire.KindArtifactRequest:
		var r wire.ArtifactRequest
		if wire.Decode(msg.Payload(), &r) == nil && m.onRequest != nil {
			go m.onRequest(id, r)
		}
	}
}

func (m *manager) send(t testing.TB, id string, cmd wire.Command) {
	payload, err := wire.Encode(&cmd)
	require.NoError(t, err)
	tok := m.c.Publish(m.topics.Commands(id), 1, false, payload)
	require.True(t, tok.WaitTimeout(waitFor))
	require.NoError(t, tok.Error())
}

func (m *manager) start(t testing.TB, id string, st wire.StartTask) {
	m.send(t, id, wire.Command{Type: wire.CommandStart, Start: &st})
}

func (m *manager) stop(t testing.TB, id string, ref wire.TaskRef) {
	m.send(t, id, wire.Command{Type: wire.CommandStop, Stop: &wire.StopTask{TaskID: ref.TaskID, Attempt: ref.Attempt}})
}

func (m *manager) publish(t testing.TB, topic string, msg any) {
	payload, err := wire.Encode(msg)
	require.NoError(t, err)
	tok := m.c.Publish(topic, 1, false, payload)
	require.True(t, tok.WaitTimeout(waitFor))
	require.NoError(t, tok.Error())
}

func (m *manager) eventsOf(taskID string) []wire.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Event
	for _, e := range m.events {
		if e.TaskID == taskID {
			out = append(out, e)
		}
	}
	return out
}

func (m *manager) countEvents(taskID, typ string) int {
	n := 0
	for _, e := range m.eventsOf(taskID) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// waitEvent waits until taskID has an event of type typ and returns it.
func (m *manager) waitEvent(t testing.TB, taskID, typ string) wire.Event {
	t.Helper()
	var got wire.Event
	require.Eventually(t, func() bool {
		for _, e := range m.eventsOf(taskID) {
			if e.Type == typ {
				got = e
				return true
			}
		}
		return false
	}, waitFor, 5*time.Millisecond, "no %s event for %s; have %+v", typ, taskID, m.eventsOf(taskID))
	return got
}

func (m *manager) waitStatus(t testing.TB, pred func(wire.Status) bool) wire.Status {
	t.Helper()
	var got wire.Status
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		i := slices.IndexFunc(m.statuses, pred)
		if i >= 0 {
			got = m.statuses[i]
		}
		return i >= 0
	}, waitFor, 5*time.Millisecond)
	return got
}

func (m *manager) waitHeartbeat(t testing.TB, pred func(wire.Heartbeat) bool) wire.Heartbeat {
	t.Helper()
	var got wire.Heartbeat
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		i := slices.IndexFunc(m.heartbeats, pred)
		if i >= 0 {
			got = m.heartbeats[i]
		}
		return i >= 0
	}, waitFor, 5*time.Millisecond)
	return got
}

func (m *manager) flUpdates() []wire.FLUpdate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.fl)
}

// fakeExec behaves according to StartTask.Function.
type fakeExec struct {
	mu      sync.Mutex
	gates   map[string]chan struct{}
	started chan wire.TaskRef
}

func newFakeExec() *fakeExec {
	return &fakeExec{gates: map[string]chan struct{}{}, started: make(chan wire.TaskRef, 100)}
}

func (f *fakeExec) gate(taskID string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gates[taskID]
	if !ok {
		g = make(chan struct{})
		f.gates[taskID] = g
	}
	return g
}

// release lets a blocked task finish successfully.
func (f *fakeExec) release(taskID string) { close(f.gate(taskID)) }

func ok(st wire.StartTask) agent.Outcome {
	code := 0
	return agent.Outcome{Result: &wire.Result{Results: st.Inputs, Stdout: "hello " + st.Name, ExitCode: &code},
		Metrics: &wire.Metrics{RunMS: 1}}
}

func (f *fakeExec) Execute(ctx context.Context, st wire.StartTask, running func()) agent.Outcome {
	f.started <- wire.TaskRef{TaskID: st.TaskID, Attempt: st.Attempt}
	switch st.Function {
	case "fail-early":
		return agent.Outcome{Reason: wire.ReasonArtifact, Err: errors.New("fetch failed")}
	}
	running()
	switch st.Function {
	case "block":
		select {
		case <-ctx.Done():
			return agent.Outcome{Reason: wire.ReasonStopped, Err: ctx.Err()}
		case <-f.gate(st.TaskID):
			return ok(st)
		}
	case "ignore-ctx":
		<-f.gate(st.TaskID)
		return ok(st)
	case "trap":
		return agent.Outcome{Reason: wire.ReasonTrap, Err: errors.New("unreachable executed")}
	case "panic":
		panic("executor bug")
	case "fl":
		out := ok(st)
		out.FL = &wire.FLUpdate{RoundID: st.Env["ROUND_ID"], NumSamples: 42,
			Metrics: map[string]float64{"loss": 0.5}, Tensor: []byte{1, 2, 3}}
		return out
	}
	return ok(st)
}

type runningAgent struct {
	*agent.Agent
	cfg    agent.Config
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t testing.TB, url, id string) agent.Config {
	return agent.Config{
		BrokerURL:            url,
		ID:                   id,
		Token:                "secret",
		Labels:               map[string]string{"zone": "edge-1", "arch": "arm64"},
		Slots:                2,
		MemoryBytes:          64 << 20,
		HeartbeatInterval:    50 * time.Millisecond,
		StateDir:             t.TempDir(),
		Logger:               testLogger(),
		Version:              "v0.0.0-test",
		MaxReconnectInterval: 500 * time.Millisecond,
	}
}

func startAgent(t testing.TB, cfg agent.Config, exec agent.Executor) *runningAgent {
	return startAgentWith(t, cfg, exec, nil)
}

// startAgentWith lets prepare install test hooks between New and Run.
func startAgentWith(t testing.TB, cfg agent.Config, exec agent.Executor, prepare func(*agent.Agent)) *runningAgent {
	a, err := agent.New(cfg)
	require.NoError(t, err)
	if prepare != nil {
		prepare(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx, exec) }()
	t.Cleanup(func() { ra.Stop(t) })
	return ra
}

// Stop ends Run and waits for it; calling it again is a no-op.
func (ra *runningAgent) Stop(t testing.TB) {
	ra.cancel()
	select {
	case err, ok := <-ra.done:
		if ok {
			require.NoError(t, err)
			close(ra.done)
		}
	case <-time.After(waitFor):
		t.Fatal("agent did not stop")
	}
}

// startOnline starts an agent and waits until m saw it announce itself,
// since a manager only commands proplets it knows to be online.
func startOnline(t testing.TB, m *manager, cfg agent.Config, exec agent.Executor) *runningAgent {
	return startOnlineWith(t, m, cfg, exec, nil)
}

func startOnlineWith(t testing.TB, m *manager, cfg agent.Config, exec agent.Executor, prepare func(*agent.Agent)) *runningAgent {
	ra := startAgentWith(t, cfg, exec, prepare)
	m.waitStatus(t, func(s wire.Status) bool {
		return s.ID == cfg.ID && s.State == wire.StateOnline && s.Instance == ra.Instance()
	})
	return ra
}
