package install_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The edge build (make build-edge) offers only what it can run: no
// `manager operator` in its help, and the command does not exist.
func TestEdgeBuildHelp(t *testing.T) {
	edge := filepath.Join(t.TempDir(), "propeller-edge")
	cmd := exec.Command("go", "build", "-tags", "noperator", "-o", edge, "./cmd/propeller")
	cmd.Dir = repoRoot()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	help := string(run(t, edge, "--help"))
	require.Contains(t, help, "propeller manager standalone")
	require.Contains(t, help, "propeller proplet")
	require.NotContains(t, help, "manager operator")
	manager := string(run(t, edge, "manager", "--help"))
	require.Contains(t, manager, "standalone")
	require.Contains(t, manager, "no Kubernetes operator")
	require.NotContains(t, manager, "operator  ")

	out, err = exec.Command(edge, "manager", "operator").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `unknown command "operator"`)

	full := string(run(t, harnessBinary(), "--help"))
	require.Contains(t, full, "propeller manager operator", "the full build lists it")
}
