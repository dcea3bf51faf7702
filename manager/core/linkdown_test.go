package core_test

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
	"github.com/absmach/propeller/test/mqtttest"
)

type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// When the manager's own connection to the broker drops while a task runs,
// its silent proplets are not lost: the attempt keeps running and its
// result, queued by the broker, completes the task on attempt 1. Only the
// manager's connection is cut (through a proxy); the proplet stays
// connected to the same broker throughout.
func TestManagerLinkDownKeepsProplets(t *testing.T) {
	for _, newEnv := range mqtttest.Envs() {
		env := newEnv(t)
		t.Run(env.Name, func(t *testing.T) {
			var mc mqttconn.Config
			if env.Name == "embedded" {
				mc = mqttconn.Config{Addr: "127.0.0.1:0", JoinToken: mqtttest.JoinToken, ManagerSecret: mqtttest.ManagerSecret}
			} else {
				mc = mqttconn.Config{Broker: env.URL, User: mqtttest.ManagerUser, Password: mqtttest.ManagerSecret}
			}
			mc.Logger = mqtttest.Logger()
			conn, err := mqttconn.Open(mc)
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			target := conn.Link.BrokerURL
			u, err := url.Parse(target)
			require.NoError(t, err)
			proxy := mqtttest.NewProxy(t, u.Host)
			conn.Link.BrokerURL = "mqtt://" + proxy.Addr
			if env.Name == "embedded" {
				env = mqtttest.Env{Name: env.Name, URL: "mqtt://" + conn.Addr, Secret: func(string) string { return mqtttest.JoinToken }}
			}

			clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			bs, err := blobs.Open(t.TempDir())
			require.NoError(t, err)
			c, err := core.New(core.Config{Engine: orchestration.Config{HeartbeatTimeout: 10 * time.Second, DeadlineGrace: 5 * time.Second}},
				core.Deps{Tasks: memory.New(), FLJobs: memory.NewFLStore(), Blobs: bs, MQTT: conn, Clock: clock, Logger: mqtttest.Logger()})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				require.NoError(t, <-done)
			})
			// Cleanups run last first: the link closes over a restored
			// proxy even when the test stops while it is cut.
			t.Cleanup(proxy.Restore)
			<-c.Ready()
			eng := c.Engine()

			p := mqtttest.MustConnect(t, env, "p1", mqtttest.ProplerOpts{})
			_, cmds := p.Subscribe(t, p.Topics.Commands("p1"))
			p.Publish(t, wire.KindStatus, &wire.Status{ID: "p1", State: wire.StateOnline, Instance: "i1", Capacity: wire.Capacity{Slots: 1}}, true)
			require.Eventually(t, func() bool {
				pr, err := eng.Proplet(t.Context(), "p1")
				return err == nil && pr.Alive
			}, wait, 5*time.Millisecond)

			task, err := eng.Submit(t.Context(), orchestration.TaskSpec{Name: "long", Image: "oci://reg/long:1", PropletID: "p1",
				MaxAttempts: 1, Timeout: time.Minute})
			require.NoError(t, err)
			st := nextStart(t, cmds)
			p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventRunning}, false)
			require.Eventually(t, func() bool {
				got, err := eng.Get(t.Context(), task.ID)
				return err == nil && got.Status.Phase == orchestration.PhaseRunning
			}, wait, 5*time.Millisecond)

			proxy.Cut()
			require.Eventually(t, func() bool { return !c.Link().Connected() }, wait, 5*time.Millisecond)
			// Past the heartbeat timeout while the manager hears nothing.
			clock.Advance(30 * time.Second)
			eng.Tick(t.Context())
			got, err := eng.Get(t.Context(), task.ID)
			require.NoError(t, err)
			require.Equal(t, orchestration.PhaseRunning, got.Status.Phase, "%s: %s", got.Status.Reason, got.Status.Message)

			// The proplet finishes while the manager is away; the broker
			// keeps the result in the manager's session.
			p.Publish(t, wire.KindEvents, &wire.Event{TaskID: st.TaskID, Attempt: st.Attempt, Type: wire.EventSucceeded,
				Result: &wire.Result{Stdout: "done"}}, false)
			proxy.Restore()
			require.Eventually(t, func() bool {
				got, err = eng.Get(t.Context(), task.ID)
				return err == nil && got.Status.Phase.Terminal()
			}, wait, 5*time.Millisecond)
			require.Equal(t, orchestration.PhaseSucceeded, got.Status.Phase, "%s: %s", got.Status.Reason, got.Status.Message)
			require.Equal(t, 1, got.Status.Attempt)
			require.Equal(t, "done", got.Status.Stdout)
		})
	}
}
