package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The chart's CRDs are the generated ones, byte for byte (make manifests
// copies them).
func TestChartCRDsAreGenerated(t *testing.T) {
	gen, err := filepath.Glob(filepath.Join(repoRoot(), "deploy", "crd", "*_*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, gen)
	chart, err := filepath.Glob(filepath.Join(repoRoot(), chartDir, "crds", "*"))
	require.NoError(t, err)
	var names []string
	for _, f := range chart {
		names = append(names, filepath.Base(f))
	}
	for _, f := range gen {
		require.Contains(t, names, filepath.Base(f), "crds/ lacks %s: run make manifests", filepath.Base(f))
		want := must(os.ReadFile(f))
		require.Equal(t, string(want), string(must(os.ReadFile(filepath.Join(repoRoot(), chartDir, "crds", filepath.Base(f))))), "%s differs: run make manifests", filepath.Base(f))
	}
	require.Len(t, names, len(gen), "crds/ holds files deploy/crd does not")
}

// Every value in values.yaml is in the chart README's table.
func TestChartREADMEListsEveryValue(t *testing.T) {
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(must(os.ReadFile(filepath.Join(repoRoot(), chartDir, "values.yaml"))), &values))
	readme := string(must(os.ReadFile(filepath.Join(repoRoot(), chartDir, "README.md"))))
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 && !freeForm[prefix] {
			for k, sub := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), sub)
			}
			return
		}
		require.Contains(t, readme, "| `"+prefix+"` |", "README.md does not list value %s", prefix)
	}
	walk("", values)
}

// freeForm values are Kubernetes objects the chart passes through; the
// README lists them whole.
var freeForm = map[string]bool{
	"resources": true, "proplet.resources": true, "podSecurityContext": true, "securityContext": true,
	"updateStrategy": true, "livenessProbe": true, "readinessProbe": true,
}

// chartCase is one set of values, what its rendering must hold, and what
// the API server needs before its objects can be created.
type chartCase struct {
	name   string
	set    []string
	before func(t *testing.T, ns string)
	check  func(t *testing.T, ns string, m manifest)
}

