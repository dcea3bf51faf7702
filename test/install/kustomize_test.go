package install_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Every overlay builds and its objects are created on the API server.
func TestKustomizeOverlays(t *testing.T) {
	cluster, namespaced := generatedRules(t)
	for _, tc := range []struct {
		overlay string
		check   func(t *testing.T, ns string, m manifest)
	}{
		{"default", func(t *testing.T, ns string, m manifest) {
			require.Empty(t, m.find("ClusterRole"), "one namespace, no ClusterRole")
			require.Empty(t, m.find("ClusterRoleBinding"))
			role := one[rbacv1.Role](t, m, "Role")
			require.Equal(t, ns, role.Namespace)
			require.Equal(t, normalized(append(cluster, namespaced...)), normalized(role.Rules),
				"the generated ClusterRole's rules and the join token Secret's, in a Role")
			b := one[rbacv1.RoleBinding](t, m, "RoleBinding")
			require.Equal(t, ns, b.Subjects[0].Namespace)
			d := m.deployment(t)
			require.Equal(t, "ghcr.io/absmach/propeller:0.1.0", d.Spec.Template.Spec.Containers[0].Image, "images: in deploy/kustomize/base")
			require.Subset(t, m.operatorArgs(t), []string{"--embedded-broker", "--unserved-interval=0", "--metrics-addr=0"})
			require.Len(t, m.find("Service"), 1)
		}},
		{"all-namespaces", func(t *testing.T, ns string, m manifest) {
			role := one[rbacv1.ClusterRole](t, m, "ClusterRole")
			require.Equal(t, normalized(cluster), normalized(role.Rules))
			b := one[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding")
			require.Equal(t, ns, b.Subjects[0].Namespace)
			require.Equal(t, normalized(namespaced), normalized(one[rbacv1.Role](t, m, "Role").Rules), "the join token Secret stays namespaced")
			require.Contains(t, m.operatorArgs(t), "--all-namespaces")
			require.NotContains(t, m.operatorArgs(t), "--unserved-interval=0")
		}},
		{"external-broker", func(t *testing.T, _ string, m manifest) {
			require.Empty(t, m.find("Service"))
			args := m.operatorArgs(t)
			require.Contains(t, args, "--broker=mqtts://broker.example.com:8883")
			require.NotContains(t, args, "--embedded-broker")
			require.NotContains(t, args, "--mqtt-addr=:1883")
			c := m.deployment(t).Spec.Template.Spec.Containers[0]
			require.Equal(t, "PROPELLER_BROKER_PASSWORD", c.Env[1].Name)
			for _, p := range c.Ports {
				require.NotEqual(t, "mqtt", p.Name)
			}
		}},
	} {
		t.Run(tc.overlay, func(t *testing.T) {
			ns := uniqueName()
			m := kustomizeBuild(t, tc.overlay, ns)
			require.Len(t, m.find("Namespace"), 1)
			require.Equal(t, ns, m.find("Namespace")[0].GetName())
			require.Len(t, m.find("CustomResourceDefinition"), 5)
			createAll(t, m)
			tc.check(t, ns, m)
		})
	}
}

// TestKustomizeDefaultRuns: `kubectl apply -k deploy/kustomize/default`
// gives a pod that starts (its join token Secret is the operator's own
// doing), serves a proplet and runs a WasmTask with the namespaced Role.
func TestKustomizeDefaultRuns(t *testing.T) {
	ns := uniqueName()
	m := kustomizeBuild(t, "default", ns)
	createAll(t, m)
	k := newKubelet(ns, "node-a")
	op := operatorPod(t, k, m)
	var token string
	require.Eventually(t, func() bool {
		s := &corev1.Secret{}
		if k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "propeller-join-token"}, s) != nil {
			return false
		}
		token = string(s.Data["token"])
		return token != ""
	}, time.Minute, 50*time.Millisecond, "the operator creates the join token Secret")
	propletOutside(t, "mqtt://"+op.ports["mqtt"], token, "edge-k")
	require.Equal(t, "edge-k", runTask(t, ns, "add", nil))
	requireLeastPrivilege(t, ns, "propeller-operator", op)
}
