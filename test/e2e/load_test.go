package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

// BenchmarkLoad is the load harness: trivial tasks (add(1, 2), inlined in
// the start command) submitted over REST to a real manager and 1 or 2 real
// proplets on loopback. It reports sustained throughput and the
// create-to-Succeeded latency measured by the manager's own timestamps.
//
//	go test -run '^$' -bench Load -benchtime 3000x ./test/e2e
func BenchmarkLoad(b *testing.B) {
	for _, proplets := range []int{1, 2} {
		b.Run(fmt.Sprintf("proplets=%d", proplets), func(b *testing.B) {
			s := benchSystem(b, proplets)
			add := exampletest.Build(b, "add")
			ctx := context.Background()
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Client.CreateTask(ctx, rest.TaskRequest{Name: "load", File: add, Function: "add", Inputs: []float64{1, 2}, Labels: map[string]string{"run": b.Name()}}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			submitted := time.Since(start)
			tasks := waitAll(b, s.Client, b.Name(), b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			lat := latencies(b, tasks)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			b.ReportMetric(float64(b.N)/submitted.Seconds(), "creates/s")
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		})
	}
	b.Run("lone-task", func(b *testing.B) {
		s := benchSystem(b, 1)
		add := exampletest.Build(b, "add")
		ctx := context.Background()
		var lat []time.Duration
		b.ResetTimer()
		for range b.N {
			t, err := s.Client.CreateTask(ctx, rest.TaskRequest{Name: "lone", File: add, Function: "add", Inputs: []float64{1, 2}})
			require.NoError(b, err)
			t, err = s.Client.WaitTask(ctx, t.ID, 200*time.Microsecond)
			require.NoError(b, err)
			require.Equal(b, "Succeeded", t.Phase)
			lat = append(lat, t.FinishedAt.Sub(t.CreatedAt))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchSystem(b *testing.B, proplets int) *harness.System {
	s := harness.NewSystem(b).WithoutValidation()
	s.StartManager("--log-level", "warn")
	var ids []string
	for i := range proplets {
		id := fmt.Sprintf("load-%d", i)
		s.StartProplet(id, "--slots", "256", "--log-level", "warn")
		ids = append(ids, id)
	}
	s.WaitAlive(ids...)
	return s
}

// waitAll waits until n tasks labelled run are terminal and returns them.
func waitAll(b testing.TB, c *rest.Client, run string, n int) []rest.Task {
	ctx := context.Background()
	require.Eventually(b, func() bool {
		l, err := c.ListTasks(ctx, rest.TaskFilter{Phases: []string{"Pending", "Scheduled", "Running"}, Labels: map[string]string{"run": run}, Page: rest.Page{Limit: 1}})
		return err == nil && len(l.Items) == 0
	}, 10*time.Minute, 5*time.Millisecond)
	var out []rest.Task
	f := rest.TaskFilter{Labels: map[string]string{"run": run}, Page: rest.Page{Limit: 1000}}
	for {
		l, err := c.ListTasks(ctx, f)
		require.NoError(b, err)
		out = append(out, l.Items...)
		if l.Continue == "" {
			break
		}
		f.Continue = l.Continue
	}
	require.Len(b, out, n)
	return out
}

func latencies(b testing.TB, tasks []rest.Task) []time.Duration {
	lat := make([]time.Duration, 0, len(tasks))
	for _, t := range tasks {
		require.Equal(b, "Succeeded", t.Phase, "%s: %s", t.Reason, t.Message)
		lat = append(lat, t.FinishedAt.Sub(t.CreatedAt))
	}
	slices.Sort(lat)
	return lat
}
