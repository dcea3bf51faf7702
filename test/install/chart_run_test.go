package install_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// TestChartInstallRuns is the chart's "done": what `helm install` creates
// runs. The operator is the rendered Deployment's container (args, env
// from the generated Secret, volumes) as a process that reaches the API
// server only as its ServiceAccount, bound by the rendered RBAC; proplets
// join with what NOTES.txt says to read, or run as the rendered DaemonSet.
func TestChartInstallRuns(t *testing.T) {
	t.Run("defaults: WasmTask and FederatedJob with the namespaced Role", func(t *testing.T) {
		ns := newNamespace(t)
		m := helmTemplate(t, ns, "image.repository=registry.example.com/team/propeller")
		createAll(t, m)
		k := newKubelet(ns, "node-a")
		op := operatorPod(t, k, m)
		token := secretValue(t, ns, "propeller-operator-join-token", "token")
		propletOutside(t, "mqtt://"+op.ports["mqtt"], token, "edge-1")
		require.Equal(t, "edge-1", runTask(t, ns, "add", nil))
		runFederatedJob(t, ns, op.mounts["/data"], "edge-1")
		requireLeastPrivilege(t, ns, "propeller-operator", op)
	})

	t.Run("TLS broker, the proplet DaemonSet and a proplet outside", func(t *testing.T) {
		ns := newNamespace(t)
		createTLSSecret(t, ns, "broker-tls", "propeller-operator-mqtt."+ns+".svc")
		m := helmTemplate(t, ns, "broker.tls.enabled=true", "broker.tls.secretName=broker-tls",
			"broker.service.type=NodePort", "proplet.enabled=true", "proplet.labels.where=cluster")
		createAll(t, m)
		k := newKubelet(ns, "node-a")
		op := operatorPod(t, k, m)
		// The DaemonSet's pod dials the Service's DNS name on 8883 with
		// the Secret's CA; the kubelet routes the name to the operator.
		ds := one[appsv1.DaemonSet](t, m, "DaemonSet").Spec.Template.Spec
		pod := k.run(t, "proplet-node-a", ds)
		require.Equal(t, "node-a", runTask(t, ns, "in-cluster", map[string]string{"where": "cluster"}))
		// A new pod on the node (a rollout, an eviction) logs in with the
		// secret its predecessor enrolled for, kept in the hostPath.
		pod.proc.stop()
		k.run(t, "proplet-node-a-2", ds)
		require.Equal(t, "node-a", runTask(t, ns, "in-cluster-again", map[string]string{"where": "cluster"}))

		ca := filepath.Join(t.TempDir(), "ca.crt")
		require.NoError(t, os.WriteFile(ca, []byte(secretValue(t, ns, "broker-tls", "ca.crt")), 0o600))
		token := secretValue(t, ns, "propeller-operator-join-token", "token")
		propletOutside(t, "mqtts://"+op.ports["mqtt"], token, "edge-tls", "--tls-ca", ca, "--labels", "where=edge")
		require.Equal(t, "edge-tls", runTask(t, ns, "outside", map[string]string{"where": "edge"}))
		requireLeastPrivilege(t, ns, "propeller-operator", op)
	})

	t.Run("all namespaces: the ClusterRole runs WasmTasks elsewhere", func(t *testing.T) {
		ns := newNamespace(t)
		m := helmTemplate(t, ns, "allNamespaces=true")
		createAll(t, m)
		k := newKubelet(ns, "node-a")
		op := operatorPod(t, k, m)
		token := secretValue(t, ns, "propeller-operator-join-token", "token")
		propletOutside(t, "mqtt://"+op.ports["mqtt"], token, "edge-all")
		other := newNamespace(t)
		require.Equal(t, "edge-all", runTask(t, other, "elsewhere", nil))
		require.True(t, canI(t, ns, "propeller-operator", "list", "wasmtasks", v1.GroupVersion.Group, ""))
		require.False(t, canI(t, ns, "propeller-operator", "get", "secrets", "", "kube-system"), "no Secrets outside its namespace")
	})
}
