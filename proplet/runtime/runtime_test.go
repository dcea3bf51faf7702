package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/runtime"
)

// guard bounds how long a test waits for a run that must end; it only
// catches hangs and is never a pass condition.
const guard = 2 * time.Minute

// sharedCacheDir is one compilation cache for the tests that are not about
// it: compiling a Go module takes tens of seconds under -race, loading it
// does not. It lives in the user cache dir, like Go's build cache, so
// repeated test runs skip compiling too; entries are keyed by module hash,
// wazero version and CPU, so reuse is safe. TestCompilationCacheRestart
// uses its own empty dir.
var sharedCacheDir string

func TestMain(m *testing.M) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sharedCacheDir = filepath.Join(base, "propeller", "wazero-test-cache")
	os.Exit(m.Run())
}

func newRuntime(t testing.TB, cfg runtime.Config) *runtime.Runtime {
	t.Helper()
	if cfg.CompilationCacheDir == "" {
		cfg.CompilationCacheDir = sharedCacheDir
	}
	rt, err := runtime.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rt.Close(context.Background())) })
	return rt
}

func TestRunCommand(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	hello := exampletest.Build(t, "hello")
	cpu := exampletest.Build(t, "cpu")

	cases := []struct {
		name       string
		job        runtime.Job
		reason     string
		exit       int
		stdout     []string
		stderr     string
		errContain string
	}{
		{
			name:   "args env stdin",
			job:    runtime.Job{Wasm: hello, Args: []string{"a", "b c"}, Env: map[string]string{"GREETING": "hi"}, Stdin: []byte("from stdin")},
			stdout: []string{"hi from wasm\n", "arg[0]=a\n", "arg[1]=b c\n", "stdin=from stdin\n"},
			stderr: "exiting with 0\n",
		},
		{
			name:   "defaults",
			job:    runtime.Job{Wasm: hello},
			stdout: []string{"hello from wasm\n"},
		},
		{
			name:       "non-zero exit",
			job:        runtime.Job{Wasm: hello, Args: []string{"-exit", "3"}},
			reason:     wire.ReasonExitCode,
			exit:       3,
			stderr:     "exiting with 3\n",
			errContain: "exit code 3",
		},
		{
			name:   "cpu bound",
			job:    runtime.Job{Wasm: cpu, Args: []string{"100000"}},
			stdout: []string{"9592\n"},
		},
		{
			name:       "bad env name",
			job:        runtime.Job{Wasm: hello, Env: map[string]string{"A=B": "x"}},
			reason:     wire.ReasonInvalidTask,
			errContain: "environment",
		},
		{
			name:       "inputs to a command",
			job:        runtime.Job{Wasm: hello, Inputs: []float64{1}},
			reason:     wire.ReasonInvalidTask,
			errContain: "inputs",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := rt.Run(context.Background(), tc.job)
			require.Equal(t, tc.reason, res.Reason, res.Error)
			require.Contains(t, res.Error, tc.errContain)
			for _, s := range tc.stdout {
				require.Contains(t, string(res.Stdout), s)
			}
			if tc.stderr != "" {
				require.Equal(t, tc.stderr, string(res.Stderr))
			}
			if tc.reason == "" || tc.reason == wire.ReasonExitCode {
				require.NotNil(t, res.ExitCode)
				require.Equal(t, tc.exit, *res.ExitCode)
			}
			require.Equal(t, runtime.Digest(tc.job.Wasm), res.Digest)
		})
	}
}

