package runtime_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/runtime"
)

// startTrap is (module (memory 1) (func $s unreachable) (export "_start"
// (func $s)) (start $s)): its start function traps during instantiation,
// after wazero built its memory, and wazero closes nothing on that path.
var startTrap = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
	0x03, 0x02, 0x01, 0x00, // function 0: type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export _start
	0x08, 0x01, 0x00, // start: function 0
	0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: unreachable
}

// TestLinearMemoriesUnmapped runs tasks that end every way a task can,
// concurrently, and checks each run unmapped the linear memory it mapped.
func TestLinearMemoriesUnmapped(t *testing.T) {
	require.Zero(t, runtime.LiveMappings())
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	cases := []struct {
		job    runtime.Job
		reason string
	}{
		{runtime.Job{Wasm: exampletest.Build(t, "arith"), Function: "add", Inputs: []float64{2, 3}}, ""},
		{runtime.Job{Wasm: exampletest.Build(t, "hello"), Args: []string{"x"}}, ""},
		{runtime.Job{Wasm: exampletest.Build(t, "membomb"), MemoryPages: 64}, wire.ReasonMemoryLimit},
		{runtime.Job{Wasm: exampletest.Build(t, "trap")}, wire.ReasonTrap},
		{runtime.Job{Wasm: exampletest.Build(t, "loop"), Timeout: 50 * time.Millisecond}, wire.ReasonDeadlineExceeded},
		{runtime.Job{Wasm: startTrap}, wire.ReasonTrap},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := range 3 * len(cases) {
				tc := cases[(w+i)%len(cases)]
				res := rt.Run(ctx, tc.job)
				if res.Reason != tc.reason {
					errs <- fmt.Errorf("case %d: reason %q (%s), want %q", (w+i)%len(cases), res.Reason, res.Error, tc.reason)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Zero(t, runtime.LiveMappings(), "every linear memory unmapped")
}

// spinMem is (module (memory 1) (func (export "_start") (loop $l
// (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
// (br $l)))): it uses its memory until it is stopped.
var spinMem = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
	0x03, 0x02, 0x01, 0x00,
	0x05, 0x03, 0x01, 0x00, 0x01,
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
	0x0a, 0x16, 0x01, 0x14, 0x00,
	0x03, 0x40, // loop
	0x41, 0x00, 0x41, 0x00, 0x28, 0x02, 0x00, // i32.const 0; i32.load (i32.const 0)
	0x41, 0x01, 0x6a, 0x36, 0x02, 0x00, // i32.const 1; i32.add; i32.store
	0x0c, 0x00, 0x0b, 0x0b, // br 0; end; end
}

// TestCloseWhileRunningKeepsMemoryMapped closes the runtime while a guest
// uses its memory: wazero frees the instance's memory from Runtime.Close on
// this goroutine, so the mapping must outlive the guest, and the run
// unmaps it when it returns.
func TestCloseWhileRunningKeepsMemoryMapped(t *testing.T) {
	require.Zero(t, runtime.LiveMappings())
	rt, err := runtime.New(context.Background(), runtime.Config{CompilationCacheDir: sharedCacheDir})
	require.NoError(t, err)
	done := make(chan runtime.Result, 1)
	go func() { done <- rt.Run(context.Background(), runtime.Job{Wasm: spinMem, Timeout: guard}) }()
	if runtime.MmapBacked {
		require.Eventually(t, func() bool { return runtime.LiveMappings() == 1 }, guard, time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // well into the loop
	require.NoError(t, rt.Close(context.Background()))
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("run did not end after Close")
	}
	require.Zero(t, runtime.LiveMappings())
}
