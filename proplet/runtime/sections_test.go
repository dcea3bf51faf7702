package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadShapeSeesPrivateMemoriesAndTables(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.wasm")
	require.NoError(t, exec.Command("wat2wasm", "../../examples/wat/bigtable.wat", "-o", out).Run())
	wasm := readFile(t, out)
	s, err := readShape(wasm)
	require.NoError(t, err)
	require.Equal(t, []limits{{min: 100000000}}, s.tables)

	bounded, err := boundTables(wasm)
	require.NoError(t, err)
	s, err = readShape(bounded)
	require.NoError(t, err)
	require.Equal(t, []limits{{min: 100000000, max: 100000000, hasMax: true}}, s.tables, "a table above the growth bound may not grow")

	// A cut anywhere is an error or a shorter valid module, never a panic;
	// a cut inside the table section is an error.
	for i := range wasm {
		_, _ = readShape(wasm[:i])
		_, _ = boundTables(wasm[:i])
	}
	secs, err := sections(wasm)
	require.NoError(t, err)
	for _, sec := range secs {
		if sec.id == sectionTable {
			_, err := readShape(wasm[:sec.end-1])
			require.Error(t, err)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
