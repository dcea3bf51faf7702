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

// BenchmarkEventThroughput measures tasks/s through one proplet on loopback
// through the embedded mochi broker: start command, trivial execution,
// terminal event published while its record (which also stands for the
// acceptance of so short an attempt) is committed, PUBACK and outbox
// removal. The manager keeps `slots` tasks in flight (a closed loop,
// like a scheduler that fills every free slot), so concurrency is what the
// proplet advertises and no start is refused for capacity.
func BenchmarkEventThroughput(b *testing.B) {
	cases := []struct {
		slots int
		fsync bool
	}{{1, true}, {8, true}, {64, true}, {64, false}}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("slots=%d/fsync=%v", tc.slots, tc.fsync), func(b *testing.B) {
			br := startMochi(b)
			m := newManager(b, br.URL())
			id := randID("p-")
			cfg := testConfig(b, br.URL(), id)
			cfg.Slots = tc.slots
			cfg.HeartbeatInterval = time.Hour
			cfg.NoSync = !tc.fsync
			exec := agent.ExecutorFunc(func(ctx context.Context, st wire.StartTask, running func()) agent.Outcome {
				running()
				return agent.Outcome{Result: &wire.Result{Stdout: "ok"}}
			})
			a := startOnline(b, m, cfg, exec)

			n := b.N
			var finished, failed atomic.Int64
			done := make(chan struct{})
			// One token per free slot; a terminal event returns one.
			free := make(chan struct{}, n+tc.slots)
			for range tc.slots {
				free <- struct{}{}
			}
			m.mu.Lock()
			m.onEvent = func(e wire.Event) {
				switch e.Type {
				case wire.EventFailed:
					failed.Add(1)
				case wire.EventSucceeded:
				default:
					return
				}
				free <- struct{}{}
				if finished.Add(1) == int64(n) {
					close(done)
				}
			}
			m.mu.Unlock()

			b.ResetTimer()
			go func() {
				for i := range n {
					select {
					case <-free:
					case <-done:
						return
					}
					payload, err := wire.Encode(&wire.Command{Type: wire.CommandStart,
						Start: &wire.StartTask{TaskID: fmt.Sprint("bench-", i), Attempt: 1}})
					if err != nil {
						panic(err)
					}
					m.c.Publish(m.topics.Commands(id), 1, false, payload)
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("only %d of %d tasks finished", finished.Load(), n)
			}
			b.StopTimer()
			require.Zero(b, failed.Load(), "no task may fail")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tasks/s")
			b.ReportMetric(float64(3*n)/b.Elapsed().Seconds(), "events/s")
			require.Eventually(b, func() bool { return a.Pending() == 0 }, waitFor, time.Millisecond)
		})
	}
}
