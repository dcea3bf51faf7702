package agent

import (
	"sync"
	"time"
)

// driftAllowance is how fast the estimate of the manager's clock is let
// fall behind, as a fraction of elapsed time: it covers clocks that run at
// slightly different rates, and lets the estimate recover (1 ms a second)
// from a manager clock stepped backwards.
const driftAllowance = 1e-3

// managerClock estimates the manager's clock from the Sent stamps of the
// starts it receives, so a start's NotAfter is judged on the manager's
// time whatever this proplet's clock says. Every start arrives some delay
// d >= 0 after it was sent, so local - sent = offset + d, and the least
// such value seen is the offset plus the shortest delay: the estimate
// local - least is never ahead of the manager's clock. A start that sat in
// the broker while this proplet was paused or cut off shows its age
// against starts that came promptly. Local time is monotonic, so this
// proplet's own clock steps change nothing. The zero value is ready.
type managerClock struct {
	mu    sync.Mutex
	base  time.Time     // monotonic origin of local time
	least int64         // least local - sent seen, in ns; valid when set
	at    time.Duration // local time of that sample
	set   bool
}

// expired records a start sent at sent (manager time) and reports whether
// it arrived after notAfter, by the estimate of the manager's clock. A
// zero sent or notAfter is never expired: a manager that does not fence.
func (c *managerClock) expired(sent, notAfter time.Time, now time.Time) bool {
	if sent.IsZero() || notAfter.IsZero() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base.IsZero() {
		c.base = now
	}
	local := now.Sub(c.base)
	sample := int64(local) - sent.UnixNano()
	if !c.set || sample < c.offset(local) {
		c.least, c.at, c.set = sample, local, true
	}
	managerNow := int64(local) - c.offset(local)
	return managerNow > notAfter.UnixNano()
}

// offset is the least sample, let grow with the time since it was taken.
func (c *managerClock) offset(local time.Duration) int64 {
	return c.least + int64(float64(local-c.at)*driftAllowance)
}
