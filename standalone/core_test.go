package standalone_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestBuiltByTheCore checks that the standalone manager is the shared core
// with REST in front: the REST API reads the engine of the core that Run
// built with core.New, and a proplet joining the broker Run serves joins
// that same engine.
func TestBuiltByTheCore(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	built := make(chan *core.Core, 1)
	addrs := make(chan standalone.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- standalone.Run(ctx, standalone.Config{
			DataDir: dataDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
			Built: func(c *core.Core) { built <- c },
			Ready: func(a standalone.Addrs) { addrs <- a },
		})
	}()
	var a standalone.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	c := <-built
	require.NoError(t, c.CheckReady())

	task, err := c.Engine().Submit(t.Context(), orchestration.TaskSpec{Name: "from-core", Image: "oci://reg/hello:1", PropletID: "edge"})
	require.NoError(t, err)
	token, err := os.ReadFile(filepath.Join(dataDir, standalone.APITokenFile))
	require.NoError(t, err)
	api, err := rest.NewClient("http://"+a.HTTP, strings.TrimSpace(string(token)))
	require.NoError(t, err)
	got, err := api.GetTask(t.Context(), task.ID)
	require.NoError(t, err)
	require.Equal(t, "from-core", got.Name)

	join, err := os.ReadFile(filepath.Join(dataDir, standalone.JoinTokenFile))
	require.NoError(t, err)
	env := mqtttest.Env{URL: "mqtt://" + a.MQTT, Secret: func(string) string { return strings.TrimSpace(string(join)) }}
	p := mqtttest.MustConnect(t, env, "edge", mqtttest.ProplerOpts{})
	p.Publish(t, wire.KindStatus, &wire.Status{ID: "edge", State: wire.StateOnline, Capacity: wire.Capacity{Slots: 1}}, true)
	require.Eventually(t, func() bool {
		ps, err := c.Engine().Proplets(t.Context())
		return err == nil && len(ps) == 1 && ps[0].ID == "edge" && ps[0].Alive
	}, 20*time.Second, 5*time.Millisecond)
}
