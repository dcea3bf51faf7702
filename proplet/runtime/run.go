package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/absmach/propeller/api/wire"
)

// GuestDataDir is where Job.PreopenDir appears inside the module.
const GuestDataDir = "/data"

// Job is one attempt of a task as the runtime sees it: the module, how to
// enter it and the limits around it.
type Job struct {
	// Name is argv[0] of a command module and names the instance in traps.
	Name string
	// Wasm is the module binary. It may be nil when Digest names a module
	// the runtime has cached (see Runtime.Has), or when Load is set.
	Wasm []byte
	// Load, used when Wasm is nil, returns the module binary on demand: it
	// is called only when the module named by Digest (required with Load)
	// is not compiled yet, so a task whose module is compiled costs no
	// read or hash of its bytes (artifact.Blob.Load, for a module in the
	// proplet's disk cache). The bytes are checked against Digest like
	// Wasm. A Load error fails the run with ReasonArtifact. Load is shared
	// by every run waiting for the same compilation, so it gets ctx
	// without its cancellation, as compiling does.
	Load func(ctx context.Context) ([]byte, error)
	// Digest ("sha256:<hex>") keys the compiled-module cache. When empty it
	// is computed from Wasm; when set, Wasm is checked against it before
	// compiling, so a wrong digest can never run other code.
	Digest string
	// Function, when set (and not "_start"), makes the module a reactor:
	// _initialize runs if exported, then Function is called with Inputs.
	// Empty runs a command module's _start.
	Function string
	// Inputs are converted to Function's parameter types.
	Inputs []float64
	// Args are argv[1:] of a command module.
	Args []string
	// Env is the module's environment.
	Env map[string]string
	// Stdin is the module's standard input; empty reads as EOF.
	Stdin []byte
	// Stdout and Stderr, when set, also receive the full output streams
	// (the Result keeps only bounded tails), e.g. for an FL update written
	// to stdout.
	Stdout, Stderr io.Writer
	// Timeout bounds the run; zero uses Config.DefaultTimeout.
	Timeout time.Duration
	// MemoryPages caps linear memory in 64 KiB pages; zero uses
	// Config.DefaultMemoryPages.
	MemoryPages uint32
	// PreopenDir, when set, is a host directory mounted read-write at
	// GuestDataDir. The module sees no host files otherwise.
	PreopenDir string
	// Mounts are further host directories, e.g. a read-only FL model.
	Mounts []Mount
}

// Mount exposes a host directory to the module.
type Mount struct {
	HostDir   string
	GuestPath string
	ReadOnly  bool
}

// Result is what one Run produced. A zero Reason means success.
type Result struct {
	// Digest of the module that ran.
	Digest string
	// Results of a reactor call, decoded from the export's result types.
	Results []float64
	// Stdout and Stderr are the last Config.OutputTailBytes of each stream.
	Stdout, Stderr []byte
	// ExitCode is set for command modules that exited (0 on success).
	ExitCode *int
	// Reason is one of the wire.Reason* constants, empty on success.
	Reason string
	// Error explains Reason for humans.
	Error string
	// CacheHit is true when the compiled module came from memory.
	CacheHit bool
	// CompileDuration is the time spent compiling (or loading from the
	// compilation cache dir); zero on a CacheHit.
	CompileDuration time.Duration
	// RunDuration covers instantiation and execution.
	RunDuration time.Duration
}

// OK reports whether the run succeeded.
func (r Result) OK() bool { return r.Reason == "" }

