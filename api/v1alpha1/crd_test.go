package v1alpha1_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

var (
	k8s    client.Client
	scheme = runtime.NewScheme()
)

// TestMain runs one real kube-apiserver + etcd (KUBEBUILDER_ASSETS, built
// by `make envtest`) with the generated CRDs installed.
func TestMain(m *testing.M) {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "deploy", "crd")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		panic("start envtest (run `make envtest` and set KUBEBUILDER_ASSETS=$PWD/bin/k8s): " + err.Error())
	}
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// decode reads a typed object from YAML the way kubectl apply would send it.
func decode(t *testing.T, path string) client.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(b, nil, nil)
	require.NoError(t, err)
	co, ok := obj.(client.Object)
	require.True(t, ok)
	co.SetNamespace("default")
	return co
}

// TestSeedExamplesApply applies the operator README's YAML verbatim: its
// kinds, group and field names are the user contract.
func TestSeedExamplesApply(t *testing.T) {
	cases := []struct {
		file  string
		check func(t *testing.T, obj client.Object)
	}{
		{"wasmtask.yaml", func(t *testing.T, obj client.Object) {
			wt := obj.(*v1.WasmTask)
			require.Equal(t, "oci://registry.example.com/wasm/my-app:v1.0.0", wt.Spec.ImageURL)
			require.Equal(t, map[string]string{"KEY": "value"}, wt.Spec.Env)
			require.Equal(t, "128Mi", wt.Spec.Resources.Requests.Memory().String())
			require.Equal(t, "100m", wt.Spec.Resources.Requests.Cpu().String())
		}},
		{"federatedjob.yaml", func(t *testing.T, obj client.Object) {
			fj := obj.(*v1.FederatedJob)
			require.Equal(t, "exp-001", fj.Spec.ExperimentID)
			require.Equal(t, "oci://registry/model:v1", fj.Spec.ModelRef)
			require.Equal(t, "oci://registry/fl-client:latest", fj.Spec.TaskWasmImage)
			require.Equal(t, []v1.Participant{{PropletID: "proplet-1"}}, fj.Spec.Participants)
			require.EqualValues(t, 1, fj.Spec.KOfN)
			require.EqualValues(t, 300, fj.Spec.TimeoutSeconds)
			require.EqualValues(t, 10, fj.Spec.Rounds.Total)
			require.Equal(t, "fedavg", fj.Spec.Aggregator.Algorithm)
		}},
		{"propletgroup.yaml", func(t *testing.T, obj client.Object) {
			pg := obj.(*v1.PropletGroup)
			require.Equal(t, map[string]string{"arch": "arm64"}, pg.Spec.Selector)
		}},
		{"wasmtask-pinned.yaml", func(t *testing.T, obj client.Object) {
			wt := obj.(*v1.WasmTask)
			require.Equal(t, []float64{1, 2}, wt.Spec.Inputs)
			require.Equal(t, "edge-arm", wt.Spec.PropletGroupRef.Name)
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			obj := decode(t, filepath.Join("..", "..", "deploy", "examples", c.file))
			require.NoError(t, k8s.Create(t.Context(), obj))
			t.Cleanup(func() { _ = k8s.Delete(t.Context(), obj) })
			got := obj.DeepCopyObject().(client.Object)
			require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), got))
			c.check(t, got)
		})
	}
}

