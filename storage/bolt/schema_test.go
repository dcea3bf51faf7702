package bolt_test

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/storetest"
)

// fileSchema reads the schema marker straight from a closed file.
func fileSchema(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	var v uint64
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		v = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema")))
		return nil
	}))
	return v
}

// TestSchemaUpgrade opens a file written by the current layout with a
// build one version newer (simulated): the migration runs once, in the
// open, the tasks survive, and the older build then refuses the file.
func TestSchemaUpgrade(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "propeller.db")
	s := openT(t, path)
	want := storetest.NewTask("t-1", orchestration.PhaseSucceeded)
	require.NoError(t, s.CreateTask(ctx, want))
	require.NoError(t, s.Close())
	require.Equal(t, uint64(1), fileSchema(t, path), "a new file carries the current schema")

	// A failing migration leaves the file as it was.
	restore := bolt.SetSchema(2, map[uint64]func(*bbolt.Tx) error{1: func(*bbolt.Tx) error { return errors.New("disk says no") }})
	_, err := bolt.Open(path, bolt.Options{})
	require.ErrorContains(t, err, "migrate schema 1 to 2: disk says no")
	restore()
	require.Equal(t, uint64(1), fileSchema(t, path))

	runs := 0
	restore = bolt.SetSchema(2, map[uint64]func(*bbolt.Tx) error{1: func(tx *bbolt.Tx) error {
		runs++
		// What a real migration does: rewrite records in place.
		b := tx.Bucket([]byte("tasks"))
		n := b.Stats().KeyN
		return tx.Bucket([]byte("meta")).Put([]byte("migrated-tasks"), binary.BigEndian.AppendUint64(nil, uint64(n)))
	}})
	for range 2 {
		s = openT(t, path)
		got, err := s.GetTask(ctx, "t-1")
		require.NoError(t, err)
		require.Equal(t, want.ID, got.ID)
		require.Equal(t, orchestration.PhaseSucceeded, got.Status.Phase)
		require.NoError(t, s.Check())
		require.NoError(t, s.Close())
	}
	require.Equal(t, 1, runs, "a migration runs once, on the first open")
	require.Equal(t, uint64(2), fileSchema(t, path))
	restore()

	// The older build meets a file of the newer one.
	_, err = bolt.Open(path, bolt.Options{})
	require.ErrorIs(t, err, bolt.ErrNewerSchema)
	require.ErrorContains(t, err, "its schema is 2, this propeller reads schema 1 at most")
}

// TestSchemaWithoutMigration refuses a file two versions back when one
// step has no migration, naming the missing step.
func TestSchemaWithoutMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "propeller.db")
	require.NoError(t, openT(t, path).Close())
	defer bolt.SetSchema(3, map[uint64]func(*bbolt.Tx) error{1: func(*bbolt.Tx) error { return nil }})()
	_, err := bolt.Open(path, bolt.Options{})
	require.ErrorContains(t, err, "no migration from schema 2 to 3")
}