var chartCases = []chartCase{
	{name: "defaults", check: func(t *testing.T, ns string, m manifest) {
		require.Equal(t, []string{"ClusterRole", "ClusterRole", "Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "Secret", "Service", "ServiceAccount"}, m.kinds(),
			"namespaced Roles; the ClusterRoles are propeller-editor and propeller-viewer")
		requireGeneratedRoles(t, m, "Role", "propeller-operator")
		for _, cr := range m.find("ClusterRole") {
			require.Contains(t, []string{"propeller-editor", "propeller-viewer"}, cr.GetName())
		}
		require.Equal(t, "true", m.find("ClusterRole")[0].GetLabels()["rbac.authorization.k8s.io/aggregate-to-edit"])
		d := m.deployment(t)
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		require.Subset(t, c.Args, []string{"--embedded-broker", "--mqtt-addr=:1883", "--leader-elect=true", "--data-dir=/data", "--metrics-addr=0", "--unserved-interval=0"})
		require.True(t, *pod.SecurityContext.RunAsNonRoot)
		require.EqualValues(t, 65532, *pod.SecurityContext.RunAsUser)
		require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
		require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
		require.NotEmpty(t, c.Resources.Requests)
		require.NotEmpty(t, c.Resources.Limits)
		require.NotNil(t, c.LivenessProbe)
		require.NotNil(t, c.ReadinessProbe)
		require.False(t, *pod.EnableServiceLinks)
		require.Equal(t, "propeller-operator-join-token", c.Env[1].ValueFrom.SecretKeyRef.Name, "the token from the generated Secret")
		require.Len(t, secretValue(t, ns, "propeller-operator-join-token", "token"), 43)
		svc := one[corev1.Service](t, m, "Service")
		require.Equal(t, corev1.ServiceTypeClusterIP, svc.Spec.Type)
		require.EqualValues(t, 1883, svc.Spec.Ports[0].Port)
	}},
	{name: "external broker", set: []string{"broker.embedded=false", "broker.external.url=mqtts://broker.example.com:8883",
		"broker.external.passwordSecret.name=broker", "broker.external.caSecret.name=broker-ca"},
		check: func(t *testing.T, _ string, m manifest) {
			require.Empty(t, m.find("Service"), "no embedded broker, no Service")
			require.Empty(t, m.find("Secret"), "no join token")
			c := m.deployment(t).Spec.Template.Spec.Containers[0]
			require.Subset(t, c.Args, []string{"--broker=mqtts://broker.example.com:8883", "--broker-username=manager", "--broker-ca=/etc/propeller/broker-ca/ca.crt"})
			require.NotContains(t, c.Args, "--embedded-broker")
			require.Equal(t, "PROPELLER_BROKER_PASSWORD", c.Env[1].Name)
			require.Equal(t, "broker", c.Env[1].ValueFrom.SecretKeyRef.Name)
		}},
	{name: "tls", set: []string{"broker.tls.enabled=true", "broker.tls.secretName=broker-tls", "broker.service.type=LoadBalancer"},
		before: func(t *testing.T, ns string) {
			createTLSSecret(t, ns, "broker-tls", "propeller-operator-mqtt."+ns+".svc")
		},
		check: func(t *testing.T, _ string, m manifest) {
			svc := one[corev1.Service](t, m, "Service")
			require.Equal(t, corev1.ServiceTypeLoadBalancer, svc.Spec.Type)
			require.EqualValues(t, 8883, svc.Spec.Ports[0].Port)
			require.Equal(t, "mqtts", svc.Spec.Ports[0].Name)
			require.Subset(t, m.operatorArgs(t), []string{"--mqtt-addr=:8883", "--tls-cert=/etc/propeller/tls/tls.crt", "--tls-key=/etc/propeller/tls/tls.key"})
		}},
	{name: "all namespaces", set: []string{"allNamespaces=true"}, check: func(t *testing.T, ns string, m manifest) {
		requireGeneratedRoles(t, m, "ClusterRole", "propeller-operator-"+ns)
		b := one[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding")
		require.Equal(t, ns, b.Subjects[0].Namespace)
		require.Contains(t, m.operatorArgs(t), "--all-namespaces")
		require.NotContains(t, m.operatorArgs(t), "--unserved-interval=0")
	}},
	{name: "proplet daemonset", set: []string{"proplet.enabled=true", "proplet.labels.zone=cluster", "proplet.slots=3"},
		check: func(t *testing.T, ns string, m manifest) {
			ds := one[appsv1.DaemonSet](t, m, "DaemonSet")
			c := ds.Spec.Template.Spec.Containers[0]
			require.Subset(t, c.Args, []string{"--broker=mqtt://propeller-operator-mqtt." + ns + ".svc:1883", "--slots=3", "--labels=zone=cluster"})
			require.False(t, *ds.Spec.Template.Spec.AutomountServiceAccountToken)
			require.Equal(t, "/var/lib/propeller-proplet", ds.Spec.Template.Spec.Volumes[0].HostPath.Path, "its enrolled secret outlives the pod")
			require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
			require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
			d := m.deployment(t)
			require.NotEqual(t, d.Spec.Selector.MatchLabels, ds.Spec.Selector.MatchLabels, "the Deployment must not adopt proplet pods")
		}},
	{name: "metrics, persistence, registry", set: []string{"metrics.enabled=true", "metrics.serviceMonitor.enabled=true",
		"persistence.enabled=true", "registry.authSecret=regcred", "registry.checkpointRegistry=oci://registry.example.com/models",
		"imagePullSecrets[0]=regcred", "notServedWarnings=true"},
		before: func(t *testing.T, _ string) { installServiceMonitorCRD(t) },
		check: func(t *testing.T, _ string, m manifest) {
			require.Len(t, m.find("PersistentVolumeClaim"), 1)
			require.Len(t, m.find("ServiceMonitor"), 1)
			require.Len(t, m.find("Service"), 2)
			require.Len(t, m.find("ClusterRoleBinding"), 1, "the not-served warnings' ClusterRole")
			pod := m.deployment(t).Spec.Template.Spec
			require.Equal(t, "regcred", pod.ImagePullSecrets[0].Name)
			require.Subset(t, pod.Containers[0].Args, []string{"--metrics-addr=:8080", "--registry-auth=/etc/propeller/registry/.dockerconfigjson",
				"--checkpoint-registry=oci://registry.example.com/models"})
			require.NotContains(t, pod.Containers[0].Args, "--unserved-interval=0")
		}},
}

// requireGeneratedRoles: the chart grants what deploy/rbac (make
// manifests) generates: the ClusterRole's rules as a kind named name, the
// Role's (Secrets) as the Role <fullname>-secrets, each bound to the
// operator's ServiceAccount.
func requireGeneratedRoles(t *testing.T, m manifest, kind, name string) {
	t.Helper()
	cluster, namespaced := generatedRules(t)
	got := map[string][]rbacv1.PolicyRule{}
	for _, u := range append(m.find("Role"), m.find("ClusterRole")...) {
		got[u.GetKind()+"/"+u.GetName()] = as[rbacv1.ClusterRole](t, u).Rules
	}
	require.Contains(t, got, kind+"/"+name)
	require.Equal(t, normalized(cluster), normalized(got[kind+"/"+name]), "%s %s has the generated ClusterRole's rules", kind, name)
	require.Contains(t, got, "Role/propeller-operator-secrets")
	require.Equal(t, normalized(namespaced), normalized(got["Role/propeller-operator-secrets"]), "the generated Role's rules")
	bound := map[string]bool{}
	for _, u := range append(m.find("RoleBinding"), m.find("ClusterRoleBinding")...) {
		b := as[rbacv1.RoleBinding](t, u)
		require.Equal(t, "propeller-operator", b.Subjects[0].Name)
		bound[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
	}
	require.True(t, bound[kind+"/"+name])
	require.True(t, bound["Role/propeller-operator-secrets"])
}

// Every case renders, lints, and creates on the API server.
func TestChartRenders(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			helmLint(t, tc.set...)
			ns := newNamespace(t)
			m := helmTemplate(t, ns, tc.set...)
			if tc.before != nil {
				tc.before(t, ns)
			}
			createAll(t, m)
			for _, u := range m {
				if u.GetNamespace() != "" {
					require.Equal(t, ns, u.GetNamespace(), "%s %s", u.GetKind(), u.GetName())
				}
			}
			tc.check(t, ns, m)
		})
	}
}

