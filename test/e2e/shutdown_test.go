package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

// longPrimes is a task of several seconds: examples/cpu counting the
// primes below 50M prints 3001134.
func longPrimes(t *testing.T, ids ...string) rest.TaskRequest {
	return rest.TaskRequest{Name: "long", File: exampletest.Build(t, "cpu"), CLIArgs: []string{"50000000"},
		PropletIDs: ids, MaxAttempts: 3, TimeoutSeconds: 600}
}

func waitPhase(t *testing.T, s *harness.System, id, phase string) rest.Task {
	t.Helper()
	var task rest.Task
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		task, err = s.Client.GetTask(ctx, id)
		return err == nil && task.Phase == phase
	}, 2*time.Minute, 20*time.Millisecond, "task %s never %s: %+v", id, phase, task)
	return task
}

// TestProplet SIGTERM: a proplet asked to stop hands its running attempt
// back (reports it stopped, so the manager retries it elsewhere) and exits
// by itself, cleanly, instead of being killed with the module running.
func TestPropletSIGTERMHandsBack(t *testing.T) {
	s := harness.NewSystem(t)
	s.StartManager()
	a := s.StartProplet("term-a")
	s.WaitAlive("term-a")
	task := s.Create(longPrimes(t, "term-a", "term-b"))
	running := waitPhase(t, s, task.ID, "Running")
	require.Equal(t, "term-a", running.PropletID)

	require.NoError(t, a.Signal(syscall.SIGTERM))
	<-a.Done
	require.Equal(t, 0, a.ExitCode(), "a server stopped by SIGTERM exits cleanly (systemd reads 0 as a clean stop)")
	require.True(t, a.LogContains("agent stopping"))

	s.StartProplet("term-b")
	done := s.Wait(task.ID)
	require.Equal(t, "Succeeded", done.Phase, "%s: %s", done.Reason, done.Message)
	require.Equal(t, "term-b", done.PropletID)
	require.Equal(t, "3001134", strings.TrimSpace(done.Stdout))
	require.Equal(t, 2, done.Attempt, "the handed-back attempt was retried")
}

// TestManagerSIGTERM: the manager asked to stop exits by itself, leaves a
// consistent database, and the result of the attempt that ran on meanwhile
// is recorded once it is back (the proplet holds it in its outbox).
func TestManagerSIGTERMKeepsInFlightResults(t *testing.T) {
	s := harness.NewSystem(t)
	s.StartManager()
	s.StartProplet("drain-a")
	s.WaitAlive("drain-a")
	task := s.Create(longPrimes(t, "drain-a"))
	waitPhase(t, s, task.ID, "Running")

	require.NoError(t, s.Manager.Signal(syscall.SIGTERM))
	<-s.Manager.Done
	require.Equal(t, 0, s.Manager.ExitCode())
	require.True(t, s.Manager.LogContains("shutting down"))

	db, err := bbolt.Open(filepath.Join(s.DataDir, "propeller.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	require.NoError(t, err, "the manager released its database")
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}))
	require.NoError(t, db.Close())

	s.StartManager()
	done := s.Wait(task.ID)
	require.Equal(t, "Succeeded", done.Phase, "%s: %s", done.Reason, done.Message)
	require.Equal(t, "3001134", strings.TrimSpace(done.Stdout))
	require.Equal(t, 1, done.Attempt, "the attempt that ran through the manager's restart counts")
}