func TestRunReactor(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	add := exampletest.Build(t, "add")
	arith := exampletest.Build(t, "arith")
	trap := exampletest.Build(t, "trap")

	cases := []struct {
		name       string
		wasm       []byte
		fn         string
		in         []float64
		want       []float64
		reason     string
		errContain string
	}{
		{name: "i32", wasm: add, fn: "add", in: []float64{2, 3}, want: []float64{5}},
		{name: "i32 negative", wasm: add, fn: "add", in: []float64{-5, 2}, want: []float64{-3}},
		{name: "i32 wraps", wasm: add, fn: "add", in: []float64{2147483647, 1}, want: []float64{-2147483648}},
		{name: "i64", wasm: add, fn: "add64", in: []float64{1 << 40, 1}, want: []float64{1<<40 + 1}},
		{name: "f32", wasm: add, fn: "addf32", in: []float64{1.5, 2.25}, want: []float64{3.75}},
		{name: "f64", wasm: add, fn: "mulf64", in: []float64{1.5, -4}, want: []float64{-6}},
		{name: "two results", wasm: add, fn: "divmod", in: []float64{7, 2}, want: []float64{3, 1}},
		{name: "go reactor i32", wasm: arith, fn: "add", in: []float64{40, 2}, want: []float64{42}},
		{name: "go reactor f64", wasm: arith, fn: "mul", in: []float64{0.5, 9}, want: []float64{4.5}},
		{name: "go reactor i64", wasm: arith, fn: "fib", in: []float64{50}, want: []float64{12586269025}},
		{name: "unknown export", wasm: add, fn: "sub", in: []float64{1, 2}, reason: wire.ReasonInvalidTask, errContain: `no function "sub"`},
		{name: "wrong arity", wasm: add, fn: "add", in: []float64{1}, reason: wire.ReasonInvalidTask, errContain: "takes 2 inputs, got 1"},
		{name: "fraction to i32", wasm: add, fn: "add", in: []float64{1.5, 1}, reason: wire.ReasonInvalidTask, errContain: "not an i32"},
		{name: "out of i32 range", wasm: add, fn: "add", in: []float64{1 << 33, 1}, reason: wire.ReasonInvalidTask, errContain: "not an i32"},
		{name: "reactor without function", wasm: add, reason: wire.ReasonInvalidTask, errContain: "no _start"},
		{name: "trap in call", wasm: trap, fn: "divzero", in: []float64{1}, reason: wire.ReasonTrap, errContain: "divide by zero"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := rt.Run(context.Background(), runtime.Job{Wasm: tc.wasm, Function: tc.fn, Inputs: tc.in})
			require.Equal(t, tc.reason, res.Reason, res.Error)
			require.Contains(t, res.Error, tc.errContain)
			require.Equal(t, tc.want, res.Results)
			require.Nil(t, res.ExitCode)
		})
	}
}

func TestRunLimits(t *testing.T) {
	rt := newRuntime(t, runtime.Config{MaxMemoryPages: 4096})
	cases := []struct {
		name       string
		job        runtime.Job
		reason     string
		errContain string
	}{
		{name: "deadline on wat loop", job: runtime.Job{Wasm: exampletest.Build(t, "loop"), Timeout: 50 * time.Millisecond}, reason: wire.ReasonDeadlineExceeded},
		{name: "deadline on exported loop", job: runtime.Job{Wasm: exampletest.Build(t, "loop"), Function: "spin", Timeout: 50 * time.Millisecond}, reason: wire.ReasonDeadlineExceeded},
		{name: "deadline on go module", job: runtime.Job{Wasm: exampletest.Build(t, "spin"), Timeout: 200 * time.Millisecond}, reason: wire.ReasonDeadlineExceeded},
		{name: "memory bomb", job: runtime.Job{Wasm: exampletest.Build(t, "membomb"), MemoryPages: 32}, reason: wire.ReasonMemoryLimit, errContain: "limit of 32 pages"},
		{name: "memory bomb default limit", job: runtime.Job{Wasm: exampletest.Build(t, "membomb")}, reason: wire.ReasonMemoryLimit, errContain: "limit of 1024 pages"},
		{name: "go module runs out of memory", job: runtime.Job{Wasm: exampletest.Build(t, "cpu"), Args: []string{"200000000"}, MemoryPages: 512}, reason: wire.ReasonMemoryLimit, errContain: "limit of 512 pages"},
		{name: "go module over its initial memory", job: runtime.Job{Wasm: exampletest.Build(t, "hello"), MemoryPages: 2}, reason: wire.ReasonMemoryLimit, errContain: "at start"},
		{name: "trap in _start", job: runtime.Job{Wasm: exampletest.Build(t, "trap")}, reason: wire.ReasonTrap, errContain: "unreachable"},
		{name: "too much memory asked", job: runtime.Job{Wasm: exampletest.Build(t, "add"), Function: "add", Inputs: []float64{1, 2}, MemoryPages: 5000}, reason: wire.ReasonInvalidTask, errContain: "limit of 4096"},
		{name: "not wasm", job: runtime.Job{Wasm: []byte("definitely not wasm")}, reason: wire.ReasonInvalidModule, errContain: "compile"},
		{name: "no module", job: runtime.Job{}, reason: wire.ReasonInvalidTask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := rt.Run(context.Background(), tc.job)
			require.Equal(t, tc.reason, res.Reason, res.Error)
			require.Contains(t, res.Error, tc.errContain)
		})
	}
	// The runtime keeps serving after every failure above.
	res := rt.Run(context.Background(), runtime.Job{Wasm: exampletest.Build(t, "add"), Function: "add", Inputs: []float64{1, 2}})
	require.True(t, res.OK(), res.Error)
	require.Equal(t, []float64{3}, res.Results)
}