// Run executes one job and reports how it ended. It never returns an error
// or panics: every failure, the module's or the job's, is a Result with a
// Reason. Cancelling ctx ends the module promptly with ReasonStopped (or
// ReasonDeadlineExceeded if ctx's own deadline passed).
func (r *Runtime) Run(ctx context.Context, job Job) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res.Reason = wire.ReasonTrap
			res.Error = fmt.Sprintf("runtime panic: %v\n%s", p, debug.Stack())
		}
	}()
	if r.isClosed() {
		return fail(res, wire.ReasonStopped, "runtime is closed")
	}

	pages := job.MemoryPages
	if pages == 0 {
		pages = r.cfg.DefaultMemoryPages
	}
	if pages > r.cfg.MaxMemoryPages {
		return fail(res, wire.ReasonInvalidTask, fmt.Sprintf("memory_pages %d exceeds this proplet's limit of %d", pages, r.cfg.MaxMemoryPages))
	}
	timeout := job.Timeout
	if timeout == 0 {
		timeout = r.cfg.DefaultTimeout
	}
	if timeout < 0 {
		return fail(res, wire.ReasonInvalidTask, "timeout must not be negative")
	}

	res.Digest = job.Digest
	if res.Digest == "" {
		if job.Wasm == nil {
			return fail(res, wire.ReasonInvalidTask, "job has neither module bytes nor digest")
		}
		res.Digest = Digest(job.Wasm)
	}
	load := job.Load
	if job.Wasm != nil || load == nil {
		wasm := job.Wasm
		load = func(context.Context) ([]byte, error) { return wasm, nil }
	}
	cm, hit, took, err := r.acquire(ctx, res.Digest, load)
	res.CacheHit, res.CompileDuration = hit, took
	var le *loadError
	switch {
	case errors.As(err, &le):
		return fail(res, wire.ReasonArtifact, err.Error())
	case errors.Is(err, errNotCached), errors.Is(err, errDigestMismatch):
		return fail(res, wire.ReasonInvalidTask, err.Error())
	case err != nil:
		return fail(res, wire.ReasonInvalidModule, "compile: "+err.Error())
	}
	defer r.modules.release(context.Background(), cm)

	entry, err := plan(cm, job, pages)
	if err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return fail(res, wire.ReasonMemoryLimit, err.Error())
		}
		return fail(res, wire.ReasonInvalidTask, err.Error())
	}

	// The deadline starts before the instance is set up: building a large
	// environment or argument list is the task's cost, not free time.
	var runCtx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		runCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	env, err := newEnviron(job.Env)
	if err != nil {
		return fail(res, wire.ReasonInvalidTask, err.Error())
	}
	runCtx = withEnviron(runCtx, env)

	stdout := newTail(r.cfg.OutputTailBytes, job.Stdout)
	stderr := newTail(r.cfg.OutputTailBytes, job.Stderr)
	defer func() {
		res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	}()

	mc, err := r.moduleConfig(job, stdout, stderr)
	if err != nil {
		return fail(res, wire.ReasonInvalidTask, err.Error())
	}

	alloc := &limitedAllocator{limit: uint64(pages) * 65536}
	runCtx = withAllocator(runCtx, alloc)
	if runCtx.Err() != nil {
		return r.classify(ctx, runCtx, res, alloc, runCtx.Err(), wire.ReasonStopped, "setup")
	}
	// Deferred before mod.Close so it runs after it: the linear memory is
	// unmapped once no guest code can run, also when instantiation fails.
	defer alloc.release()

	start := time.Now()
	defer func() { res.RunDuration = time.Since(start) }()

	mod, err := r.rt.InstantiateModule(runCtx, cm.mod, mc)
	if err != nil {
		return r.classify(ctx, runCtx, res, alloc, err, wire.ReasonInvalidModule, "instantiate")
	}
	defer mod.Close(context.Background())

	if entry.command {
		_, err = mod.ExportedFunction("_start").Call(runCtx)
		code := 0
		var exit *sys.ExitError
		if errors.As(err, &exit) && !isContextExit(exit) {
			code = int(exit.ExitCode())
			res.ExitCode = &code
			if code == 0 {
				return res
			}
			if alloc.refused.Load() {
				return fail(res, wire.ReasonMemoryLimit, fmt.Sprintf("exit code %d after memory grew past the limit of %d pages", code, pages))
			}
			return fail(res, wire.ReasonExitCode, fmt.Sprintf("exit code %d", code))
		}
		if err != nil {
			return r.classify(ctx, runCtx, res, alloc, err, wire.ReasonTrap, "_start")
		}
		res.ExitCode = &code
		return res
	}

	if init := mod.ExportedFunction("_initialize"); init != nil {
		if _, err := init.Call(runCtx); err != nil {
			return r.classify(ctx, runCtx, res, alloc, err, wire.ReasonTrap, "_initialize")
		}
	}
	out, err := mod.ExportedFunction(job.Function).Call(runCtx, entry.params...)
	if err != nil {
		return r.classify(ctx, runCtx, res, alloc, err, wire.ReasonTrap, job.Function)
	}
	res.Results = decodeResults(entry.results, out)
	return res
}

