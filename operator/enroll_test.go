package operator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/test/mqtttest"
)

// TestOperatorEnrollsIntoSecret: on the operator's embedded broker the
// join token only enrolls too. A real proplet joining with it is issued
// its own secret, whose digest the operator keeps in the Secret
// propeller-proplet-credentials; once confirmed, the join token no longer
// logs the id in, also for the next leader, which reloads the Secret and
// lets the proplet back in with its own secret.
func TestOperatorEnrollsIntoSecret(t *testing.T) {
	ns := newNamespace(t)
	addr := freeAddr(t)
	op := startOperator(t, ns, addr)
	p := startProplet(t, op.mqttAddr, "p1")
	key := client.ObjectKey{Namespace: ns, Name: operator.PropletCredentialsSecret}
	confirmed := func() bool {
		s := &corev1.Secret{}
		if k8s.Get(t.Context(), key, s) != nil {
			return false
		}
		v := string(s.Data["p1"])
		return len(v) == 64 && !strings.HasPrefix(v, "pending:")
	}
	require.Eventually(t, confirmed, 60*time.Second, 50*time.Millisecond, "p1 enrolled and confirmed")
	env := mqtttest.Env{URL: "mqtt://" + op.mqttAddr, Secret: func(string) string { return joinToken }}
	_, err := mqtttest.Connect(t, env, "p1", mqtttest.ProplerOpts{})
	require.Error(t, err, "the join token no longer logs p1 in")
	_, err = mqtttest.Connect(t, env, "p2", mqtttest.ProplerOpts{})
	require.NoError(t, err, "it still enrolls ids without a secret")

	connects := func() int { return strings.Count(p.out.String(), "msg=connected ") }
	before := connects()
	op.stop(t)
	op = startOperator(t, ns, addr)
	_, err = mqtttest.Connect(t, env, "p1", mqtttest.ProplerOpts{})
	require.Error(t, err, "the next leader loaded the Secret")
	require.Eventually(t, func() bool { return connects() > before }, 60*time.Second, 50*time.Millisecond, "p1 is back with its own secret")
	require.NotContains(t, p.out.String(), "the manager refused")
	require.True(t, confirmed())
}
