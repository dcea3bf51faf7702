package install_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/operator"
)

// operatorPod runs m's Deployment (created on the API server already) as
// the operator process, with its ServiceAccount's rights, until ready;
// in-cluster clients of its Services reach it through k.
func operatorPod(t *testing.T, k *kubelet, m manifest) *container {
	t.Helper()
	op := k.run(t, "operator", m.deployment(t).Spec.Template.Spec)
	op.waitReady(t)
	k.route(t, m, op)
	return op
}

// propletOutside starts a proplet as a person does from NOTES.txt: the
// broker address and the token, and --tls-ca for an mqtts:// broker.
func propletOutside(t *testing.T, broker, token, id string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"proplet", "--broker", broker, "--token", token, "--id", id,
		"--cache-dir", t.TempDir(), "--heartbeat-interval", "1s"}, extra...)
	return start(t, "proplet-"+id, []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}, args...)
}

// runTask applies a WasmTask that adds 2 and 3 and waits for Succeeded;
// it returns the proplet that ran it.
func runTask(t *testing.T, ns, name string, selector map[string]string) string {
	t.Helper()
	wasm := exampletest.Build(t, "arith")
	built := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "arith.wasm", built, bytes.NewReader(wasm))
	}))
	t.Cleanup(srv.Close)
	wt := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	wt.Spec.ImageURL = srv.URL + "/arith.wasm"
	wt.Spec.Function = "add"
	wt.Spec.Inputs = []float64{2, 3}
	wt.Spec.Selector = selector
	require.NoError(t, k8s.Create(t.Context(), wt))
	got := &v1.WasmTask{}
	require.Eventually(t, func() bool {
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(wt), got))
		require.NotEqual(t, v1.TaskFailed, got.Status.Phase, "task failed: %s %s", got.Status.Reason, got.Status.Message)
		return got.Status.Phase == v1.TaskSucceeded
	}, 2*time.Minute, 100*time.Millisecond, "WasmTask %s/%s never succeeded", ns, name)
	require.Equal(t, []float64{5}, got.Status.Results)
	return got.Status.PropletID
}

// runFederatedJob trains one FedAvg round of the digits model on proplet
// and waits for its checkpoint. The models go into the operator's blob
// store (dataDir, its --data-dir volume) as an upload would put them.
func runFederatedJob(t *testing.T, ns, dataDir, proplet string) {
	t.Helper()
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
		ExperimentID: "install", ModelRef: wire.BlobScheme + modelDigest, TaskWasmImage: wire.BlobScheme + wasmDigest,
		Participants: []v1.Participant{{PropletID: proplet}}, KOfN: 1, TimeoutSeconds: 240,
		Rounds: v1.Rounds{Total: 1}, Aggregator: v1.Aggregator{Algorithm: "fedavg"},
		Hyperparams: &apiextensionsv1.JSON{Raw: []byte(`{"lr":0.5,"epochs":1,"batch_size":16}`)},
	}
	require.NoError(t, k8s.Create(t.Context(), fj))
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), got))
		require.NotEqual(t, v1.FLFailed, got.Status.Phase, "FederatedJob failed")
		return got.Status.Phase == v1.FLSucceeded && got.Status.LatestCheckpoint != ""
	}, 4*time.Minute, 200*time.Millisecond, "FederatedJob never succeeded")
	cps := &v1.ModelCheckpointList{}
	require.NoError(t, k8s.List(t.Context(), cps, client.InNamespace(ns)))
	require.Len(t, cps.Items, 1)
}

// canI answers `kubectl auth can-i VERB RESOURCE -n NS` for the
// ServiceAccount: a SelfSubjectAccessReview made while impersonating it.
func canI(t *testing.T, saNS, sa, verb, resource, group, ns string) bool {
	t.Helper()
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: serviceAccountUser(saNS, sa), Groups: serviceAccountGroups(saNS)}
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme()})
	require.NoError(t, err)
	r := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource},
	}}
	require.NoError(t, c.Create(t.Context(), r))
	return r.Status.Allowed
}

// requireLeastPrivilege: the operator's ServiceAccount may run tasks in
// its namespace and nothing in kube-system or cluster-wide, and the
// operator never hit a refusal.
func requireLeastPrivilege(t *testing.T, ns, sa string, op *container) {
	t.Helper()
	require.True(t, canI(t, ns, sa, "update", "wasmtasks/status", v1.GroupVersion.Group, ns), "its own namespace")
	require.False(t, canI(t, ns, sa, "create", "configmaps", "", "kube-system"), "can-i create configmaps -n kube-system")
	require.False(t, canI(t, ns, sa, "list", "wasmtasks", v1.GroupVersion.Group, ""), "cluster-wide")
	require.False(t, canI(t, ns, sa, "list", "secrets", "", ns), "secrets of its namespace")
	require.NotContains(t, strings.ToLower(op.proc.output()), "forbidden", "an API call its Role does not allow")
}

// normalized sorts rules and their lists, for comparing roles written in
// different orders.
func normalized(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(rules))
	for i, r := range rules {
		r = *r.DeepCopy()
		for _, l := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			slices.Sort(l)
		}
		out[i] = r
	}
	slices.SortFunc(out, func(a, b rbacv1.PolicyRule) int {
		return strings.Compare(strings.Join(a.Resources, ",")+strings.Join(a.Verbs, ","), strings.Join(b.Resources, ",")+strings.Join(b.Verbs, ","))
	})
	return out
}
