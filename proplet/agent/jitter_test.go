package agent_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The reconnect loop draws its jitter from the injected source.
func TestReconnectJitterUsesInjectedRandom(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens: every connect fails

	var draws atomic.Int64
	cfg := testConfig(t, "mqtt://"+addr, randID("p-"))
	cfg.Random = func() float64 { draws.Add(1); return 0.5 }
	startAgent(t, cfg, newFakeExec())
	require.Eventually(t, func() bool { return draws.Load() >= 3 }, waitFor, 5*time.Millisecond)
}