// signalWriter closes ready on the first write: the module is running.
type signalWriter struct {
	once  sync.Once
	ready chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.ready) })
	return len(p), nil
}

func TestStop(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	spin := exampletest.Build(t, "spin")
	stopCause := errors.New("stop command from manager")

	cases := []struct {
		name       string
		ctx        func() (context.Context, func())
		reason     string
		errContain string
	}{
		{
			name: "cancel",
			ctx: func() (context.Context, func()) {
				ctx, cancel := context.WithCancel(context.Background())
				return ctx, cancel
			},
			reason: wire.ReasonStopped,
		},
		{
			name: "cancel with cause",
			ctx: func() (context.Context, func()) {
				ctx, cancel := context.WithCancelCause(context.Background())
				return ctx, func() { cancel(stopCause) }
			},
			reason:     wire.ReasonStopped,
			errContain: stopCause.Error(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := tc.ctx()
			w := &signalWriter{ready: make(chan struct{})}
			done := make(chan runtime.Result, 1)
			go func() { done <- rt.Run(ctx, runtime.Job{Wasm: spin, Stdout: w, Timeout: time.Hour}) }()
			select {
			case <-w.ready:
			case res := <-done:
				t.Fatalf("spin ended before it was stopped: %+v", res)
			}
			stop()
			select {
			case res := <-done:
				require.Equal(t, tc.reason, res.Reason, res.Error)
				require.Contains(t, res.Error, tc.errContain)
				require.Equal(t, "spinning\n", string(res.Stdout))
			case <-time.After(guard):
				t.Fatal("stopped module did not end")
			}
		})
	}
}

func TestStopBeforeStart(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := rt.Run(ctx, runtime.Job{Wasm: exampletest.Build(t, "loop")})
	require.Equal(t, wire.ReasonStopped, res.Reason, res.Error)
}

