package operator_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// BenchmarkWasmTasks measures WasmTasks per second from create to
// Succeeded through the API server, the operator, the broker and one
// proplet, plus the percentiles of create-to-finish latency (client clock
// at create, status.finishedAt at the end; same host, same clock).
func BenchmarkWasmTasks(b *testing.B) {
	ns := newNamespace(b)
	url := serveModules(b, "arith")
	op := startOperator(b, ns, "")
	startProplet(b, op.mqttAddr, "bench", "--slots", "64")
	ctx := b.Context()
	// Warm the proplet's module and compilation caches.
	warm := newTask(ns, "warm", url+"/arith.wasm", func(s *v1.WasmTaskSpec) { s.Function = "add"; s.Inputs = []float64{1, 1} })
	require.NoError(b, k8s.Create(ctx, warm))
	waitPhase(b, ns, "warm", v1.TaskSucceeded)

	b.ResetTimer()
	start := time.Now()
	names := make(chan string)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created = map[string]time.Time{}
	)
	for range 16 {
		wg.Go(func() {
			for n := range names {
				wt := newTask(ns, n, url+"/arith.wasm", func(s *v1.WasmTaskSpec) { s.Function = "add"; s.Inputs = []float64{2, 3} })
				at := time.Now()
				if err := k8s.Create(ctx, wt); err != nil {
					b.Error(err)
				}
				mu.Lock()
				created[n] = at
				mu.Unlock()
			}
		})
	}
	for i := range b.N {
		names <- fmt.Sprintf("b-%06d", i)
	}
	close(names)
	wg.Wait()
	var done []v1.WasmTask
	require.Eventually(b, func() bool {
		list := &v1.WasmTaskList{}
		require.NoError(b, k8s.List(ctx, list, client.InNamespace(ns), client.MatchingFields{"status.phase": "Succeeded"}))
		done = list.Items
		return len(done) == b.N+1
	}, 10*time.Minute, 250*time.Millisecond) // a list per poll loads the API server: poll gently
	elapsed := time.Since(start)
	b.StopTimer()

	var lat []time.Duration
	for _, t := range done {
		if t.Name != "warm" {
			lat = append(lat, t.Status.FinishedAt.Sub(created[t.Name]))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
}
