package proplet

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDir(dir)
	require.NoError(t, err)
	pid, err := os.ReadFile(filepath.Join(dir, lockName))
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(pid))

	_, err = lockDir(dir)
	require.ErrorContains(t, err, "cache dir "+dir+" is in use by another proplet")
	require.ErrorContains(t, err, "process "+strconv.Itoa(os.Getpid()))

	release()
	again, err := lockDir(dir)
	require.NoError(t, err, "a released lock is free again")
	again()
}

func TestRunRefusesHeldDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDir(dir)
	require.NoError(t, err)
	defer release()
	err = Run(context.Background(), Config{ID: "p1", Token: "t", BrokerURL: "mqtt://127.0.0.1:1", CacheDir: dir, Slots: 1})
	require.ErrorContains(t, err, dir)
	require.ErrorContains(t, err, "in use by another proplet")

	require.ErrorContains(t, Run(context.Background(), Config{ID: "p1"}), "cache dir is required")
}
