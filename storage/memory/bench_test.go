package memory_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
	"github.com/absmach/propeller/storage/storetest"
)

const bigN = 100_000

func load(b *testing.B, tasks []orchestration.Task) *memory.Store {
	s := memory.New()
	for _, t := range tasks {
		if err := s.CreateTask(b.Context(), t); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkCreate(b *testing.B) {
	b.Run("sequential", func(b *testing.B) { storetest.BenchCreate(b, memory.New()) })
	b.Run("parallel64", func(b *testing.B) {
		storetest.BenchCreateParallel(b, memory.New(), 64/runtime.GOMAXPROCS(0))
	})
}

func BenchmarkUpdate(b *testing.B) {
	b.Run("sequential", func(b *testing.B) { storetest.BenchUpdate(b, memory.New(), 0) })
	b.Run("parallel64", func(b *testing.B) {
		storetest.BenchUpdate(b, memory.New(), 64/runtime.GOMAXPROCS(0))
	})
}

var (
	bigOnce  sync.Once
	bigTasks []orchestration.Task
)

func BenchmarkList100k(b *testing.B) {
	bigOnce.Do(func() { bigTasks = storetest.FinishedTasks(bigN) })
	s := load(b, bigTasks)
	phase := func(p orchestration.Phase) []orchestration.Phase { return []orchestration.Phase{p} }
	b.Run("phase=Pending(1%)", func(b *testing.B) {
		storetest.BenchList(b, s, orchestration.TaskFilter{Phases: phase(orchestration.PhasePending)}, 1)
	})
	b.Run("phase=Succeeded(99%)", func(b *testing.B) {
		storetest.BenchList(b, s, orchestration.TaskFilter{Phases: phase(orchestration.PhaseSucceeded)}, 1)
	})
}

// BenchmarkHeapPer100kTasks reports what the memory store costs per task;
// everything lives on the heap here, unlike bolt.
func BenchmarkHeapPer100kTasks(b *testing.B) {
	var perTask float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// Build the input inside the window: the store keeps its strings.
		s := load(b, storetest.FinishedTasks(bigN))
		runtime.GC()
		runtime.ReadMemStats(&after)
		perTask = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / bigN
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perTask, "heap-bytes/task")
}
