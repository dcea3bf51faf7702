package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasiEFAULT is WASI preview1's errno for an address outside memory.
const wasiEFAULT = 21

// environ is a task's environment as WASI hands it out: "KEY=value" entries
// and their total size with NUL terminators.
type environ struct {
	entries [][]byte
	size    uint32
}

type environKey struct{}

// newEnviron builds the environment in one pass, sorted by key. It replaces
// wazero's ModuleConfig.WithEnv, which copies every variable set so far on
// each call: 20,000 variables cost 2*10^8 map copies (12 s) before the
// deadline even started.
func newEnviron(env map[string]string) (environ, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return environ{}, fmt.Errorf("invalid environment variable name %q", k)
		}
		if strings.ContainsRune(env[k], 0) {
			return environ{}, fmt.Errorf("environment variable %q: value contains a NUL byte", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e := environ{entries: make([][]byte, len(keys))}
	var size uint64
	for i, k := range keys {
		e.entries[i] = []byte(k + "=" + env[k])
		size += uint64(len(e.entries[i])) + 1
	}
	if size > 1<<31 {
		return environ{}, fmt.Errorf("environment of %d bytes is too large", size)
	}
	e.size = uint32(size)
	return e, nil
}

func withEnviron(ctx context.Context, e environ) context.Context {
	return context.WithValue(ctx, environKey{}, e)
}

// instantiateWASI instantiates WASI preview1 with environ_get and
// environ_sizes_get reading the environment from the call's context, where
// Run puts the task's, instead of from the module config.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get")
	_, err := b.Instantiate(ctx)
	return err
}

func contextEnviron(ctx context.Context) environ {
	e, _ := ctx.Value(environKey{}).(environ)
	return e
}

func environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	e := contextEnviron(ctx)
	mem := mod.Memory()
	if mem == nil || !mem.WriteUint32Le(uint32(stack[0]), uint32(len(e.entries))) || !mem.WriteUint32Le(uint32(stack[1]), e.size) {
		stack[0] = wasiEFAULT
		return
	}
	stack[0] = 0
}

func environGet(ctx context.Context, mod api.Module, stack []uint64) {
	e := contextEnviron(ctx)
	mem := mod.Memory()
	offsets, bufAt := uint32(stack[0]), uint32(stack[1])
	var ptrs, buf []byte
	ok := mem != nil
	if ok {
		ptrs, ok = mem.Read(offsets, uint32(4*len(e.entries)))
	}
	if ok {
		buf, ok = mem.Read(bufAt, e.size)
	}
	if !ok {
		stack[0] = wasiEFAULT
		return
	}
	at := uint32(0)
	for i, entry := range e.entries {
		binary.LittleEndian.PutUint32(ptrs[4*i:], bufAt+at)
		at += uint32(copy(buf[at:], entry))
		buf[at] = 0
		at++
	}
	stack[0] = 0
}
