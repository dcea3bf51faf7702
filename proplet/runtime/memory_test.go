package runtime

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const page = 65536

func TestLimitedMemoryGrowsZeroedWithinLimit(t *testing.T) {
	before := liveMappings.Load()
	a := &limitedAllocator{limit: 16 * page}
	lm := a.Allocate(page, 65536*page)
	m := lm.(*limitedMemory)

	buf := lm.Reallocate(page)
	require.Len(t, buf, page)
	if mmapBacked {
		require.NotNil(t, m.mapping, "mapped")
		require.Len(t, m.mapping, 16*page, "reserves the limit")
		require.Equal(t, before+1, liveMappings.Load())
	}
	require.Equal(t, make([]byte, page), buf, "initial memory is zero")
	for i := range buf {
		buf[i] = 0xa5
	}

	for _, pages := range []int{2, 3, 7, 16} {
		grown := lm.Reallocate(uint64(pages * page))
		require.Len(t, grown, pages*page)
		require.Equal(t, byte(0xa5), grown[page-1], "contents kept")
		for i := len(buf); i < len(grown); i++ {
			if grown[i] != 0 {
				t.Fatalf("grown to %d pages: byte %d is %#x, want 0", pages, i, grown[i])
			}
		}
		for i := len(buf); i < len(grown); i++ {
			grown[i] = 0x5a
		}
		if mmapBacked {
			require.Same(t, &m.mapping[0], &grown[0], "growth does not move the memory")
		}
		buf = grown
	}
	require.False(t, a.refused.Load())

	require.Nil(t, lm.Reallocate(17*page), "growth past the limit is refused")
	require.True(t, a.refused.Load())

	lm.Free() // as wazero's Close: the mapping stays for release
	a.release()
	require.Equal(t, before, liveMappings.Load())
	require.Nil(t, m.mapping)
	a.release() // idempotent
	require.Equal(t, before, liveMappings.Load())
}

func TestLimitedMemoryReservesDeclaredMaximum(t *testing.T) {
	if !mmapBacked {
		t.Skip("memories are on the heap on this platform")
	}
	a := &limitedAllocator{limit: 1024 * page}
	defer a.release()
	m := a.Allocate(0, 4*page).(*limitedMemory)
	require.Len(t, m.Reallocate(page), page)
	require.Len(t, m.mapping, 4*page, "no more than the module can ever use")

	// A memory starting above the limit is refused outright (plan refuses
	// such a module first; this is the allocator's own guard).
	b := &limitedAllocator{limit: 2 * page}
	defer b.release()
	big := b.Allocate(0, 65536*page).(*limitedMemory)
	require.Nil(t, big.Reallocate(3*page))
	require.True(t, b.refused.Load())
	require.Nil(t, big.mapping, "nothing mapped for a refused memory")

	// A zero-page memory maps nothing.
	z := (&limitedAllocator{limit: 0}).Allocate(0, 0).(*limitedMemory)
	require.NotNil(t, z.Reallocate(0))
	require.Nil(t, z.mapping)
}

func TestLimitedMemoryHeapFallback(t *testing.T) {
	before := liveMappings.Load()
	a := &limitedAllocator{limit: 8 * page}
	a.release() // an allocation after release never maps
	lm := a.Allocate(0, 65536*page)
	buf := lm.Reallocate(page)
	require.Nil(t, lm.(*limitedMemory).mapping)
	for i := range buf {
		buf[i] = 1
	}
	grown := lm.Reallocate(3 * page)
	require.Equal(t, byte(1), grown[page-1])
	require.Equal(t, make([]byte, 2*page), grown[page:])
	require.Nil(t, lm.Reallocate(9*page))
	require.True(t, a.refused.Load())
	require.Equal(t, before, liveMappings.Load())
}
