package v1alpha1_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGeneratedUpToDate regenerates deepcopy, CRDs and RBAC with the
// controller-gen version the Makefile pins and fails when the committed
// output differs: run `make generate manifests` and commit.
func TestGeneratedUpToDate(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^CONTROLLER_TOOLS_VERSION := (\S+)$`).FindSubmatch(mk)
	require.NotNil(t, m, "Makefile pins CONTROLLER_TOOLS_VERSION")
	gen := "sigs.k8s.io/controller-tools/cmd/controller-gen@" + string(m[1])

	tmp := t.TempDir()
	dirs := map[string]string{"object": "object", "crd": "crd", "rbac": "rbac"}
	for _, d := range dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(tmp, d), 0o755))
	}
	run := func(args ...string) {
		cmd := exec.Command("go", append([]string{"run", gen}, args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	run("object:headerFile=hack/boilerplate.go.txt", "paths=./api/...", "output:object:dir="+filepath.Join(tmp, "object"))
	run("crd:allowDangerousTypes=true", "paths=./api/...", "output:crd:dir="+filepath.Join(tmp, "crd"))
	run("rbac:roleName=propeller-operator", "paths=./operator/...", "output:rbac:dir="+filepath.Join(tmp, "rbac"))

	compare := func(gotDir, wantDir string) {
		entries, err := os.ReadDir(gotDir)
		require.NoError(t, err)
		require.NotEmpty(t, entries)
		for _, e := range entries {
			got, err := os.ReadFile(filepath.Join(gotDir, e.Name()))
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(wantDir, e.Name()))
			require.NoError(t, err, "%s is not committed: run make generate manifests", e.Name())
			require.Equal(t, string(got), string(want), "%s is stale: run make generate manifests", e.Name())
		}
	}
	compare(filepath.Join(tmp, "object"), filepath.Join(root, "api", "v1alpha1"))
	compare(filepath.Join(tmp, "crd"), filepath.Join(root, "deploy", "crd"))
	compare(filepath.Join(tmp, "rbac"), filepath.Join(root, "deploy", "rbac"))
}
