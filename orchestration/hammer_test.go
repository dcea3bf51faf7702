package orchestration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
)

// chanDispatcher hands start commands to simulated proplets.
type chanDispatcher struct{ starts chan orchestration.Task }

func (d *chanDispatcher) StartTask(_ context.Context, _ string, t orchestration.Task, _ orchestration.StartWindow) error {
	d.starts <- t
	return nil
}

func (d *chanDispatcher) StopTask(context.Context, string, string, int, string) error { return nil }

// TestEngineHammer drives the engine from many goroutines at once:
// submissions, proplet events (with duplicates and stale attempts),
// cancellations, proplets dropping and rejoining, and clock ticks. Run
// under -race it checks the locking; at the end every task must be in
// exactly one terminal phase and no slot may leak.
func TestEngineHammer(t *testing.T) {
	const (
		tasks    = 600
		proplets = 4
		workers  = 4
	)
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	disp := &chanDispatcher{starts: make(chan orchestration.Task, tasks*8)}
	store := memory.New()
	eng, err := orchestration.New(orchestration.Config{
		Policy:           orchestration.PolicyLeastLoaded,
		HeartbeatTimeout: 10 * time.Second,
		DefaultTimeout:   20 * time.Second,
		DeadlineGrace:    time.Second,
		BackoffBase:      time.Millisecond,
		BackoffMax:       time.Millisecond,
	}, orchestration.Deps{Store: store, Dispatcher: disp, Clock: clock, Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, eng.Recover(ctx))

	up := func(i int) {
		require.NoError(t, eng.PropletUp(ctx, orchestration.Proplet{ID: fmt.Sprintf("p%d", i), Slots: 8, Instance: "x"}))
	}
	for i := range proplets {
		up(i)
	}

	var successes atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				var task orchestration.Task
				select {
				case task = <-disp.starts:
				case <-done:
					return
				}
				ev := orchestration.TaskEvent{TaskID: task.ID, Attempt: task.Status.Attempt, PropletID: task.Status.PropletID}
				ev.Type = orchestration.EventRunning
				_, err := eng.RecordEvent(ctx, ev)
				require.NoError(t, err)
				ev.Type = orchestration.EventSucceeded
				if rng.IntN(10) == 0 {
					ev.Type, ev.Reason = orchestration.EventFailed, "Trap"
				}
				repeats := 1 + rng.IntN(2)
				for range repeats {
					ok, err := eng.RecordEvent(ctx, ev)
					require.NoError(t, err)
					if ok && ev.Type == orchestration.EventSucceeded {
						successes.Add(1)
					}
				}
				stale := ev
				stale.Attempt--
				stale.Type = orchestration.EventSucceeded
				ok, err := eng.RecordEvent(ctx, stale)
				require.NoError(t, err)
				require.False(t, ok, "stale attempt applied")
			}
		}()
	}

	ids := make(chan string, tasks)
	var submitters sync.WaitGroup
	for s := range 3 {
		submitters.Add(1)
		go func() {
			defer submitters.Done()
			for range tasks / 3 {
				task, err := eng.Submit(ctx, orchestration.TaskSpec{Image: "oci://r/x", MaxAttempts: 3, Labels: map[string]string{"s": fmt.Sprint(s)}})
				require.NoError(t, err)
				ids <- task.ID
			}
		}()
	}

	submitted := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-submitted:
				if i > 200 {
					return
				}
			default:
			}
			switch rng.IntN(4) {
			case 0:
				require.NoError(t, eng.PropletDown(ctx, fmt.Sprintf("p%d", rng.IntN(proplets))))
			case 1:
				up(rng.IntN(proplets))
			case 2:
				select {
				case id := <-ids:
					_, err := eng.Stop(ctx, id, "chaos")
					if err != nil {
						require.ErrorIs(t, err, orchestration.ErrTerminal)
					}
					ids <- id
				default:
				}
			case 3:
				clock.Advance(500 * time.Millisecond)
				for p := range proplets {
					require.NoError(t, eng.Heartbeat(ctx, orchestration.Heartbeat{PropletID: fmt.Sprintf("p%d", p)}))
				}
				eng.Tick(ctx)
			}
		}
	}()
	submitters.Wait()
	close(submitted)
	<-chaosDone

	// Let everything settle: all proplets up, time moves on, deadlines
	// clean up what the chaos orphaned.
	require.Eventually(t, func() bool {
		for i := range proplets {
			up(i)
		}
		clock.Advance(2 * time.Second)
		eng.Tick(ctx)
		page, err := eng.List(ctx, orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhasePending, orchestration.PhaseScheduled, orchestration.PhaseRunning}, Limit: 1})
		require.NoError(t, err)
		return len(page.Tasks) == 0
	}, 60*time.Second, 5*time.Millisecond)
	close(done)
	wg.Wait()

	counts := map[orchestration.Phase]int{}
	f := orchestration.TaskFilter{Limit: 1000}
	for {
		page, err := eng.List(ctx, f)
		require.NoError(t, err)
		for _, task := range page.Tasks {
			require.True(t, task.Status.Phase.Terminal(), task.ID)
			require.LessOrEqual(t, task.Status.Attempt, 3)
			require.NotEmpty(t, task.Status.Reason, "every terminal state has a reason")
			counts[task.Status.Phase]++
		}
		if page.Continue == "" {
			break
		}
		f.Continue = page.Continue
	}
	require.Equal(t, tasks, counts[orchestration.PhaseSucceeded]+counts[orchestration.PhaseFailed]+counts[orchestration.PhaseCancelled])
	require.Equal(t, int64(counts[orchestration.PhaseSucceeded]), successes.Load(), "each success recorded exactly once")
	ps, err := eng.Proplets(ctx)
	require.NoError(t, err)
	for _, p := range ps {
		require.Empty(t, p.Running, "slot leak on %s", p.ID)
	}
	t.Logf("phases: %v", counts)
}
