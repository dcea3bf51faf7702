package agent_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
)

// BenchmarkEventThroughput measures events/s from the executor's return to
// the manager's subscriber: outbox append (fsync), QoS 1 publish, PUBACK,
// outbox removal, on loopback through the embedded mochi broker. Each
// iteration is one task producing accepted, running and succeeded.
func BenchmarkEventThroughput(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			br := startMochi(b)
			m := newManager(b, br.URL())
			id := randID("p-")
			cfg := testConfig(b, br.URL(), id)
			cfg.Slots = 1 << 20 // measure the event path, not admission
			cfg.HeartbeatInterval = time.Hour
			cfg.NoSync = !fsync
			var finished atomic.Int64
			done := make(chan struct{}, 1)
			want := atomic.Int64{}
			exec := agent.ExecutorFunc(func(ctx context.Context, st wire.StartTask, running func()) agent.Outcome {
				running()
				return agent.Outcome{Result: &wire.Result{Stdout: "ok"}}
			})
			a := startOnline(b, m, cfg, exec)
			m.mu.Lock()
			m.onEvent = func(e wire.Event) {
				if e.Type == wire.EventSucceeded && finished.Add(1) == want.Load() {
					done <- struct{}{}
				}
			}
			m.mu.Unlock()

			want.Store(int64(b.N))
			b.ResetTimer()
			// Commands are pipelined so the manager side does not limit the
			// proplet's rate.
			for i := range b.N {
				payload, err := wire.Encode(&wire.Command{Type: wire.CommandStart,
					Start: &wire.StartTask{TaskID: fmt.Sprint("bench-", i), Attempt: 1}})
				require.NoError(b, err)
				m.c.Publish(m.topics.Commands(id), 1, false, payload)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("only %d of %d tasks finished", finished.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(3*b.N)/b.Elapsed().Seconds(), "events/s")
			require.Eventually(b, func() bool { return a.Pending() == 0 }, waitFor, time.Millisecond)
		})
	}
}
