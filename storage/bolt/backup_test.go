package bolt_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
)

// A backup taken while writers keep writing opens as a store holding at
// least every task committed before it started, each one whole.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{})
	require.NoError(t, err)
	defer s.Close()
	mk := func(i int) orchestration.Task {
		return orchestration.Task{ID: fmt.Sprintf("t%06d", i), Spec: orchestration.TaskSpec{Name: fmt.Sprintf("n%d", i), Image: "oci://r/m:1"},
			Status: orchestration.TaskStatus{Phase: orchestration.PhasePending, CreatedAt: time.Unix(0, 0)}}
	}
	for i := range 200 {
		require.NoError(t, s.CreateTask(ctx, mk(i)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writers go on during the backup
		defer wg.Done()
		for i := 200; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			require.NoError(t, s.CreateTask(ctx, mk(i)))
		}
	}()
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.EqualValues(t, buf.Len(), n)

	path := filepath.Join(t.TempDir(), "restored.db")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	r, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Check())
	for i := range 200 {
		got, err := r.GetTask(ctx, mk(i).ID)
		require.NoError(t, err)
		require.Equal(t, mk(i).Spec.Name, got.Spec.Name)
	}
}
