package operator_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/operator"
)

// TestDeployedRBACSuffices runs the operator with exactly the rights that
// deploy/ grants it: the generated ClusterRole (deploy/rbac/role.yaml)
// bound to its ServiceAccount as deploy/kustomize/all-namespaces does, with the
// namespaced Role for the join token Secret, every API call made as that
// ServiceAccount. With leader election, the join token Secret is created
// and a proplet joins with it, a WasmTask
// runs, one in another namespace is told it is not served, a running one is deleted (finalizer, events) and a FederatedJob
// trains (ConfigMap records, TrainingRounds and ModelCheckpoints with
// owner references); no call is forbidden. A missing RBAC marker fails it.
func TestDeployedRBACSuffices(t *testing.T) {
	ns := newNamespace(t)
	bindDeployedRole(t, ns)
	sa := rest.CopyConfig(restCfg)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":propeller-operator"}

	logs := &syncBuffer{}
	dataDir := t.TempDir()
	op := launchOperator(t, ns, "", dataDir, true, func(c *operator.Config) {
		c.Rest = sa
		c.JoinToken = "" // the operator creates the join token Secret
		c.UnservedInterval = 100 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	op.waitReady(t)
	secret := &corev1.Secret{}
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: operator.JoinTokenSecret}, secret))
	startPropletWithToken(t, op.mqttAddr, "p1", string(secret.Data[operator.JoinTokenKey]), "--slots", "2")
	modules := serveModules(t, "arith", "spin")

	add := newTask(ns, "add", modules+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{2, 3}
	})
	require.NoError(t, k8s.Create(t.Context(), add))
	require.Equal(t, []float64{5}, waitPhase(t, ns, "add", v1.TaskSucceeded).Status.Results)

	spin := newTask(ns, "spin", modules+"/spin.wasm", nil)
	require.NoError(t, k8s.Create(t.Context(), spin))
	require.Eventually(t, func() bool {
		return len(getTask(t, ns, "spin").Finalizers) > 0
	}, 30*time.Second, 50*time.Millisecond, "the finalizer is added after the hold")
	require.NoError(t, k8s.Delete(t.Context(), spin))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(spin), &v1.WasmTask{}))
	}, 30*time.Second, 50*time.Millisecond)

	bs, err := blobs.Open(filepath.Join(dataDir, "blobs"))
	require.NoError(t, err)
	var zero digits.Model
	model, err := zero.Encode(nil)
	require.NoError(t, err)
	modelDigest, err := bs.PutBytes(model)
	require.NoError(t, err)
	wasmDigest, err := bs.PutBytes(exampletest.Build(t, "fl"))
	require.NoError(t, err)
	fj := &v1.FederatedJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "digits"}}
	fj.Spec = v1.FederatedJobSpec{
		ExperimentID: "rbac", ModelRef: wire.BlobScheme + modelDigest, TaskWasmImage: wire.BlobScheme + wasmDigest,
		Participants: []v1.Participant{{PropletID: "p1"}}, KOfN: 1, TimeoutSeconds: 240,
		Rounds: v1.Rounds{Total: 1}, Aggregator: v1.Aggregator{Algorithm: "fedavg"},
		Hyperparams: &apiextensionsv1.JSON{Raw: []byte(`{"lr":0.5,"epochs":1,"batch_size":16}`)},
	}
	require.NoError(t, k8s.Create(t.Context(), fj))
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), got))
		return got.Status.Phase == v1.FLSucceeded && got.Status.LatestCheckpoint != ""
	}, 3*time.Minute, 200*time.Millisecond)
	cps := &v1.ModelCheckpointList{}
	require.NoError(t, k8s.List(t.Context(), cps, client.InNamespace(ns)))
	require.Len(t, cps.Items, 1)

	// A WasmTask elsewhere is listed and told, in its own namespace.
	other := newNamespace(t)
	stray := newTask(other, "stray", modules+"/arith.wasm", nil)
	require.NoError(t, k8s.Create(t.Context(), stray))
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(eventNotes(t, other, "stray"), func(e string) bool {
			return strings.HasPrefix(e, operator.ReasonNamespaceNotServed+": ")
		})
	}, 30*time.Second, 50*time.Millisecond)

	require.NotContains(t, strings.ToLower(logs.String()), "forbidden", "an API call the deployed role does not allow")
}

// bindDeployedRole installs deploy/'s ClusterRole and binds it to the
// propeller-operator ServiceAccount of ns, under names unique to ns.
func bindDeployedRole(t *testing.T, ns string) {
	t.Helper()
	// role.yaml: the ClusterRole, then the Role kustomize puts in the
	// operator's namespace (the join token Secret).
	f, err := os.Open(filepath.Join("..", "deploy", "rbac", "role.yaml"))
	require.NoError(t, err)
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	role := &rbacv1.ClusterRole{}
	require.NoError(t, dec.Decode(role))
	require.Equal(t, "ClusterRole", role.Kind)
	require.Equal(t, "propeller-operator", role.Name)
	role.Name = "propeller-operator-" + ns
	require.NoError(t, k8s.Create(t.Context(), role))
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), role) })
	nsRole := &rbacv1.Role{}
	require.NoError(t, dec.Decode(nsRole))
	require.Equal(t, "Role", nsRole.Kind)
	nsRole.Namespace = ns
	require.NoError(t, k8s.Create(t.Context(), nsRole))
	require.ErrorIs(t, dec.Decode(&rbacv1.Role{}), io.EOF, "role.yaml has more than the two roles this test binds")

	// deploy/kustomize/base: the ServiceAccount and its RoleBinding;
	// all-namespaces: the ClusterRoleBinding.
	f, err = os.Open(filepath.Join("..", "deploy", "kustomize", "base", "rbac.yaml"))
	require.NoError(t, err)
	defer f.Close()
	dec = utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var sa corev1.ServiceAccount
	require.NoError(t, dec.Decode(&sa))
	var nsBinding rbacv1.RoleBinding
	require.NoError(t, dec.Decode(&nsBinding))
	f, err = os.Open(filepath.Join("..", "deploy", "kustomize", "all-namespaces", "clusterrolebinding.yaml"))
	require.NoError(t, err)
	defer f.Close()
	var binding rbacv1.ClusterRoleBinding
	require.NoError(t, utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&binding))
	require.Equal(t, "ServiceAccount", sa.Kind)
	require.Equal(t, "ClusterRoleBinding", binding.Kind)
	require.Equal(t, "RoleBinding", nsBinding.Kind)
	for _, rb := range []struct {
		ref      rbacv1.RoleRef
		subjects []rbacv1.Subject
	}{{binding.RoleRef, binding.Subjects}, {nsBinding.RoleRef, nsBinding.Subjects}} {
		require.Equal(t, "propeller-operator", rb.ref.Name)
		require.Len(t, rb.subjects, 1)
		require.Equal(t, sa.Name, rb.subjects[0].Name)
	}
	require.Equal(t, nsRole.Name, nsBinding.RoleRef.Name)

	sa.Namespace = ns
	require.NoError(t, k8s.Create(t.Context(), &sa))
	binding.Name = "propeller-operator-" + ns
	binding.RoleRef.Name = role.Name
	binding.Subjects[0].Namespace = ns
	require.NoError(t, k8s.Create(t.Context(), &binding))
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), &binding) })
	nsBinding.Namespace = ns
	nsBinding.Subjects[0].Namespace = ns
	require.NoError(t, k8s.Create(t.Context(), &nsBinding))
}
