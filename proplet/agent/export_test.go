package agent

import (
	"sync"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

// OutboxOf exposes the agent's outbox, for its fsync count and hooks.
func OutboxOf(a *Agent) *outbox.Outbox { return a.ob }

// AcceptClock replaces the timers of lazy acceptance: an attempt's
// acceptance is committed on its own only when a test fires it.
type AcceptClock struct {
	mu    sync.Mutex
	armed map[wire.TaskRef]func()
}

// ManualAcceptance installs an AcceptClock on a; call it before Run.
func ManualAcceptance(a *Agent) *AcceptClock {
	c := &AcceptClock{armed: map[wire.TaskRef]func(){}}
	a.acceptTimer = func(ref wire.TaskRef, _ time.Duration, f func()) func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.armed[ref] = f
		return func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			_, ok := c.armed[ref]
			delete(c.armed, ref)
			return ok
		}
	}
	return c
}

// Fire runs ref's armed acceptance as its timer would and returns once it
// is durable and the start command acknowledged; false if none was armed
// (the attempt ended or was never started).
func (c *AcceptClock) Fire(ref wire.TaskRef) bool {
	c.mu.Lock()
	f, ok := c.armed[ref]
	delete(c.armed, ref)
	c.mu.Unlock()
	if ok {
		f()
	}
	return ok
}

// Recorded reports whether ref's finish is durable in the ledger: until
// then a repeated start is taken for a redelivery of the running one.
func Recorded(a *Agent, ref wire.TaskRef) bool {
	a.mu.Lock()
	_, finishing := a.finishing[ref]
	a.mu.Unlock()
	return !finishing && a.led.Result(ref) != nil
}
