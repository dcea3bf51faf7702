package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

// BenchmarkBatchCreate measures creates over REST from this process (the
// client) to a real manager process: 1,000 tasks per op, by one
// POST /v1/tasks:batch (with and without an Idempotency-Key) or by 1,000
// POST /v1/tasks from 1 or 32 concurrent clients. The tasks are created
// suspended, so the op is the create path alone (HTTP, validation, one
// durable write); run-to-Succeeded is the load harness's workload sent
// in batches, to a real proplet.
//
//	go test -run '^$' -bench BatchCreate -benchtime 20x ./test/e2e
func BenchmarkBatchCreate(b *testing.B) {
	const n = 1000
	add := exampletest.Build(b, "add")
	reqs := func(run string, suspend bool) []rest.TaskRequest {
		out := make([]rest.TaskRequest, n)
		for i := range out {
			out[i] = rest.TaskRequest{Name: "batch", File: add, Function: "add", Inputs: []float64{1, 2}, Suspend: suspend, Labels: map[string]string{"run": run}}
		}
		return out
	}
	singles := func(clients int) func(*testing.B, *rest.Client, []rest.TaskRequest, int) {
		return func(b *testing.B, c *rest.Client, rs []rest.TaskRequest, _ int) {
			var next atomic.Int64
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(len(rs)); i = next.Add(1) - 1 {
						if _, err := c.CreateTask(context.Background(), rs[i]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
	}
	batch := func(keyed bool) func(*testing.B, *rest.Client, []rest.TaskRequest, int) {
		return func(b *testing.B, c *rest.Client, rs []rest.TaskRequest, op int) {
			var opts []rest.CallOption
			if keyed {
				opts = append(opts, rest.WithIdempotencyKey(fmt.Sprintf("bench-%s-%d", b.Name(), op)))
			}
			if _, err := c.CreateTasks(context.Background(), rs, opts...); err != nil {
				b.Error(err)
			}
		}
	}
	for _, c := range []struct {
		name string
		op   func(*testing.B, *rest.Client, []rest.TaskRequest, int)
	}{
		{"batch", batch(false)},
		{"batch-key", batch(true)},
		{"single-1-client", singles(1)},
		{"single-32-clients", singles(32)},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := harness.NewSystem(b)
			s.StartManager("--log-level", "warn")
			rs := reqs(b.Name(), true)
			b.ResetTimer()
			for i := range b.N {
				c.op(b, s.Client, rs, i)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "creates/s")
			l, err := s.Client.ListTasks(context.Background(), rest.TaskFilter{Labels: map[string]string{"run": b.Name()}, Phases: []string{rest.PhasePending}, Page: rest.Page{Limit: 1}})
			require.NoError(b, err)
			require.NotEmpty(b, l.Items)
		})
	}
	b.Run("run-to-Succeeded", func(b *testing.B) {
		s := benchSystem(b, 1)
		rs := reqs(b.Name(), false)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			_, err := s.Client.CreateTasks(context.Background(), rs)
			require.NoError(b, err)
		}
		submitted := time.Since(start)
		tasks := waitAll(b, s.Client, b.Name(), b.N*n)
		elapsed := time.Since(start)
		b.StopTimer()
		lat := latencies(b, tasks)
		b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "tasks/s")
		b.ReportMetric(float64(b.N*n)/submitted.Seconds(), "creates/s")
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	})
}
