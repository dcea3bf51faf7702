package agent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestManagerClockJudgesOnTheManagersTime(t *testing.T) {
	local := time.Now()
	for _, skew := range []time.Duration{0, time.Hour, -time.Hour} {
		var c managerClock
		mgr := local.Add(skew)
		// The first start sets the estimate; prompt ones never expire.
		require.False(t, c.expired(mgr, mgr.Add(15*time.Second), local))
		require.False(t, c.expired(mgr.Add(time.Second), mgr.Add(16*time.Second), local.Add(time.Second+time.Millisecond)))
		// One that sat 20s in the broker is past its 15s window.
		at := local.Add(time.Minute)
		require.True(t, c.expired(mgr.Add(40*time.Second), mgr.Add(55*time.Second), at), "skew %v", skew)
		require.False(t, c.expired(mgr.Add(50*time.Second), mgr.Add(65*time.Second), at), "skew %v: 10s late is in the window", skew)
	}
}

func TestManagerClockUnfenced(t *testing.T) {
	var c managerClock
	require.False(t, c.expired(time.Time{}, time.Time{}, time.Now()))
	require.False(t, c.expired(time.Now(), time.Time{}, time.Now()))
}

// A manager clock stepped backwards makes starts look old; the estimate
// falls behind by the drift allowance until it has caught up, never ahead.
func TestManagerClockStepBack(t *testing.T) {
	var c managerClock
	local := time.Now()
	require.False(t, c.expired(local, local.Add(15*time.Second), local))
	// The manager's clock steps 5s back: still within the window.
	require.False(t, c.expired(local.Add(time.Second-5*time.Second), local.Add(16*time.Second-5*time.Second), local.Add(time.Second)))
	// 30s back: refused at first, accepted again once the allowance
	// (1 ms per s) has covered the 15s excess.
	later := local.Add(time.Hour)
	require.True(t, c.expired(later.Add(-30*time.Second), later.Add(-15*time.Second), later))
	muchLater := local.Add(5 * time.Hour)
	require.False(t, c.expired(muchLater.Add(-30*time.Second), muchLater.Add(-15*time.Second), muchLater))
}