// Bad values fail the rendering with a message naming the value.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"broker.embedded=false"}, "broker.external.url"},
		{[]string{"broker.tls.enabled=true"}, "broker.tls.secretName"},
		{[]string{"broker.service.type=External"}, "/broker/service/type"},
		{[]string{"replicaCount=2", "broker.embedded=false", "broker.external.url=mqtt://mq:1883", "leaderElection.enabled=false"}, "leaderElection.enabled"},
		{[]string{"replicaCount=2"}, "replicaCount > 1 needs an external broker"},
		{[]string{"brokr.embedded=false"}, "brokr"},
		{[]string{"engine.policy=random"}, "/engine/policy"},
	} {
		args := []string{"template", "p", filepath.Join(repoRoot(), chartDir)}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		out, err := execOutput(tool(t, "helm"), args...)
		require.Error(t, err, "%v rendered", tc.set)
		require.Contains(t, out, tc.want, "%v", tc.set)
	}
}

// NOTES.txt tells how to reach the broker and read the token.
func TestChartNotes(t *testing.T) {
	out, err := execOutput(tool(t, "helm"), "install", "propeller-operator", filepath.Join(repoRoot(), chartDir),
		"--namespace", "edge", "--dry-run=client", "--set", "broker.service.type=LoadBalancer")
	require.NoError(t, err, out)
	notes := out[strings.Index(out, "NOTES:"):]
	require.Contains(t, notes, "kubectl -n edge get secret propeller-operator-join-token -o jsonpath='{.data.token}' | base64 -d")
	require.Contains(t, notes, "kubectl -n edge get service propeller-operator-mqtt")
	require.Contains(t, notes, "propeller proplet --broker mqtt://<address>:1883 --token")
}

func execOutput(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}
