package fltest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration/fl"
)

// AcceptedSamples sums the samples of a round's accepted updates.
func AcceptedSamples(r *fl.Round) int64 {
	var n int64
	for _, u := range r.Updates {
		n += u.NumSamples
	}
	return n
}

// RequireSamplesAfterCrash checks a job's checkpoints after its manager
// died in round crashRound with `accepted` samples already counted: every
// other round covers all `total` samples; that round keeps every update
// accepted before the crash and counts none twice. It may hold fewer than
// total: an update the embedded broker had taken but the manager had not
// handled dies with the process, and the round closes without it.
func RequireSamplesAfterCrash(t *testing.T, cps []fl.Checkpoint, crashRound int, accepted, total int64) {
	t.Helper()
	for _, c := range cps {
		if c.Round == crashRound {
			require.GreaterOrEqual(t, c.TotalSamples, accepted, "round %d lost an accepted update", c.Round)
			require.LessOrEqual(t, c.TotalSamples, total, "round %d counted an update twice", c.Round)
			continue
		}
		require.Equal(t, total, c.TotalSamples, "round %d", c.Round)
	}
}