// TestInvalidObjectsRefused sends objects the schema must refuse, as
// unstructured JSON so fields a typed client would drop (or zero) reach
// the API server as written.
func TestInvalidObjectsRefused(t *testing.T) {
	fj := func(mut func(spec map[string]any)) map[string]any {
		spec := map[string]any{
			"experimentId":  "exp",
			"modelRef":      "oci://registry/model:v1",
			"taskWasmImage": "oci://registry/fl:v1",
			"participants":  []any{map[string]any{"propletId": "p-1"}, map[string]any{"propletId": "p-2"}},
			"kOfN":          int64(2),
			"rounds":        map[string]any{"total": int64(3)},
			"aggregator":    map[string]any{"algorithm": "fedavg"},
		}
		mut(spec)
		return map[string]any{"kind": "FederatedJob", "spec": spec}
	}
	wt := func(mut func(spec map[string]any)) map[string]any {
		spec := map[string]any{"imageUrl": "oci://registry/app:v1"}
		mut(spec)
		return map[string]any{"kind": "WasmTask", "spec": spec}
	}
	cases := []struct {
		name string
		obj  map[string]any
		// want appears in the API server's message.
		want string
	}{
		{"aggregator enum", fj(func(s map[string]any) { s["aggregator"] = map[string]any{"algorithm": "fedmagic"} }),
			`spec.aggregator.algorithm: Unsupported value: "fedmagic"`},
		{"kOfN above participants", fj(func(s map[string]any) { s["kOfN"] = int64(3) }),
			"kOfN must not exceed the number of participants"},
		{"kOfN zero", fj(func(s map[string]any) { s["kOfN"] = int64(0) }),
			"spec.kOfN: Invalid value: 0: spec.kOfN in body should be greater than or equal to 1"},
		{"no participants", fj(func(s map[string]any) { s["participants"] = []any{} }),
			"spec.participants: Invalid value"},
		{"neither participants nor selector", fj(func(s map[string]any) { delete(s, "participants"); delete(s, "kOfN") }),
			"set participants or selector"},
		{"fraction above one", fj(func(s map[string]any) { s["fraction"] = 1.5 }),
			"spec.fraction"},
		{"rounds below one", fj(func(s map[string]any) { s["rounds"] = map[string]any{"total": int64(0)} }),
			"spec.rounds.total"},
		{"fl missing image", fj(func(s map[string]any) { delete(s, "taskWasmImage") }),
			`spec.taskWasmImage: Required value`},
		{"task missing image", wt(func(s map[string]any) { delete(s, "imageUrl") }),
			`spec.imageUrl: Required value`},
		{"task bad image scheme", wt(func(s map[string]any) { s["imageUrl"] = "ftp://x" }),
			"imageUrl must start with oci://"},
		{"task pinned and selected", wt(func(s map[string]any) {
			s["propletId"] = "p-1"
			s["selector"] = map[string]any{"arch": "arm64"}
		}), "set propletId or selector, not both"},
		{"task negative timeout", wt(func(s map[string]any) { s["timeoutSeconds"] = int64(-1) }),
			"spec.timeoutSeconds"},
		{"task bad env key", wt(func(s map[string]any) { s["env"] = map[string]any{"A=B": "c"} }),
			"env keys must be non-empty and contain no '='"},
		{"task attempts above limit", wt(func(s map[string]any) { s["maxAttempts"] = int64(101) }),
			"spec.maxAttempts"},
		{"group without members", map[string]any{"kind": "PropletGroup", "spec": map[string]any{}},
			"set selector or propletIds"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: c.obj}
			u.SetAPIVersion(v1.GroupVersion.String())
			u.SetNamespace("default")
			u.SetName("bad-" + string(rune('a'+i)))
			err := k8s.Create(t.Context(), u)
			require.Error(t, err)
			require.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// TestWasmTaskImageImmutable: the engine ran the image it admitted, so
// the object may not later claim another.
func TestWasmTaskImageImmutable(t *testing.T) {
	ctx := t.Context()
	wt := &v1.WasmTask{}
	wt.Name, wt.Namespace = "immutable", "default"
	wt.Spec.ImageURL = "oci://registry/app:v1"
	require.NoError(t, k8s.Create(ctx, wt))
	wt.Spec.ImageURL = "oci://registry/app:v2"
	err := k8s.Update(ctx, wt)
	require.True(t, apierrors.IsInvalid(err), "got %v", err)
	require.Contains(t, err.Error(), "imageUrl is immutable")
}

// TestSelectableFields: the store lists by phase and proplet on the server.
func TestSelectableFields(t *testing.T) {
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Name: "wasmtasks.propeller.absmach.io"}, crd))
	b, err := yaml.Marshal(crd.Object["spec"])
	require.NoError(t, err)
	require.Contains(t, string(b), "jsonPath: .status.phase")
	require.Contains(t, string(b), "jsonPath: .status.propletId")
}
