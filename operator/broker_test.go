package operator_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestExternalBroker runs the operator on Mosquitto (--broker) instead of
// its embedded broker, with Mosquitto's per-proplet ACL: a task runs to
// Succeeded, and a running task deleted is stopped on the proplet, which
// frees its only slot for the next task.
func TestExternalBroker(t *testing.T) {
	env := mqtttest.Mosquitto(t)
	ns := newNamespace(t)
	modules := serveModules(t, "arith", "spin")
	op := launchOperator(t, ns, "", t.TempDir(), false, func(c *operator.Config) {
		c.Broker = env.URL
		c.BrokerUser = mqtttest.ManagerUser
		c.BrokerPassword = mqtttest.ManagerSecret
	})
	op.waitReady(t)
	u, err := url.Parse(env.URL)
	require.NoError(t, err)
	startProplet(t, u.Host, "p1", "--token", env.Secret("p1"), "--slots", "1")

	add := newTask(ns, "add", modules+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{20, 22}
	})
	require.NoError(t, k8s.Create(t.Context(), add))
	got := waitPhase(t, ns, "add", v1.TaskSucceeded)
	require.Equal(t, []float64{42}, got.Status.Results)
	require.Equal(t, "p1", got.Status.PropletID)

	spin := newTask(ns, "spin", modules+"/spin.wasm", nil)
	require.NoError(t, k8s.Create(t.Context(), spin))
	waitPhase(t, ns, "spin", v1.TaskRunning)
	require.NoError(t, k8s.Delete(t.Context(), spin))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(spin), &v1.WasmTask{}))
	}, 30*time.Second, 50*time.Millisecond)

	// The proplet's one slot is free again only if the stop reached it;
	// otherwise every attempt fails for want of a slot.
	after := newTask(ns, "after", modules+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{1, 1}
	})
	require.NoError(t, k8s.Create(t.Context(), after))
	got = waitPhase(t, ns, "after", v1.TaskSucceeded)
	require.Equal(t, []float64{2}, got.Status.Results)
}
