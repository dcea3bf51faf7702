package runtime_test

import (
	"bufio"
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/runtime"
)

// peakRSS resets the process's peak resident set (Linux clear_refs 5) and
// returns a function reading how far it rose since, in bytes.
func peakRSS(t *testing.T) func() int64 {
	t.Helper()
	before := status(t, "VmRSS:")
	require.NoError(t, os.WriteFile("/proc/self/clear_refs", []byte("5"), 0))
	return func() int64 { return status(t, "VmHWM:") - before }
}

func status(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestDeclaredSizesBoundedByLimit runs modules whose private memory or
// table declares more than the task's limit: each must fail MemoryLimit
// before running, and the proplet's peak RSS must not rise by anything near
// what they declared (1 GiB and 800 MiB).
func TestDeclaredSizesBoundedByLimit(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	const limitPages = 4096 // 256 MiB
	for _, name := range []string{"privmem", "bigtable"} {
		t.Run(name, func(t *testing.T) {
			wasm := exampletest.Build(t, name)
			rose := peakRSS(t)
			res := rt.Run(context.Background(), runtime.Job{Wasm: wasm, MemoryPages: limitPages})
			require.Equal(t, wire.ReasonMemoryLimit, res.Reason, res.Error)
			require.Contains(t, res.Error, "limit")
			rise := rose()
			t.Logf("peak RSS rose by %d MiB", rise>>20)
			require.Less(t, rise, int64(limitPages*65536)/2, "peak RSS rose by more than half the limit")
		})
	}
}

// TestTableGrowthBounded grows a table without a declared maximum by 50M
// entries (400 MiB): table.grow must answer -1 and the RSS stay flat.
func TestTableGrowthBounded(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	wasm := exampletest.Build(t, "tablegrow")
	rose := peakRSS(t)
	res := rt.Run(context.Background(), runtime.Job{Wasm: wasm, Function: "grow", MemoryPages: 4096})
	require.True(t, res.OK(), res.Error)
	require.Equal(t, []float64{-1}, res.Results)
	rise := rose()
	t.Logf("peak RSS rose by %d MiB", rise>>20)
	require.Less(t, rise, int64(128<<20))
}

// TestGoModulesRunWithBoundedTables checks the table rewrite keeps a real
// Go wasip1 module (whose table declares no maximum) working.
func TestGoModulesRunWithBoundedTables(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	res := rt.Run(context.Background(), runtime.Job{Wasm: exampletest.Build(t, "arith"), Function: "add", Inputs: []float64{2, 3}})
	require.True(t, res.OK(), res.Error)
	require.Equal(t, []float64{5}, res.Results)
}

// TestLargeEnvironmentIsLinear hands a module 20,000 environment variables.
// wazero's WithEnv copied every variable set so far on each call, some
// 10 GB of allocation for this job; the environment is now built once, so
// what the run allocates stays in the megabytes.
func TestLargeEnvironmentIsLinear(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	hello := exampletest.Build(t, "hello")
	env := make(map[string]string, 20001)
	for i := range 20000 {
		env["VAR_"+strconv.Itoa(i)] = strconv.Itoa(i)
	}
	env["GREETING"] = "many"
	// Warm the compiled module so its allocations do not count.
	require.True(t, rt.Run(context.Background(), runtime.Job{Wasm: hello}).OK())

	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	res := rt.Run(context.Background(), runtime.Job{Wasm: hello, Env: env})
	goruntime.ReadMemStats(&after)
	require.True(t, res.OK(), res.Error)
	require.Contains(t, string(res.Stdout), "many from wasm")
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("run with 20,000 env vars allocated %d MiB", allocated>>20)
	require.Less(t, allocated, uint64(256<<20))
}
