package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/runtime"
)

// FuzzRun loads arbitrary bytes as a module, which is what a task's
// artifact can be: the runtime must answer with a result or a known
// failure reason within the task's bounds, and never panic or hang.
func FuzzRun(f *testing.F) {
	for _, name := range []string{"add", "trap", "loop", "membomb"} {
		f.Add(exampletest.Build(f, name), "")
	}
	f.Add(exampletest.Build(f, "add"), "add")
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), "")
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x05\x03\x01\x00\x01"), "")
	f.Add([]byte("not wasm"), "run")
	rt, err := runtime.New(context.Background(), runtime.Config{MaxMemoryPages: 64})
	require.NoError(f, err)
	f.Cleanup(func() { _ = rt.Close(context.Background()) })
	known := map[string]bool{"": true}
	for _, r := range []string{wire.ReasonDeadlineExceeded, wire.ReasonStopped, wire.ReasonTrap, wire.ReasonExitCode,
		wire.ReasonMemoryLimit, wire.ReasonArtifact, wire.ReasonInvalidModule, wire.ReasonInvalidTask} {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, wasm []byte, function string) {
		if len(wasm) > 64<<10 {
			return // bounded: large inputs only slow the fuzzer down
		}
		res := rt.Run(context.Background(), runtime.Job{Wasm: wasm, Function: function, Inputs: []float64{1, 2},
			Timeout: 200 * time.Millisecond, MemoryPages: 16})
		require.True(t, known[res.Reason], "unknown reason %q: %s", res.Reason, res.Error)
		if res.Reason != "" {
			require.NotEmpty(t, res.Error, "reason %s without an explanation", res.Reason)
		}
	})
}
