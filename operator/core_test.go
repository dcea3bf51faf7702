package operator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestBuiltByTheCore checks that the operator is the shared core with
// controllers in front: a WasmTask applied reaches the engine of the core
// the leader built with core.New, and a proplet joining the broker the
// operator serves joins that same engine.
func TestBuiltByTheCore(t *testing.T) {
	ns := newNamespace(t)
	built := make(chan *core.Core, 1)
	op := startOperatorIn(t, ns, "", t.TempDir(), func(c *operator.Config) {
		c.Built = func(c *core.Core) { built <- c }
	})
	c := <-built
	require.NoError(t, c.CheckReady())

	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "via-crd", "oci://reg/hello:1", func(s *v1.WasmTaskSpec) {
		s.PropletID = "edge"
	})))
	require.Eventually(t, func() bool {
		task, err := c.Engine().Get(t.Context(), "via-crd")
		return err == nil && task.Spec.PropletID == "edge"
	}, 30*time.Second, 20*time.Millisecond)

	env := mqtttest.Env{URL: "mqtt://" + op.mqttAddr, Secret: func(string) string { return joinToken }}
	p := mqtttest.MustConnect(t, env, "edge", mqtttest.ProplerOpts{})
	p.Publish(t, wire.KindStatus, &wire.Status{ID: "edge", State: wire.StateOnline, Capacity: wire.Capacity{Slots: 1}}, true)
	require.Eventually(t, func() bool {
		ps, err := c.Engine().Proplets(t.Context())
		return err == nil && len(ps) == 1 && ps[0].ID == "edge" && ps[0].Alive
	}, 30*time.Second, 20*time.Millisecond)
	// The engine dispatches the waiting task to it.
	require.Eventually(t, func() bool {
		task, err := c.Engine().Get(t.Context(), "via-crd")
		return err == nil && task.Status.Phase == orchestration.PhaseScheduled
	}, 30*time.Second, 20*time.Millisecond)
}
