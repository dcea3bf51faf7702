package link

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

func TestJittered(t *testing.T) {
	d := 4 * time.Second
	require.Equal(t, d, jittered(d, 0))
	require.Equal(t, 3*time.Second, jittered(d, 0.5))
	require.Equal(t, 2*time.Second, jittered(d, 1))
	require.Equal(t, 2*time.Second, jittered(d, 9))
}

type nopSink struct{}

func (nopSink) PropletUp(context.Context, orchestration.Proplet) error   { return nil }
func (nopSink) PropletDown(context.Context, string) error                { return nil }
func (nopSink) Heartbeat(context.Context, orchestration.Heartbeat) error { return nil }
func (nopSink) RecordEvent(context.Context, orchestration.TaskEvent) (bool, error) {
	return false, nil
}

// Start's connect loop, and paho's reconnects after the first, draw their
// jitter from the injected source.
func TestConnectJitterUsesInjectedRandom(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	var draws atomic.Int64
	l, err := New(Config{BrokerURL: "mqtt://" + addr, Random: func() float64 { draws.Add(1); return 0.5 }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Start(ctx, nopSink{}) }()
	require.Eventually(t, func() bool { return draws.Load() >= 3 }, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.Error(t, <-done)

	before := draws.Load()
	l.reconnectJitter() // the first reconnect attempt goes at once
	require.Equal(t, before, draws.Load())
	l.cfg.Random = func() float64 { draws.Add(1); return 0 }
	l.reconnectJitter()
	require.Equal(t, before+1, draws.Load())
}
