package bolt_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/orchestration/fl/fltest"
	"github.com/absmach/propeller/storage/bolt"
)

func TestFLStore(t *testing.T) {
	fltest.TestStore(t, func(t *testing.T) fl.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// Jobs survive closing and reopening the file, and FL records do not
// disturb the task store's own consistency check.
func TestFLStoreReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.CreateJob(ctx, fl.Job{ID: "j", Status: fl.JobStatus{Phase: fl.JobRunning}}))
	_, err = s.UpdateJob(ctx, "j", func(j *fl.Job) error {
		j.Status.Checkpoints = append(j.Status.Checkpoints, fl.Checkpoint{Round: 1, Digest: "sha256:ab"})
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer s.Close()
	j, err := s.GetJob(ctx, "j")
	require.NoError(t, err)
	require.Equal(t, "sha256:ab", j.Status.Checkpoints[0].Digest)
	require.NoError(t, s.Check())
}
