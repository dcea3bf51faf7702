package orchestration_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

// A deterministic failure fails the task at once: retrying would burn
// every attempt on the same error.
func TestDeterministicFailuresAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		reason string
		spec   orchestration.TaskSpec
	}{
		{"InvalidModule", orchestration.TaskSpec{MaxAttempts: 3}},
		{"InvalidTask", orchestration.TaskSpec{MaxAttempts: 3}},
		{"MemoryLimit", orchestration.TaskSpec{MaxAttempts: 3, MemoryPages: 16}},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("p1", 1, nil)
			task := h.submit(tc.spec)
			require.True(t, h.fail(task.ID, 1, tc.reason))

			got := h.get(task.ID)
			require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
			require.Equal(t, tc.reason, got.Status.Reason)
			require.Equal(t, 1, got.Status.Attempt)
			require.Contains(t, got.Status.Message, "boom")
			require.Contains(t, got.Status.Message, "not retried")
			require.Contains(t, got.Status.Message, "1 of 3 attempts")
			h.clock.Advance(time.Hour)
			h.eng.Tick(h.ctx)
			require.Len(t, h.disp.starts(), 1)
		})
	}
}

// A MemoryLimit under a proplet's default limit may pass on a proplet with
// a larger one, and a trap may be a flaky module: both are retried.
func TestRetryableFailuresAreRetried(t *testing.T) {
	for _, reason := range []string{"MemoryLimit", "Trap", "ArtifactError"} {
		t.Run(reason, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("p1", 1, nil)
			task := h.submit(orchestration.TaskSpec{MaxAttempts: 3})
			require.True(t, h.fail(task.ID, 1, reason))
			require.Equal(t, orchestration.PhasePending, h.get(task.ID).Status.Phase)
		})
	}
}

// A start the dispatcher cannot even build (a bad module reference) is
// the task's fault, not the proplet's: it fails InvalidTask at once.
func TestInvalidStartFailsAtOnce(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	h.disp.fail = fmt.Errorf("bad blob reference: %w", orchestration.ErrInvalid)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 3})
	got := h.get(task.ID)
	require.Equal(t, orchestration.PhaseFailed, got.Status.Phase)
	require.Equal(t, orchestration.ReasonInvalidTask, got.Status.Reason)
	require.Contains(t, got.Status.Message, "not retried")

	h.disp.fail = errors.New("broker unreachable")
	task = h.submit(orchestration.TaskSpec{MaxAttempts: 3})
	got = h.get(task.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase, "a transport failure is retried")
	require.Equal(t, orchestration.ReasonDispatchFailed, got.Status.Reason)
}

// Retry delays carry equal jitter from the injected source: (d/2, d].
func TestBackoffJitter(t *testing.T) {
	h := newHarness(t, testCfg)
	h.random = 0.5
	h.restart()
	h.join("p1", 1, nil)
	task := h.submit(orchestration.TaskSpec{MaxAttempts: 4})

	require.True(t, h.fail(task.ID, 1, "Trap"))
	require.Equal(t, h.clock.Now().Add(750*time.Millisecond), h.get(task.ID).Status.NotBefore, "1s spread by half of its half")
	h.clock.Advance(750 * time.Millisecond)
	h.eng.Tick(h.ctx)
	require.Len(t, h.disp.starts(), 2)

	h.random = 0.999
	require.True(t, h.fail(task.ID, 2, "Trap"))
	nb := h.get(task.ID).Status.NotBefore
	require.True(t, nb.After(h.clock.Now().Add(time.Second)), "never under half of the 2s backoff: %v", nb.Sub(h.clock.Now()))
	require.False(t, nb.After(h.clock.Now().Add(2*time.Second)))
}
