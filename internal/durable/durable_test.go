package durable_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/internal/durable"
)

func TestWriteTemp(t *testing.T) {
	dir := t.TempDir()
	name, err := durable.WriteTemp(dir, ".x-*", []byte("hello"), 0o600)
	require.NoError(t, err)
	require.Equal(t, dir, filepath.Dir(name))
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	require.Equal(t, "hello", string(b))
	st, err := os.Stat(name)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.NoError(t, durable.SyncDir(dir))

	_, err = durable.WriteTemp(filepath.Join(dir, "missing"), ".x-*", nil, 0o600)
	require.Error(t, err)
	require.Error(t, durable.SyncDir(filepath.Join(dir, "missing")))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing left behind by the failure")
}