func fail(res Result, reason, msg string) Result {
	res.Reason, res.Error = reason, msg
	return res
}

// isContextExit reports whether wazero closed the module because its
// context ended (WithCloseOnContextDone), as opposed to proc_exit.
func isContextExit(e *sys.ExitError) bool {
	c := e.ExitCode()
	return c == sys.ExitCodeDeadlineExceeded || c == sys.ExitCodeContextCanceled
}

// classify maps a failed instantiate or call to a reason. Cancellation is
// checked first because wazero reports it as an exit or a trap depending on
// where the module was; then a refused allocation, since running out of
// memory usually surfaces as a trap or a non-zero exit.
func (r *Runtime) classify(parent, runCtx context.Context, res Result, alloc *limitedAllocator, err error, fallback, where string) Result {
	if runCtx.Err() != nil {
		if pe := parent.Err(); pe != nil && !errors.Is(pe, context.DeadlineExceeded) {
			msg := "stopped"
			if cause := context.Cause(parent); cause != nil && !errors.Is(cause, context.Canceled) {
				msg += ": " + cause.Error()
			}
			return fail(res, wire.ReasonStopped, msg)
		}
		return fail(res, wire.ReasonDeadlineExceeded, "deadline exceeded")
	}
	if alloc.refused.Load() {
		return fail(res, wire.ReasonMemoryLimit, fmt.Sprintf("%s: memory grew past the limit of %d pages: %v", where, alloc.limit/65536, err))
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		code := int(exit.ExitCode())
		res.ExitCode = &code
		if code == 0 {
			return res
		}
		return fail(res, wire.ReasonExitCode, fmt.Sprintf("%s: exit code %d", where, code))
	}
	if strings.Contains(err.Error(), "wasm error:") {
		// A trap in a start section or in the called function.
		fallback = wire.ReasonTrap
	}
	return fail(res, fallback, fmt.Sprintf("%s: %v", where, err))
}

// baseModuleConfig gives modules real clocks and entropy: wazero's
// deterministic defaults would make Go's scheduler and math/rand misbehave.
func baseModuleConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStartFunctions() // run.go calls _start itself to classify its errors
}

func (r *Runtime) moduleConfig(job Job, stdout, stderr io.Writer) (wazero.ModuleConfig, error) {
	name := job.Name
	if name == "" {
		name = "module"
	}
	// Anonymous instances: many runs of one module may coexist.
	mc := r.base.WithName("").
		WithArgs(append([]string{name}, job.Args...)...).
		WithStdout(stdout).
		WithStderr(stderr)
	if len(job.Stdin) > 0 {
		mc = mc.WithStdin(bytes.NewReader(job.Stdin))
	}
	if job.PreopenDir != "" || len(job.Mounts) > 0 {
		fs := wazero.NewFSConfig()
		if job.PreopenDir != "" {
			fs = fs.WithDirMount(job.PreopenDir, GuestDataDir)
		}
		for _, m := range job.Mounts {
			if m.HostDir == "" || !strings.HasPrefix(m.GuestPath, "/") {
				return nil, fmt.Errorf("mount %q -> %q: need a host dir and an absolute guest path", m.HostDir, m.GuestPath)
			}
			if m.ReadOnly {
				fs = fs.WithReadOnlyDirMount(m.HostDir, m.GuestPath)
			} else {
				fs = fs.WithDirMount(m.HostDir, m.GuestPath)
			}
		}
		mc = mc.WithFSConfig(fs)
	}
	return mc, nil
}