func TestPreopenAndMounts(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	hello := exampletest.Build(t, "hello")
	data := t.TempDir()
	model := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(data, "in.txt"), []byte("data file"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(model, "model.bin"), []byte("model file"), 0o644))
	modelMount := []runtime.Mount{{HostDir: model, GuestPath: "/model", ReadOnly: true}}

	cases := []struct {
		name    string
		job     runtime.Job
		reason  string
		stdout  string
		written bool
	}{
		{name: "read preopened", job: runtime.Job{PreopenDir: data, Env: map[string]string{"HELLO_READ": "/data/in.txt"}}, stdout: "file=data file"},
		{name: "write preopened", job: runtime.Job{PreopenDir: data, Env: map[string]string{"HELLO_WRITE": "/data/out.txt"}}, written: true},
		{name: "nothing mounted by default", job: runtime.Job{Env: map[string]string{"HELLO_READ": "/data/in.txt"}}, reason: wire.ReasonExitCode},
		{name: "read-only mount readable", job: runtime.Job{Mounts: modelMount, Env: map[string]string{"HELLO_READ": "/model/model.bin"}}, stdout: "file=model file"},
		{name: "read-only mount not writable", job: runtime.Job{Mounts: modelMount, Env: map[string]string{"HELLO_WRITE": "/model/out.txt"}}, reason: wire.ReasonExitCode},
		{name: "relative guest path", job: runtime.Job{Mounts: []runtime.Mount{{HostDir: model, GuestPath: "model"}}}, reason: wire.ReasonInvalidTask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.job
			job.Wasm = hello
			res := rt.Run(context.Background(), job)
			require.Equal(t, tc.reason, res.Reason, "%s: %s", res.Error, res.Stderr)
			require.Contains(t, string(res.Stdout), tc.stdout)
			if tc.written {
				got, err := os.ReadFile(filepath.Join(data, "out.txt"))
				require.NoError(t, err)
				require.Equal(t, "written by hello", string(got))
			}
		})
	}
	_, err := os.Stat(filepath.Join(model, "out.txt"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestOutputTail(t *testing.T) {
	rt := newRuntime(t, runtime.Config{OutputTailBytes: 16})
	var full bytes.Buffer
	res := rt.Run(context.Background(), runtime.Job{Wasm: exampletest.Build(t, "hello"), Args: []string{"one", "two", "three"}, Stdout: &full})
	require.True(t, res.OK(), res.Error)
	require.Contains(t, full.String(), "hello from wasm\n")
	require.Len(t, res.Stdout, 16)
	require.Equal(t, full.String()[full.Len()-16:], string(res.Stdout))
}

func TestDigestAndModuleCache(t *testing.T) {
	rt := newRuntime(t, runtime.Config{ModuleCacheSize: 1})
	add := exampletest.Build(t, "add")
	trap := exampletest.Build(t, "trap")
	addJob := func(wasm []byte, digest string) runtime.Job {
		return runtime.Job{Wasm: wasm, Digest: digest, Function: "add", Inputs: []float64{1, 1}}
	}
	ctx := context.Background()

	res := rt.Run(ctx, addJob(add, runtime.Digest(trap)))
	require.Equal(t, wire.ReasonInvalidTask, res.Reason)
	require.Contains(t, res.Error, "digest mismatch")

	res = rt.Run(ctx, addJob(nil, runtime.Digest(add)))
	require.Equal(t, wire.ReasonInvalidTask, res.Reason)
	require.Contains(t, res.Error, "not cached")

	steps := []struct {
		wasm []byte
		job  runtime.Job
		hit  bool
	}{
		{job: addJob(add, ""), hit: false},
		{job: addJob(add, ""), hit: true},
		{job: addJob(nil, runtime.Digest(add)), hit: true}, // by digest alone
		{job: runtime.Job{Wasm: trap, Function: "divzero", Inputs: []float64{1}}, hit: false},
		{job: addJob(add, runtime.Digest(add)), hit: false}, // evicted by trap (size 1)
	}
	for i, s := range steps {
		res := rt.Run(ctx, s.job)
		require.Equal(t, s.hit, res.CacheHit, "step %d", i)
		if !s.hit {
			require.Positive(t, res.CompileDuration, "step %d", i)
		} else {
			require.Zero(t, res.CompileDuration, "step %d", i)
		}
	}
	require.True(t, rt.Has(runtime.Digest(add)))
	require.False(t, rt.Has(runtime.Digest(trap)))
}

// TestLoad: Job.Load is called only on a compiled-module miss, its bytes
// are checked against Digest, and its failure is an ArtifactError.
func TestLoad(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	add := exampletest.Build(t, "add")
	digest := runtime.Digest(add)
	var loads int
	job := func(load func(context.Context) ([]byte, error)) runtime.Job {
		return runtime.Job{Digest: digest, Function: "add", Inputs: []float64{1, 2}, Load: func(ctx context.Context) ([]byte, error) {
			loads++
			return load(ctx)
		}}
	}
	ctx := context.Background()

	res := rt.Run(ctx, job(func(context.Context) ([]byte, error) { return nil, errors.New("cache file unreadable") }))
	require.Equal(t, wire.ReasonArtifact, res.Reason)
	require.Contains(t, res.Error, "cache file unreadable")
	require.Contains(t, res.Error, digest)

	res = rt.Run(ctx, job(func(context.Context) ([]byte, error) { return exampletest.Build(t, "trap"), nil }))
	require.Equal(t, wire.ReasonInvalidTask, res.Reason)
	require.Contains(t, res.Error, "digest mismatch")

	good := job(func(context.Context) ([]byte, error) { return add, nil })
	res = rt.Run(ctx, good)
	require.True(t, res.OK(), res.Error)
	require.False(t, res.CacheHit)
	require.Equal(t, 3, loads)

	for range 3 {
		res = rt.Run(ctx, good)
		require.True(t, res.OK(), res.Error)
		require.True(t, res.CacheHit)
		require.Equal(t, []float64{3}, res.Results)
	}
	require.Equal(t, 3, loads, "a compiled module is run without loading its bytes")

	// Wasm, when present, wins over Load (a runtime that must compile).
	res = newRuntime(t, runtime.Config{}).Run(ctx, runtime.Job{Wasm: add, Function: "add", Inputs: []float64{1, 2}, Load: func(context.Context) ([]byte, error) {
		panic("not called")
	}})
	require.True(t, res.OK(), res.Error)
}

func TestConcurrentRuns(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	add := exampletest.Build(t, "add")
	hello := exampletest.Build(t, "hello")
	const n = 8
	results := make(chan runtime.Result, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			results <- rt.Run(context.Background(), runtime.Job{Wasm: add, Function: "add", Inputs: []float64{float64(i), 1}})
		}()
		go func() {
			defer wg.Done()
			results <- rt.Run(context.Background(), runtime.Job{Wasm: hello, Args: []string{"x"}})
		}()
	}
	wg.Wait()
	close(results)
	compiles := map[string]int{}
	for res := range results {
		require.True(t, res.OK(), res.Error)
		if !res.CacheHit {
			compiles[res.Digest]++
		}
	}
	require.Equal(t, map[string]int{runtime.Digest(add): 1, runtime.Digest(hello): 1}, compiles, "each module compiles once")
}

// TestCompilationCacheRestart shows a restarted runtime loads machine code
// from the cache dir instead of compiling: wazero writes a cache entry only
// when it compiles, so an unchanged dir after the restart is the proof.
func TestCompilationCacheRestart(t *testing.T) {
	dir := t.TempDir()
	hello := exampletest.Build(t, "hello")
	job := runtime.Job{Wasm: hello}

	first, err := runtime.New(context.Background(), runtime.Config{CompilationCacheDir: dir})
	require.NoError(t, err)
	cold := first.Run(context.Background(), job)
	require.True(t, cold.OK(), cold.Error)
	require.False(t, cold.CacheHit)
	warm := first.Run(context.Background(), job)
	require.True(t, warm.CacheHit)
	require.NoError(t, first.Close(context.Background()))

	entries := cacheEntries(t, dir)
	require.NotEmpty(t, entries)

	second, err := runtime.New(context.Background(), runtime.Config{CompilationCacheDir: dir})
	require.NoError(t, err)
	defer second.Close(context.Background())
	restarted := second.Run(context.Background(), job)
	require.True(t, restarted.OK(), restarted.Error)
	require.False(t, restarted.CacheHit, "the in-memory cache starts empty")
	require.Equal(t, entries, cacheEntries(t, dir), "nothing recompiled after restart")
	t.Logf("compile: cold %v, after restart %v", cold.CompileDuration, restarted.CompileDuration)
}

// cacheEntries maps every file under dir to its modification time.
func cacheEntries(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[path] = info.ModTime()
		return nil
	}))
	return out
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  runtime.Config
	}{
		{name: "max over wasm limit", cfg: runtime.Config{MaxMemoryPages: 70000}},
		{name: "default over max", cfg: runtime.Config{DefaultMemoryPages: 20, MaxMemoryPages: 10}},
		{name: "negative timeout", cfg: runtime.Config{DefaultTimeout: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runtime.New(context.Background(), tc.cfg)
			require.Error(t, err)
		})
	}
}

func TestRunAfterClose(t *testing.T) {
	rt, err := runtime.New(context.Background(), runtime.Config{})
	require.NoError(t, err)
	require.NoError(t, rt.Close(context.Background()))
	res := rt.Run(context.Background(), runtime.Job{Wasm: exampletest.Build(t, "add"), Function: "add", Inputs: []float64{1, 2}})
	require.Equal(t, wire.ReasonStopped, res.Reason)
}
