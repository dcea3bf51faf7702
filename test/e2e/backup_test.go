package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/test/harness"
)

// A backup taken from a running manager, by the SDK and by the CLI, is a
// database a new manager starts on with every task of the original.
func TestBackupRestores(t *testing.T) {
	s := harness.NewSystem(t)
	s.StartManager()
	ctx := context.Background()
	want := map[string]string{}
	for _, name := range []string{"a", "b", "c", "d"} {
		task := s.Create(rest.TaskRequest{Name: name, Suspend: true})
		want[task.ID] = name
	}

	var buf bytes.Buffer
	n, err := s.Client.Backup(ctx, &buf)
	require.NoError(t, err)
	require.EqualValues(t, buf.Len(), n)
	require.Positive(t, n)

	file := filepath.Join(t.TempDir(), "backup.db")
	e := newCLIEnv(t)
	r := e.expect(0, []string{"backup", "--out", file, "--server", s.URL, "--token-file", filepath.Join(s.DataDir, "api-token"), "-o", "name"}, []string{file}, nil)
	require.Empty(t, r.stderr)
	e.expect(2, []string{"backup", "--server", s.URL}, nil, []string{"--out FILE is required"})
	e.expect(1, []string{"backup", "--out", filepath.Join(t.TempDir(), "x.db"), "--server", s.URL, "--token", "wrong"}, nil, []string{"error: "})
	s.Manager.Kill()

	for _, db := range [][]byte{buf.Bytes(), mustRead(t, file)} {
		restored := harness.NewSystem(t)
		require.NoError(t, os.WriteFile(filepath.Join(restored.DataDir, "propeller.db"), db, 0o600))
		restored.StartManager()
		got := map[string]string{}
		for task, err := range restored.Client.Tasks(ctx, rest.TaskFilter{}) {
			require.NoError(t, err)
			got[task.ID] = task.Name
		}
		require.Equal(t, want, got)
		restored.Manager.Kill()
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