// entryPlan is how a job enters its module, checked before instantiation so
// a malformed task costs no instance.
type entryPlan struct {
	command bool
	params  []uint64
	results []api.ValueType
}

type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func plan(cm *cachedModule, job Job, pages uint32) (entryPlan, error) {
	if err := cm.shape.check(uint64(pages) * 65536); err != nil {
		return entryPlan{}, err
	}
	exports := cm.mod.ExportedFunctions()
	if job.Function == "" || job.Function == "_start" {
		if _, ok := exports["_start"]; !ok {
			return entryPlan{}, fmt.Errorf("module has no _start: name the exported function to call (exports: %s)", exportNames(exports))
		}
		if len(job.Inputs) > 0 {
			return entryPlan{}, errors.New("inputs are only for exported functions; a command module takes args")
		}
		return entryPlan{command: true}, nil
	}
	def, ok := exports[job.Function]
	if !ok {
		return entryPlan{}, fmt.Errorf("module exports no function %q (exports: %s)", job.Function, exportNames(exports))
	}
	types := def.ParamTypes()
	if len(job.Inputs) != len(types) {
		return entryPlan{}, fmt.Errorf("function %q takes %d inputs, got %d", job.Function, len(types), len(job.Inputs))
	}
	params := make([]uint64, len(types))
	for i, t := range types {
		v, err := encode(t, job.Inputs[i])
		if err != nil {
			return entryPlan{}, fmt.Errorf("function %q input %d: %w", job.Function, i, err)
		}
		params[i] = v
	}
	for _, t := range def.ResultTypes() {
		switch t {
		case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
		default:
			return entryPlan{}, fmt.Errorf("function %q returns a %s, only numbers are supported", job.Function, api.ValueTypeName(t))
		}
	}
	return entryPlan{params: params, results: def.ResultTypes()}, nil
}

func exportNames(m map[string]api.FunctionDefinition) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// encode converts a JSON number to a wasm value. Integers must be whole
// and in range: silently truncating 2.5 to 2 would hide a task bug.
// Integers up to 2^53 survive the float64 round trip exactly.
func encode(t api.ValueType, v float64) (uint64, error) {
	switch t {
	case api.ValueTypeI32:
		if v != math.Trunc(v) || v < math.MinInt32 || v > math.MaxUint32 {
			return 0, fmt.Errorf("%v is not an i32", v)
		}
		if v > math.MaxInt32 {
			return api.EncodeU32(uint32(v)), nil
		}
		return api.EncodeI32(int32(v)), nil
	case api.ValueTypeI64:
		if v != math.Trunc(v) || v < math.MinInt64 || v >= math.MaxInt64 {
			return 0, fmt.Errorf("%v is not an i64", v)
		}
		return api.EncodeI64(int64(v)), nil
	case api.ValueTypeF32:
		if math.Abs(v) > math.MaxFloat32 && !math.IsInf(v, 0) {
			return 0, fmt.Errorf("%v overflows f32", v)
		}
		return api.EncodeF32(float32(v)), nil
	case api.ValueTypeF64:
		return api.EncodeF64(v), nil
	default:
		return 0, fmt.Errorf("parameter type %s is not numeric", api.ValueTypeName(t))
	}
}

func decodeResults(types []api.ValueType, vals []uint64) []float64 {
	out := make([]float64, len(vals))
	for i, v := range vals {
		switch types[i] {
		case api.ValueTypeI32:
			out[i] = float64(api.DecodeI32(v))
		case api.ValueTypeI64:
			out[i] = float64(int64(v))
		case api.ValueTypeF32:
			out[i] = float64(api.DecodeF32(v))
		case api.ValueTypeF64:
			out[i] = api.DecodeF64(v)
		}
	}
	return out
}
