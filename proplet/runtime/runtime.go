// Package runtime runs WebAssembly tasks on a proplet with wazero.
//
// One Runtime serves every task of a proplet. Modules are compiled once per
// sha256 digest and kept in a bounded in-memory LRU, and wazero's on-disk
// compilation cache lets a restarted proplet skip compiling modules it has
// seen before. Every Run instantiates a fresh module instance, so tasks share
// no guest state, and each is fenced by its own deadline, memory limit and
// cancellation: a module that traps, spins or hoards memory fails only its
// own task.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMemoryPages (64 MiB) is enough for a Go wasip1 program with a
	// modest heap while keeping a runaway module far from a device's RAM.
	DefaultMemoryPages = 1024
	// DefaultMaxMemoryPages (1 GiB) is the most any task may ask for.
	DefaultMaxMemoryPages = 16384
	// DefaultOutputTailBytes bounds captured stdout and stderr per task; a
	// chatty module must not grow proplet memory or MQTT messages unbounded.
	DefaultOutputTailBytes = 64 << 10
	// DefaultModuleCacheSize is how many compiled modules stay in memory.
	DefaultModuleCacheSize = 32
)

// wasmPageLimit is the WebAssembly 32-bit memory ceiling in pages (4 GiB).
const wasmPageLimit = 65536

// Config is fixed for the life of a Runtime; build it from flags once and
// pass it by value.
type Config struct {
	// CompilationCacheDir persists compiled machine code across restarts.
	// Empty keeps compiled code in memory only.
	CompilationCacheDir string
	// DefaultMemoryPages caps a task's linear memory (64 KiB pages) when
	// the task names no limit.
	DefaultMemoryPages uint32
	// MaxMemoryPages is the largest limit a task may request; asking for
	// more is an InvalidTask rather than a silent clamp, so the scheduler
	// learns the task does not fit.
	MaxMemoryPages uint32
	// DefaultTimeout bounds a task that names no timeout. Zero means no
	// deadline beyond the caller's context.
	DefaultTimeout time.Duration
	// OutputTailBytes is how many trailing bytes of stdout and of stderr a
	// Result keeps.
	OutputTailBytes int
	// ModuleCacheSize is how many compiled modules the in-memory LRU holds.
	ModuleCacheSize int
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxMemoryPages == 0 {
		c.MaxMemoryPages = DefaultMaxMemoryPages
	}
	if c.MaxMemoryPages > wasmPageLimit {
		return c, fmt.Errorf("max memory pages %d exceeds the wasm limit %d", c.MaxMemoryPages, wasmPageLimit)
	}
	if c.DefaultMemoryPages == 0 {
		c.DefaultMemoryPages = min(DefaultMemoryPages, c.MaxMemoryPages)
	}
	if c.DefaultMemoryPages > c.MaxMemoryPages {
		return c, fmt.Errorf("default memory pages %d exceed max memory pages %d", c.DefaultMemoryPages, c.MaxMemoryPages)
	}
	if c.OutputTailBytes <= 0 {
		c.OutputTailBytes = DefaultOutputTailBytes
	}
	if c.ModuleCacheSize <= 0 {
		c.ModuleCacheSize = DefaultModuleCacheSize
	}
	if c.DefaultTimeout < 0 {
		return c, errors.New("default timeout must not be negative")
	}
	return c, nil
}

// Runtime compiles and runs modules. It is safe for concurrent use; the
// caller bounds concurrency (the proplet's slots).
type Runtime struct {
	cfg     Config
	rt      wazero.Runtime
	cache   wazero.CompilationCache
	modules *moduleCache
	base    wazero.ModuleConfig

	mu     sync.RWMutex
	closed bool
}

// New starts a runtime with the compiler engine and WASI preview1.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	var cache wazero.CompilationCache
	if cfg.CompilationCacheDir != "" {
		cache, err = wazero.NewCompilationCacheWithDir(cfg.CompilationCacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	// The memory limit is enforced per task by the allocator in run.go, not
	// by WithMemoryLimitPages: that one is runtime-wide and would fail
	// memory.grow before the allocator could tell MemoryLimit from a trap.
	rc := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(true).
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateWASI(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	return &Runtime{
		cfg:     cfg,
		rt:      rt,
		cache:   cache,
		modules: newModuleCache(cfg.ModuleCacheSize),
		base:    baseModuleConfig(),
	}, nil
}

// Config returns the effective configuration, defaults filled in.
func (r *Runtime) Config() Config { return r.cfg }

// Close ends every running module, frees compiled code and closes the
// compilation cache (its disk contents stay for the next start).
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.modules.closeAll(ctx)
	err := r.rt.Close(ctx)
	if cerr := r.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Has reports whether the module with this digest is compiled and cached in
// memory, so a caller may skip fetching its bytes and Run by Digest alone.
func (r *Runtime) Has(digest string) bool { return r.modules.has(digest) }

// Precompile compiles a module ahead of its first Run (for example while
// the proplet is idle) and returns its digest and whether it was cached.
func (r *Runtime) Precompile(ctx context.Context, wasm []byte) (digest string, cacheHit bool, err error) {
	digest = Digest(wasm)
	m, hit, _, err := r.acquire(ctx, digest, func(context.Context) ([]byte, error) { return wasm, nil })
	if err != nil {
		return digest, false, err
	}
	r.modules.release(ctx, m)
	return digest, hit, nil
}

func (r *Runtime) isClosed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.closed
}

// acquire returns the compiled module for digest, compiling what load
// returns on a miss (and calling load only then). The caller must release
// it.
func (r *Runtime) acquire(ctx context.Context, digest string, load func(context.Context) ([]byte, error)) (*cachedModule, bool, time.Duration, error) {
	return r.modules.acquire(digest, func() (wazero.CompiledModule, shape, time.Duration, error) {
		wasm, err := load(context.WithoutCancel(ctx))
		if err != nil {
			return nil, shape{}, 0, &loadError{digest: digest, err: err}
		}
		if wasm == nil {
			return nil, shape{}, 0, errNotCached
		}
		if got := Digest(wasm); got != digest {
			return nil, shape{}, 0, fmt.Errorf("%w: module bytes hash to %s, job says %s", errDigestMismatch, got, digest)
		}
		start := time.Now()
		// The shape is read here, once per compiled module, because wazero
		// lists neither private memories nor tables; each Run checks it
		// against that task's limit.
		sh, err := readShape(wasm)
		if err != nil {
			return nil, shape{}, time.Since(start), err
		}
		bounded, err := boundTables(wasm)
		if err != nil {
			return nil, shape{}, time.Since(start), err
		}
		// Compilation is shared by every waiter on this digest, so one
		// caller's cancellation must not fail the others.
		cm, err := r.rt.CompileModule(context.WithoutCancel(ctx), bounded)
		return cm, sh, time.Since(start), err
	})
}
