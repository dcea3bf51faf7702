package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/absmach/propeller/orchestration"
)

// Benchmarks shared by every store, so their numbers compare like for like.
// They report throughput as a custom metric; none of them asserts a time.

// FinishedTasks returns n tasks as a long-running manager accumulates them:
// 1% still Pending, the rest Succeeded, spread over 10 proplets and 4 apps.
func FinishedTasks(n int) []orchestration.Task {
	out := make([]orchestration.Task, n)
	for i := range n {
		ph := orchestration.PhaseSucceeded
		if i%100 == 0 {
			ph = orchestration.PhasePending
		}
		tk := NewTask(fmt.Sprintf("t-%08d", i), ph)
		tk.Spec.Labels = map[string]string{"app": fmt.Sprintf("app-%d", i%4)}
		if ph != orchestration.PhasePending {
			tk.Status.PropletID = fmt.Sprintf("p-%d", i%10)
			tk.Status.Attempt = 1
			tk.Status.Results = []float64{3}
			tk.Status.StartedAt = base
			tk.Status.FinishedAt = base
			tk.Status.Reason = orchestration.ReasonSucceeded
		}
		out[i] = tk
	}
	return out
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchCreate measures one writer creating tasks back to back: every call
// pays its own commit.
func BenchCreate(b *testing.B, s orchestration.Store) {
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.CreateTask(ctx, NewTask(fmt.Sprintf("c-%09d", i), orchestration.PhasePending)); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "writes/s")
}

// BenchCreateParallel measures creates from parallelism*GOMAXPROCS
// goroutines, where a persistent store can share commits.
func BenchCreateParallel(b *testing.B, s orchestration.Store, parallelism int) {
	ctx := b.Context()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("c-%09d", seq.Add(1))
			if err := s.CreateTask(ctx, NewTask(id, orchestration.PhasePending)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, "writes/s")
}

// transition is one engine-like step: Pending -> Scheduled -> Running ->
// Pending (a retry), touching the phase and proplet indexes each time.
func transition(t *orchestration.Task) error {
	switch t.Status.Phase {
	case orchestration.PhasePending:
		t.Status.Phase = orchestration.PhaseScheduled
		t.Status.PropletID = fmt.Sprintf("p-%d", t.Status.Attempt%10)
		t.Status.Attempt++
	case orchestration.PhaseScheduled:
		t.Status.Phase = orchestration.PhaseRunning
	default:
		t.Status.Phase = orchestration.PhasePending
		t.Status.PropletID = ""
	}
	return nil
}

// BenchUpdate measures UpdateTask transitions over a working set of tasks;
// parallelism 0 means a single caller.
func BenchUpdate(b *testing.B, s orchestration.Store, parallelism int) {
	ctx := b.Context()
	const working = 1024
	// Concurrent setup, so persistent stores share commits here too.
	var wg sync.WaitGroup
	errs := make(chan error, working)
	for i := range working {
		wg.Go(func() {
			errs <- s.CreateTask(ctx, NewTask(fmt.Sprintf("u-%06d", i), orchestration.PhasePending))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	update := func() error {
		id := fmt.Sprintf("u-%06d", seq.Add(1)%working)
		_, err := s.UpdateTask(ctx, id, transition)
		return err
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallelism == 0 {
		for range b.N {
			if err := update(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := update(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	reportRate(b, "transitions/s")
}

// BenchList measures one page of f over a store already holding
// FinishedTasks. pages > 1 walks that many pages per op with the continue
// token.
func BenchList(b *testing.B, s orchestration.Store, f orchestration.TaskFilter, pages int) {
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f := f
		for range pages {
			page, err := s.ListTasks(ctx, f)
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Tasks) == 0 {
				b.Fatal("empty page")
			}
			if page.Continue == "" {
				break
			}
			f.Continue = page.Continue
		}
	}
	reportRate(b, "lists/s")
}
