package runtime_test

import (
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/runtime"
)

// benchStart measures starting a module in three states: cold (nothing
// cached: compile), disk (a restarted runtime, compiled code on disk) and
// warm (compiled module in memory: instantiate and run only).
func benchStart(b *testing.B, job runtime.Job) {
	ctx := context.Background()
	check := func(res runtime.Result) {
		if !res.OK() {
			b.Fatalf("run failed: %s: %s", res.Reason, res.Error)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			dir, err := os.MkdirTemp(b.TempDir(), "cold")
			if err != nil {
				b.Fatal(err)
			}
			rt, err := runtime.New(ctx, runtime.Config{CompilationCacheDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			check(rt.Run(ctx, job))
			_ = rt.Close(ctx)
		}
	})
	b.Run("disk", func(b *testing.B) {
		dir := b.TempDir()
		rt := newRuntime(b, runtime.Config{CompilationCacheDir: dir})
		check(rt.Run(ctx, job))
		for b.Loop() {
			rt, err := runtime.New(ctx, runtime.Config{CompilationCacheDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			check(rt.Run(ctx, job))
			_ = rt.Close(ctx)
		}
	})
	b.Run("warm", func(b *testing.B) {
		rt := newRuntime(b, runtime.Config{CompilationCacheDir: b.TempDir()})
		check(rt.Run(ctx, job))
		for b.Loop() {
			check(rt.Run(ctx, job))
		}
	})
}

// BenchmarkTinyModule covers the WAT add module: start states, and the
// overhead of Runtime.Run over calling wazero directly in a loop
// (warm-digest vs wazero-direct is the "within 3x" target).
func BenchmarkTinyModule(b *testing.B) {
	wasm := exampletest.Build(b, "add")
	job := runtime.Job{Wasm: wasm, Function: "add", Inputs: []float64{2, 3}}
	benchStart(b, job)

	ctx := context.Background()
	b.Run("warm-digest", func(b *testing.B) {
		rt := newRuntime(b, runtime.Config{CompilationCacheDir: b.TempDir()})
		job := job
		job.Digest = runtime.Digest(wasm)
		for b.Loop() {
			if res := rt.Run(ctx, job); !res.OK() || res.Results[0] != 5 {
				b.Fatalf("bad run: %+v", res)
			}
		}
	})
	b.Run("wazero-direct", func(b *testing.B) {
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true))
		defer rt.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		cm, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			b.Fatal(err)
		}
		mc := wazero.NewModuleConfig().WithName("").WithStartFunctions()
		for b.Loop() {
			mod, err := rt.InstantiateModule(ctx, cm, mc)
			if err != nil {
				b.Fatal(err)
			}
			out, err := mod.ExportedFunction("add").Call(ctx, api.EncodeI32(2), api.EncodeI32(3))
			if err != nil || api.DecodeI32(out[0]) != 5 {
				b.Fatalf("bad call: %v %v", out, err)
			}
			_ = mod.Close(ctx)
		}
	})
}

// BenchmarkGoModule covers the Go wasip1 hello command (about 2 MB).
func BenchmarkGoModule(b *testing.B) {
	benchStart(b, runtime.Job{Wasm: exampletest.Build(b, "hello"), Args: []string{"bench"}})
}

// BenchmarkGoReactor is one task of the Go arith reactor (about 2 MB,
// -buildmode=c-shared) with its module compiled and cached: what a proplet
// pays per task is instantiating it (linear memory, data segments,
// _initialize) and calling add.
func BenchmarkGoReactor(b *testing.B) {
	ctx := context.Background()
	wasm := exampletest.Build(b, "arith")
	rt := newRuntime(b, runtime.Config{CompilationCacheDir: b.TempDir()})
	job := runtime.Job{Wasm: wasm, Digest: runtime.Digest(wasm), Function: "add", Inputs: []float64{2, 3}}
	if res := rt.Run(ctx, job); !res.OK() || res.Results[0] != 5 {
		b.Fatalf("bad run: %+v", res)
	}
	job.Wasm = nil
	b.ReportAllocs()
	for b.Loop() {
		if res := rt.Run(ctx, job); !res.OK() || res.Results[0] != 5 {
			b.Fatalf("bad run: %+v", res)
		}
	}
}
