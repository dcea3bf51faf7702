package runtime

import (
	"context"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// limitedAllocator backs each memory of one instance and refuses to grow it
// past limit bytes. It is installed per Run through the context because
// wazero's own limit (RuntimeConfig.WithMemoryLimitPages) is fixed for the
// whole runtime, while every task carries its own. refused records that a
// growth was denied, so a later trap or exit is reported as MemoryLimit.
type limitedAllocator struct {
	limit   uint64
	refused atomic.Bool
}

func withAllocator(ctx context.Context, a *limitedAllocator) context.Context {
	return experimental.WithMemoryAllocator(ctx, a)
}

func (a *limitedAllocator) Allocate(_, _ uint64) experimental.LinearMemory {
	return &limitedMemory{a: a}
}

type limitedMemory struct {
	a   *limitedAllocator
	buf []byte
}

// Reallocate grows geometrically up to the limit so a module growing one
// page at a time does not copy its memory on every step. The spare capacity
// is zero (make) and memory never shrinks, so reslicing into it exposes
// only zeros, as memory.grow requires.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit && m.buf != nil {
		m.a.refused.Store(true)
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	capacity := max(size, min(2*uint64(cap(m.buf)), m.a.limit))
	buf := make([]byte, size, capacity)
	copy(buf, m.buf)
	m.buf = buf
	return buf
}

func (m *limitedMemory) Free() { m.buf = nil }
