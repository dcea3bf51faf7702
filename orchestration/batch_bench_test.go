package orchestration_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
)

// nopDispatcher accepts every command; the benchmark measures creates.
type nopDispatcher struct{}

func (nopDispatcher) StartTask(context.Context, string, orchestration.Task, orchestration.StartWindow) error {
	return nil
}
func (nopDispatcher) StopTask(context.Context, string, string, int, string) error { return nil }

// BenchmarkSubmitBatch1000 creates 1,000 tasks per op on bbolt with fsync
// on, each placed on a free slot (so stored Scheduled in the create), by
// one SubmitBatch, with and without an idempotency key, and by Submit from
// one caller and from 64 concurrent ones. It reports tasks/s and the bbolt
// commits per 1,000 tasks.
func BenchmarkSubmitBatch1000(b *testing.B) {
	const n = orchestration.MaxBatchSize
	spec := orchestration.TaskSpec{Image: "oci://registry.local/app:v1", Name: "bench"}
	batch := make([]orchestration.TaskSpec, n)
	for i := range batch {
		batch[i] = spec
	}
	submitters := func(clients int) func(*orchestration.Engine, int) {
		return func(eng *orchestration.Engine, _ int) {
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := c; i < n; i += clients {
						if _, err := eng.Submit(context.Background(), spec); err != nil {
							panic(err)
						}
					}
				})
			}
			wg.Wait()
		}
	}
	cases := []struct {
		name string
		op   func(eng *orchestration.Engine, i int)
	}{
		{"SubmitBatch", func(eng *orchestration.Engine, _ int) {
			if _, _, err := eng.SubmitBatch(context.Background(), batch, orchestration.Idempotency{}); err != nil {
				panic(err)
			}
		}},
		{"SubmitBatch-key", func(eng *orchestration.Engine, i int) {
			idem := orchestration.Idempotency{Key: fmt.Sprintf("bench-%d", i), Fingerprint: "fp"}
			if _, _, err := eng.SubmitBatch(context.Background(), batch, idem); err != nil {
				panic(err)
			}
		}},
		{"Submit-1-caller", submitters(1)},
		{"Submit-64-callers", submitters(64)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), bolt.Options{})
			require.NoError(b, err)
			b.Cleanup(func() { _ = s.Close() })
			eng, err := orchestration.New(orchestration.Config{HeartbeatTimeout: time.Hour}, orchestration.Deps{Store: s, Dispatcher: nopDispatcher{}, Logger: quiet})
			require.NoError(b, err)
			require.NoError(b, eng.Recover(context.Background()))
			require.NoError(b, eng.PropletUp(context.Background(), orchestration.Proplet{ID: "p1", Slots: 1 << 30, Instance: "a"}))
			before, err := s.Stats()
			require.NoError(b, err)
			b.ResetTimer()
			for i := range b.N {
				c.op(eng, i)
			}
			b.StopTimer()
			after, err := s.Stats()
			require.NoError(b, err)
			require.Equal(b, b.N*n, after.Tasks)
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tasks/s")
			b.ReportMetric(float64(after.Commits-before.Commits)/float64(b.N), "commits/op")
		})
	}
}
