// Package fltest is the conformance suite every fl.Store passes.
package fltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// TestStore runs the suite; newStore returns an empty store per subtest.
func TestStore(t *testing.T, newStore func(t *testing.T) fl.Store) {
	ctx := context.Background()
	job := func(id string) fl.Job {
		return fl.Job{ID: id, Spec: fl.JobSpec{ModelRef: wire.BlobScheme + "sha256:00", Rounds: fl.Rounds{Total: 3},
			Hyperparams: map[string]any{"lr": 0.1}},
			Status: fl.JobStatus{Phase: fl.JobRunning, CurrentRound: 1, CreatedAt: time.Unix(100, 0).UTC()}}
	}

	t.Run("create get list", func(t *testing.T) {
		s := newStore(t)
		_, err := s.GetJob(ctx, "a")
		require.ErrorIs(t, err, orchestration.ErrNotFound)
		jobs, err := s.ListJobs(ctx)
		require.NoError(t, err)
		require.Empty(t, jobs)
		for _, id := range []string{"b", "a", "c"} {
			require.NoError(t, s.CreateJob(ctx, job(id)))
		}
		require.ErrorIs(t, s.CreateJob(ctx, job("a")), orchestration.ErrExists)
		require.ErrorIs(t, s.CreateJob(ctx, job("")), orchestration.ErrInvalid)
		got, err := s.GetJob(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, job("a"), got)
		jobs, err = s.ListJobs(ctx)
		require.NoError(t, err)
		require.Len(t, jobs, 3)
		for i, id := range []string{"a", "b", "c"} {
			require.Equal(t, id, jobs[i].ID)
		}
	})

	t.Run("update", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.CreateJob(ctx, job("a")))
		got, err := s.UpdateJob(ctx, "a", func(j *fl.Job) error {
			j.Status.Rounds = append(j.Status.Rounds, fl.Round{Number: 1, ID: "1", Phase: fl.RoundRunning,
				Updates: []fl.AcceptedUpdate{{TaskID: "t", NumSamples: 5, Metrics: map[string]float64{"loss": 0.5}}}})
			return nil
		})
		require.NoError(t, err)
		require.Len(t, got.Status.Rounds, 1)
		again, err := s.GetJob(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, got, again)

		// No change and errors leave the record alone.
		_, err = s.UpdateJob(ctx, "a", func(j *fl.Job) error {
			j.Status.CurrentRound = 9
			return orchestration.ErrNoChange
		})
		require.NoError(t, err)
		boom := errors.New("boom")
		_, err = s.UpdateJob(ctx, "a", func(j *fl.Job) error {
			j.Status.CurrentRound = 9
			return boom
		})
		require.ErrorIs(t, err, boom)
		again, err = s.GetJob(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, 1, again.Status.CurrentRound)

		_, err = s.UpdateJob(ctx, "missing", func(*fl.Job) error { return nil })
		require.ErrorIs(t, err, orchestration.ErrNotFound)
	})

	t.Run("stored copies are independent", func(t *testing.T) {
		s := newStore(t)
		j := job("a")
		require.NoError(t, s.CreateJob(ctx, j))
		j.Spec.Hyperparams["lr"] = 9.0
		got, err := s.GetJob(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, 0.1, got.Spec.Hyperparams["lr"])
	})

	t.Run("concurrent updates are atomic", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.CreateJob(ctx, job("a")))
		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.UpdateJob(ctx, "a", func(j *fl.Job) error {
					j.Status.Rejected = append(j.Status.Rejected, fl.Rejection{TaskID: fmt.Sprint(i)})
					j.Status.RejectedTotal++
					return nil
				})
				require.NoError(t, err)
			}()
		}
		wg.Wait()
		got, err := s.GetJob(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, n, got.Status.RejectedTotal)
		require.Len(t, got.Status.Rejected, n)
	})
}
