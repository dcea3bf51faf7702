package operator

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// resources.requests.memory is where a task may run, limits.memory caps
// its linear memory unless memoryPages does; the engine's view written
// back leaves a user's resources block as it was (no spec write).
func TestMemoryMapping(t *testing.T) {
	spec := func(req, lim string, pages int64) v1.WasmTaskSpec {
		sp := v1.WasmTaskSpec{ImageURL: "oci://r/m:v1", MemoryPages: pages, Resources: &v1.WasmResources{
			Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{},
		}}
		if req != "" {
			sp.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(req)
		}
		if lim != "" {
			sp.Resources.Limits[corev1.ResourceMemory] = resource.MustParse(lim)
		}
		sp.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
		return sp
	}
	for _, tc := range []struct {
		name      string
		sp        v1.WasmTaskSpec
		wantBytes int64
		wantPages uint32
	}{
		{"the README's request", spec("128Mi", "", 0), 128 << 20, 0},
		{"limit in pages, rounded up", spec("", "100Ki", 0), 0, 2},
		{"memoryPages wins over the limit", spec("64Mi", "1Gi", 16), 64 << 20, 16},
		{"limit past 4 GiB caps at the maximum", spec("", "8Gi", 0), 0, 65536},
		{"none", v1.WasmTaskSpec{ImageURL: "oci://r/m:v1"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &v1.WasmTask{Spec: tc.sp}
			obj.Status.Phase = v1.TaskPending // admitted
			task := toTask(obj)
			require.Equal(t, tc.wantBytes, task.Spec.MemoryBytes)
			require.Equal(t, tc.wantPages, task.Spec.MemoryPages)

			next := obj.DeepCopy()
			applySpec(next, task.Spec)
			require.True(t, equality.Semantic.DeepEqual(obj.Spec, next.Spec), "round trip changed the spec: %+v", next.Spec)
		})
	}

	// An engine-made task (no object yet) carries its request into the
	// object, and reads back the same.
	made := &v1.WasmTask{}
	applySpec(made, orchestration.TaskSpec{Image: "oci://r/m:v1", MemoryBytes: 256 << 20, MemoryPages: 32})
	made.Status.Phase = v1.TaskPending
	back := toTask(made).Spec
	require.EqualValues(t, 256<<20, back.MemoryBytes)
	require.EqualValues(t, 32, back.MemoryPages)
	q := made.Spec.Resources.Requests[corev1.ResourceMemory]
	require.Equal(t, "256Mi", q.String())
}
