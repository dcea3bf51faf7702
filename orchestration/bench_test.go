package orchestration_test

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/memory"
)

// transitionsPerTask counts the state transitions of one successful task
// (-> Scheduled, -> Running, -> Succeeded). With a free slot the first is
// part of the create, so each is one durable write.
const transitionsPerTask = 3

type benchStore struct {
	name string
	open func(b *testing.B) orchestration.Store
}

var benchStores = []benchStore{
	{"memory", func(*testing.B) orchestration.Store { return memory.New() }},
	{"bolt", func(b *testing.B) orchestration.Store {
		s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), bolt.Options{})
		require.NoError(b, err)
		b.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

// lifecycleRig runs simulated proplets that answer every start with running
// and succeeded events, from many goroutines, as the MQTT link would.
type lifecycleRig struct {
	eng  *orchestration.Engine
	done atomic.Int64
	wg   sync.WaitGroup
	in   chan orchestration.Task
}

func (r *lifecycleRig) StartTask(_ context.Context, _ string, t orchestration.Task, _ orchestration.StartWindow) error {
	r.in <- t
	return nil
}

func (r *lifecycleRig) StopTask(context.Context, string, string, int, string) error { return nil }

func newLifecycleRig(tb testing.TB, store orchestration.Store, workers int) *lifecycleRig {
	ctx := context.Background()
	r := &lifecycleRig{in: make(chan orchestration.Task, 1<<16)}
	eng, err := orchestration.New(orchestration.Config{HeartbeatTimeout: time.Hour}, orchestration.Deps{Store: store, Dispatcher: r, Logger: quiet})
	require.NoError(tb, err)
	require.NoError(tb, eng.Recover(ctx))
	require.NoError(tb, eng.PropletUp(ctx, orchestration.Proplet{ID: "p1", Slots: 1 << 20, Instance: "a"}))
	r.eng = eng
	for range workers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for t := range r.in {
				ev := orchestration.TaskEvent{TaskID: t.ID, Attempt: t.Status.Attempt, Type: orchestration.EventRunning}
				if _, err := eng.RecordEvent(ctx, ev); err != nil {
					panic(err)
				}
				ev.Type = orchestration.EventSucceeded
				if _, err := eng.RecordEvent(ctx, ev); err != nil {
					panic(err)
				}
				r.done.Add(1)
			}
		}()
	}
	return r
}

func (r *lifecycleRig) close() {
	close(r.in)
	r.wg.Wait()
}

// BenchmarkEngineTransitions measures task state transitions per second
// through the engine: each op is one task's whole life (3 durable writes),
// with submissions and proplet events arriving concurrently.
func BenchmarkEngineTransitions(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			rig := newLifecycleRig(b, bs.open(b), 256)
			spec := orchestration.TaskSpec{Image: "oci://registry.local/app:v1", Name: "bench"}
			b.SetParallelism(64)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := rig.eng.Submit(context.Background(), spec); err != nil {
						panic(err)
					}
				}
			})
			for rig.done.Load() < int64(b.N) {
				runtime.Gosched()
			}
			elapsed := time.Since(start)
			b.StopTimer()
			rig.close()
			b.ReportMetric(float64(b.N*transitionsPerTask)/elapsed.Seconds(), "transitions/s")
		})
	}
}

// BenchmarkEngineHeapPerIdleTask reports the heap the engine and its bbolt
// store hold per finished task, with 100k finished tasks stored: the engine
// keeps only in-flight work in memory.
func BenchmarkEngineHeapPerIdleTask(b *testing.B) {
	const n = 100_000
	for range b.N {
		store := benchStores[1].open(b)
		rig := newLifecycleRig(b, store, 64)
		var wg sync.WaitGroup
		spec := orchestration.TaskSpec{Image: "oci://registry.local/app:v1", Name: "idle", Env: map[string]string{"K": "v"}}
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					if _, err := rig.eng.Submit(context.Background(), spec); err != nil {
						panic(err)
					}
				}
			}()
		}
		wg.Wait()
		for rig.done.Load() < n {
			runtime.Gosched()
		}
		rig.close()
		// Everything live counts against the tasks: an upper bound.
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/n, "heap-bytes/task")
		runtime.KeepAlive(rig)
	}
}
