package orchestration

import (
	"fmt"
	"time"
)

// Policy names a placement policy.
type Policy string

// Placement policies.
const (
	// PolicyRoundRobin rotates over eligible proplets.
	PolicyRoundRobin Policy = "round-robin"
	// PolicyLeastLoaded picks the eligible proplet with the lowest share of
	// busy slots.
	PolicyLeastLoaded Policy = "least-loaded"
)

// Config tunes the engine. The zero value is usable: every zero field takes
// the default documented on it.
type Config struct {
	// Policy defaults to round-robin.
	Policy Policy
	// HeartbeatTimeout is how long a proplet may stay silent before it is
	// lost. Default 15s.
	HeartbeatTimeout time.Duration
	// DefaultTimeout bounds an attempt whose task sets no timeout, so
	// untrusted modules never run unbounded. Default 5m.
	DefaultTimeout time.Duration
	// DeadlineGrace is added to a task's timeout before the engine itself
	// gives up on an attempt; the proplet enforces the timeout exactly, the
	// grace covers fetch, compile and the trip back. Default 30s.
	DeadlineGrace time.Duration
	// DefaultMaxAttempts applies when a task sets none. Default 3.
	DefaultMaxAttempts int
	// BackoffBase and BackoffMax shape the retry delay: base * 2^(attempt-1),
	// capped, then spread over (delay/2, delay] by the engine's jitter.
	// Defaults 1s and 1m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// TickInterval is how often Run checks deadlines, liveness and the
	// queue. Default 500ms.
	TickInterval time.Duration
	// ReconcileGrace is how long an attempt may go unlisted in its
	// proplet's heartbeats before the engine starts asking for it again
	// (see Engine.Heartbeat). Default 10s.
	ReconcileGrace time.Duration
	// IdempotencyWindow is how long SubmitBatch remembers an idempotency
	// key: a retry within it is answered with the first call's tasks, a
	// later one creates new tasks. Tick prunes older keys. Default 24h.
	IdempotencyWindow time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Policy == "" {
		c.Policy = PolicyRoundRobin
	}
	if c.Policy != PolicyRoundRobin && c.Policy != PolicyLeastLoaded {
		return c, fmt.Errorf("unknown scheduling policy %q (want %s or %s): %w", c.Policy, PolicyRoundRobin, PolicyLeastLoaded, ErrInvalid)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 15*time.Second)
	def(&c.DefaultTimeout, 5*time.Minute)
	def(&c.DeadlineGrace, 30*time.Second)
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.TickInterval, 500*time.Millisecond)
	def(&c.ReconcileGrace, 10*time.Second)
	def(&c.IdempotencyWindow, 24*time.Hour)
	if c.DefaultMaxAttempts <= 0 {
		c.DefaultMaxAttempts = 3
	}
	return c, nil
}

// backoff returns the delay before the attempt after `attempt` failed ones.
func (c Config) backoff(attempt int) time.Duration {
	d := c.BackoffBase
	for i := 1; i < attempt && d < c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.BackoffMax)
}
