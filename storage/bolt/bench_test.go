package bolt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/storetest"
)

const bigN = 100_000

var (
	benchDir string
	bigOnce  sync.Once
	bigPath  string
	bigErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "propeller-bolt-bench-")
	if err != nil {
		panic(err)
	}
	benchDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// bigDB is a file holding storetest.FinishedTasks(100k), built once per
// process and shared read-only by the list and heap benchmarks.
func bigDB(b *testing.B) string {
	bigOnce.Do(func() {
		bigPath = filepath.Join(benchDir, "100k.db")
		s, err := bolt.Open(bigPath, bolt.Options{})
		if err != nil {
			bigErr = err
			return
		}
		bigErr = bolt.BulkCreate(s, storetest.FinishedTasks(bigN))
		if cerr := s.Close(); bigErr == nil {
			bigErr = cerr
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPath
}

func openB(b *testing.B, path string, opts bolt.Options) *bolt.Store {
	s, err := bolt.Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func freshB(b *testing.B, opts bolt.Options) *bolt.Store {
	return openB(b, filepath.Join(b.TempDir(), "bench.db"), opts)
}

func BenchmarkCreate(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		storetest.BenchCreate(b, freshB(b, bolt.Options{}))
	})
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("parallel%d", n), func(b *testing.B) {
			storetest.BenchCreateParallel(b, freshB(b, bolt.Options{}), n/runtime.GOMAXPROCS(0))
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		storetest.BenchUpdate(b, freshB(b, bolt.Options{}), 0)
	})
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("parallel%d", n), func(b *testing.B) {
			storetest.BenchUpdate(b, freshB(b, bolt.Options{}), n/runtime.GOMAXPROCS(0))
		})
	}
}

func BenchmarkList100k(b *testing.B) {
	s := openB(b, bigDB(b), bolt.Options{})
	runList100k(b, s)
}

func runList100k(b *testing.B, s orchestration.Store) {
	phase := func(p orchestration.Phase) []orchestration.Phase { return []orchestration.Phase{p} }
	cases := []struct {
		name  string
		f     orchestration.TaskFilter
		pages int
	}{
		{"phase=Pending(1%)", orchestration.TaskFilter{Phases: phase(orchestration.PhasePending)}, 1},
		{"phase=Succeeded(99%)", orchestration.TaskFilter{Phases: phase(orchestration.PhaseSucceeded)}, 1},
		{"phase=Succeeded/10pages", orchestration.TaskFilter{Phases: phase(orchestration.PhaseSucceeded)}, 10},
		{"phase=Pending+label", orchestration.TaskFilter{Phases: phase(orchestration.PhasePending), Labels: map[string]string{"app": "app-0"}}, 1},
		{"proplet+phase=Succeeded", orchestration.TaskFilter{Phases: phase(orchestration.PhaseSucceeded), PropletID: "p-3"}, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { storetest.BenchList(b, s, c.f, c.pages) })
	}
}

// BenchmarkHeapPer100kTasks opens a file holding 100k finished tasks and
// reports the heap the open store holds per task: the data lives in the
// mmap, so this should stay near zero however many tasks accumulate.
func BenchmarkHeapPer100kTasks(b *testing.B) {
	path := bigDB(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var perTask float64
	for range b.N {
		var before, after runtime.MemStats
		// Settle the garbage left by building the file first.
		runtime.GC()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&before)
		s, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		// Touch the store as the engine's recovery would.
		if _, err := s.ListTasks(b.Context(), orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhasePending}}); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perTask = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / bigN
		runtime.KeepAlive(s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(perTask, "heap-bytes/task")
	b.ReportMetric(float64(fi.Size())/bigN, "file-bytes/task")
}
