package exampletest

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// wasmMagic starts every WebAssembly binary.
var wasmMagic = []byte{0x00, 'a', 's', 'm'}

func TestBuild(t *testing.T) {
	for _, name := range []string{"hello", "arith", "cpu", "spin", "add", "loop", "membomb", "trap"} {
		t.Run(name, func(t *testing.T) {
			wasm := Build(t, name)
			require.True(t, bytes.HasPrefix(wasm, wasmMagic), "not a wasm binary")
			require.Equal(t, wasm, Build(t, name), "second build must come from the cache")
		})
	}
}
