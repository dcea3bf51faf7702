package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/storetest"
)

func openT(t testing.TB, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestration.Store {
		s := openT(t, filepath.Join(t.TempDir(), "propeller.db"))
		t.Cleanup(func() {
			// Every case must leave the indexes exactly in line with the
			// records.
			require.NoError(t, s.Check())
			require.NoError(t, s.Close())
		})
		return s
	})
}
