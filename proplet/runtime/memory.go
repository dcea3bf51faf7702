package runtime

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// maxReserve caps the address space one linear memory maps up front: 4 GiB
// is all a 32-bit wasm memory can address.
const maxReserve = 4 << 30

// liveMappings counts mapped linear memories not yet unmapped; tests check
// it returns to zero.
var liveMappings atomic.Int64

// limitedAllocator backs each memory of one instance and refuses to grow it
// past limit bytes. It is installed per Run through the context because
// wazero's own limit (RuntimeConfig.WithMemoryLimitPages) is fixed for the
// whole runtime, while every task carries its own. refused records that a
// growth was denied, so a later trap or exit is reported as MemoryLimit.
//
// Where the platform has mmap (memory_mmap.go), each memory reserves its
// whole limit as an anonymous private mapping when it is created: growing
// is a reslice, with no copy and no clearing (the kernel hands out zero
// pages on first touch), and no Go heap or GC work per task. Elsewhere, or
// when mmap fails, memories are Go slices grown geometrically.
//
// Mappings are unmapped by release, which Run defers on its own goroutine
// so that it runs after the module is closed and no guest code can touch
// them: wazero calls Free from Module.Close, but also from Runtime.Close,
// which may run while the guest executes, and not at all when
// instantiation fails after the memory was built.
type limitedAllocator struct {
	limit   uint64
	refused atomic.Bool

	mu       sync.Mutex
	mems     []*limitedMemory
	released bool
}

func withAllocator(ctx context.Context, a *limitedAllocator) context.Context {
	return experimental.WithMemoryAllocator(ctx, a)
}

// Allocate is called by wazero for each memory of the instance; maxBytes is
// the memory's declared (or wazero's) maximum.
func (a *limitedAllocator) Allocate(_, maxBytes uint64) experimental.LinearMemory {
	m := &limitedMemory{a: a, max: maxBytes}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.released {
		m.heapOnly = true // never mapped, so nothing is left to unmap
	} else {
		a.mems = append(a.mems, m)
	}
	return m
}

// release unmaps every memory this allocator mapped. Run calls it once the
// instance is closed (or failed to instantiate) and no guest code runs.
func (a *limitedAllocator) release() {
	a.mu.Lock()
	mems := a.mems
	a.mems, a.released = nil, true
	a.mu.Unlock()
	for _, m := range mems {
		m.unmap()
	}
}

type limitedMemory struct {
	a   *limitedAllocator
	max uint64
	buf []byte
	// mapping is the whole mmap reservation buf slices, nil when buf is on
	// the Go heap.
	mapping  []byte
	started  bool
	heapOnly bool
}

// Reallocate grows the memory up to the limit. The spare capacity past
// len(buf) is never written (zero pages of the mapping, or make's zeros)
// and memory never shrinks, so reslicing into it exposes only zeros, as
// memory.grow requires. The first call sizes the initial memory, which
// plan already checked against the limit for every memory the module
// declares.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	// The initial size is refused too (wazero then panics, which Run
	// reports): plan checked every declared minimum, and this holds should
	// a memory ever escape that check.
	if size > m.a.limit {
		m.a.refused.Store(true)
		return nil
	}
	if !m.started {
		m.started = true
		m.buf = []byte{} // not nil, which would read as refused
		m.reserve(size)
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// On the heap, grow geometrically up to the limit so a module growing
	// one page at a time does not copy its memory on every step. A mapping
	// covers every size Reallocate can be asked for, so it never gets
	// here; if it did, the mapping stays until release.
	capacity := max(size, min(2*uint64(cap(m.buf)), m.a.limit))
	buf := make([]byte, size, capacity)
	copy(buf, m.buf)
	m.buf = buf
	return buf
}

// reserve maps the largest size this memory may reach: its limit, or its
// declared maximum when lower (wazero never asks for more), and at least
// the initial size. On failure buf stays on the heap.
func (m *limitedMemory) reserve(size uint64) {
	if m.heapOnly {
		return
	}
	n := min(m.a.limit, uint64(maxReserve))
	if m.max > 0 {
		n = min(n, m.max)
	}
	n = max(n, size)
	if n == 0 || n > math.MaxInt {
		return
	}
	mapping, err := mapMemory(int(n))
	if err != nil {
		return
	}
	liveMappings.Add(1)
	m.mapping, m.buf = mapping, mapping[:0]
}

func (m *limitedMemory) unmap() {
	if m.mapping == nil {
		return
	}
	if err := unmapMemory(m.mapping); err == nil {
		liveMappings.Add(-1)
	}
	m.mapping, m.buf = nil, nil
}

// Free is called by wazero when the instance closes. It leaves the mapping
// to release: Runtime.Close frees the memories of instances that may still
// be running on another goroutine.
func (m *limitedMemory) Free() {}
