package install_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// manifest is one rendering: the objects in the order the tool wrote them.
type manifest []*unstructured.Unstructured

// helmTemplate renders the chart as `helm install` would into ns, with
// --set values (helm validates them against values.schema.json).
func helmTemplate(t testing.TB, ns string, set ...string) manifest {
	t.Helper()
	args := []string{"template", "propeller-operator", filepath.Join(repoRoot(), chartDir), "--namespace", ns}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return decode(t, run(t, tool(t, "helm"), args...))
}

// helmLint runs `helm lint --strict` with the same values.
func helmLint(t testing.TB, set ...string) {
	t.Helper()
	args := []string{"lint", "--strict", filepath.Join(repoRoot(), chartDir)}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out := run(t, tool(t, "helm"), args...)
	require.Contains(t, string(out), "0 chart(s) failed")
}

// kustomizeBuild builds overlay (a directory under deploy/kustomize) the
// way a user installs it into a namespace of their own: an overlay on top
// that sets the namespace, ServiceAccount subjects of bindings included
// (docs/install.md shows it).
func kustomizeBuild(t testing.TB, overlay, ns string) manifest {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(repoRoot(), "deploy", "kustomize", overlay))
	require.NoError(t, err)
	k := "namespace: " + ns + "\nresources:\n  - " + rel + `
transformers:
  - |-
    apiVersion: builtin
    kind: NamespaceTransformer
    metadata:
      name: namespace
      namespace: ` + ns + `
    setRoleBindingSubjects: allServiceAccounts
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	return decode(t, run(t, tool(t, "kustomize"), "build", "--load-restrictor", "LoadRestrictionsNone", dir))
}

func run(t testing.TB, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "%s %s\n%s", filepath.Base(bin), strings.Join(args, " "), stderr.String())
	return stdout.Bytes()
}

func decode(t testing.TB, b []byte) manifest {
	t.Helper()
	var m manifest
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return m
		}
		require.NoError(t, err)
		if len(u.Object) > 0 {
			m = append(m, u)
		}
	}
}

// find returns the objects of kind, in order.
func (m manifest) find(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range m {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

func (m manifest) kinds() []string {
	var k []string
	for _, u := range m {
		k = append(k, u.GetKind())
	}
	slices.Sort(k)
	return k
}

// one converts the only object of kind (failing unless there is exactly
// one) into a typed object.
func one[T any](t testing.TB, m manifest, kind string) *T {
	t.Helper()
	objs := m.find(kind)
	require.Len(t, objs, 1, "%s objects", kind)
	return as[T](t, objs[0])
}

func as[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out))
	return out
}

func (m manifest) deployment(t testing.TB) *appsv1.Deployment {
	return one[appsv1.Deployment](t, m, "Deployment")
}

func (m manifest) operatorArgs(t testing.TB) []string {
	return m.deployment(t).Spec.Template.Spec.Containers[0].Args
}

// createAll creates every object on the API server, as `kubectl create`
// would, the namespace first. CRDs are already installed (from the chart's
// crds/ by TestMain); one rendered again must be the same. Cluster-scoped
// objects are deleted when the test ends, so the next rendering can create
// them again.
func createAll(t testing.TB, m manifest) {
	t.Helper()
	order := func(u *unstructured.Unstructured) int {
		switch u.GetKind() {
		case "Namespace":
			return 0
		case "CustomResourceDefinition":
			return 1
		}
		return 2
	}
	objs := slices.Clone(m)
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return order(a) - order(b) })
	for _, u := range objs {
		obj := u.DeepCopy()
		if obj.GetKind() == "CustomResourceDefinition" {
			have := &apiextensionsv1.CustomResourceDefinition{}
			require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Name: obj.GetName()}, have), "CRD %s", obj.GetName())
			want := as[apiextensionsv1.CustomResourceDefinition](t, obj)
			require.Equal(t, want.Spec.Versions[0].Schema, have.Spec.Versions[0].Schema, "CRD %s differs from the installed one", obj.GetName())
			continue
		}
		err := k8s.Create(t.Context(), obj)
		if obj.GetKind() == "Namespace" && apierrors.IsAlreadyExists(err) {
			continue
		}
		require.NoError(t, err, "create %s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
		if obj.GetNamespace() == "" && obj.GetKind() != "Namespace" {
			// t.Context() is done by the time cleanups run.
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
		}
	}
}

// secretValue reads key of Secret ns/name, as `kubectl get secret` does.
func secretValue(t testing.TB, ns, name, key string) string {
	t.Helper()
	s := &corev1.Secret{}
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s))
	v, ok := s.Data[key]
	require.True(t, ok, "secret %s/%s has no key %q", ns, name, key)
	return string(v)
}

// generatedRules are the operator's rules `make manifests` writes into
// deploy/rbac/role.yaml: the ClusterRole's, then the namespaced Role's.
func generatedRules(t testing.TB) (cluster, namespaced []rbacv1.PolicyRule) {
	t.Helper()
	m := decode(t, must(os.ReadFile(filepath.Join(repoRoot(), "deploy", "rbac", "role.yaml"))))
	return one[rbacv1.ClusterRole](t, m, "ClusterRole").Rules, one[rbacv1.Role](t, m, "Role").Rules
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
