package operator_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/absmach/propeller/orchestration"
)

// TestCRDMirrorsTaskLimits reads the generated WasmTask CRD: its schema
// must carry orchestration's limits, so a stale deploy/crd (markers edited
// without `make manifests`) or markers drifting from limits.go fail here.
func TestCRDMirrorsTaskLimits(t *testing.T) {
	raw, err := os.ReadFile("../deploy/crd/propeller.absmach.io_wasmtasks.yaml")
	require.NoError(t, err)
	var crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(raw, &crd))
	require.Len(t, crd.Spec.Versions, 1)
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties
	i64 := func(v int64) *int64 { return &v }
	require.Equal(t, i64(orchestration.MaxImageLength), spec["imageUrl"].MaxLength, "imageUrl")
	require.Equal(t, i64(orchestration.MaxNameLength), spec["displayName"].MaxLength, "displayName")
	require.Equal(t, i64(orchestration.MaxFunctionLength), spec["function"].MaxLength, "function")
	require.Equal(t, i64(orchestration.MaxInputs), spec["inputs"].MaxItems, "inputs")
	require.Equal(t, i64(orchestration.MaxArgs), spec["cliArgs"].MaxItems, "cliArgs")
	require.Equal(t, i64(orchestration.MaxEnv), spec["env"].MaxProperties, "env")
	require.Equal(t, i64(orchestration.MaxLabels), spec["labels"].MaxProperties, "labels")
	require.Equal(t, i64(orchestration.MaxLabels), spec["selector"].MaxProperties, "selector")
	require.NotNil(t, spec["timeoutSeconds"].Maximum)
	require.EqualValues(t, orchestration.MaxTimeout.Seconds(), *spec["timeoutSeconds"].Maximum, "timeoutSeconds")
	require.NotNil(t, spec["maxAttempts"].Maximum)
	require.EqualValues(t, orchestration.MaxAttemptsLimit, *spec["maxAttempts"].Maximum, "maxAttempts")
}
