package orchestration

import (
	"context"
	"time"
)

// Tick does the periodic work: proplets whose heartbeat deadline passed
// are lost, attempts past their deadline fail, the queue is served and,
// hourly, expired idempotency keys are pruned. While the broker link is
// down, and for a heartbeat timeout after it is back, neither proplets nor
// attempts time out (see linkLocked). Run calls it; tests call it with a
// fake clock.
func (e *Engine) Tick(ctx context.Context) {
	now := e.clock.Now()
	type victim struct {
		id, proplet string
		attempt     int
		reason, msg string
	}
	var victims []victim
	var redispatch []placement
	e.mu.Lock()
	live := e.linkLocked(now)
	linkUp := e.linkUp() // a recovered start is re-sent only over a live link
	for _, p := range e.proplets {
		if !live || p.LastSeen.Add(e.cfg.HeartbeatTimeout).After(now) {
			continue
		}
		if p.Alive {
			e.log.Warn("proplet lost: heartbeat deadline passed", "proplet", p.ID)
			p.Alive = false
		}
		for id := range p.assigned {
			if f := e.flights[id]; f != nil {
				victims = append(victims, victim{id, p.ID, f.attempt, ReasonPropletLost, "no heartbeat from " + p.ID + " for " + e.cfg.HeartbeatTimeout.String()})
			}
		}
	}
	for id, f := range e.flights {
		if live && !f.deadline.IsZero() && now.After(f.deadline) {
			victims = append(victims, victim{id, f.propletID, f.attempt, ReasonDeadlineExceeded, "no result before the deadline"})
		}
		if f.redispatch && linkUp {
			if p := e.proplets[f.propletID]; p != nil && p.Alive {
				f.redispatch = false
				redispatch = append(redispatch, placement{id, f.propletID})
			}
		}
	}
	e.mu.Unlock()

	for _, v := range victims {
		unlock := e.lock(v.id)
		if v.reason == ReasonDeadlineExceeded {
			if err := e.disp.StopTask(ctx, v.proplet, v.id, v.attempt, v.reason); err != nil {
				e.log.Warn("stop command not delivered", "task", v.id, "err", err)
			}
		}
		e.failAttemptLocked(ctx, v.id, v.attempt, v.reason, v.msg)
		unlock()
	}
	e.resend(ctx, redispatch)
	e.schedule(ctx)
	e.reportUnschedulable(ctx)
	e.pruneIdempotency(ctx, now)
}

// linkSeen is what the engine last saw of its broker link.
type linkSeen struct {
	down     bool
	connects uint64
	// resumed is when the link was last seen back; attempt deadlines
	// wait a heartbeat timeout past it (see linkLocked).
	resumed time.Time
}

// linkLocked reports whether liveness may be enforced now. While the
// manager's own link is down, every proplet looks silent, so nothing is
// enforced. Once the link is back (or reconnected between two ticks),
// every proplet gets a fresh heartbeat deadline from now, and attempt
// deadlines wait the same heartbeat timeout, since the results the
// broker queued meanwhile are still on their way. Callers hold e.mu.
func (e *Engine) linkLocked(now time.Time) bool {
	if e.link == nil {
		return true
	}
	up, connects := e.link.LinkState()
	ls := &e.linkSeen
	if !up {
		if !ls.down {
			e.log.Warn("broker link down: proplet liveness and attempt deadlines suspended")
			ls.down = true
		}
		return false
	}
	if ls.down || connects != ls.connects {
		if ls.down || ls.connects != 0 {
			e.log.Info("broker link back: every proplet gets a fresh heartbeat deadline", "grace", e.cfg.HeartbeatTimeout)
			for _, p := range e.proplets {
				if p.Alive || len(p.assigned) > 0 {
					p.LastSeen = now
				}
			}
			ls.resumed = now
		}
		ls.down, ls.connects = false, connects
	}
	return ls.resumed.IsZero() || !now.Before(ls.resumed.Add(e.cfg.HeartbeatTimeout))
}

// resend repeats the start commands of in-flight attempts: recovered ones
// (flight.redispatch) and ones their proplet does not list (reconcileLocked).
func (e *Engine) resend(ctx context.Context, pls []placement) {
	for _, pl := range pls {
		unlock := e.lock(pl.taskID)
		t, err := e.store.GetTask(ctx, pl.taskID)
		inFlight := t.Status.Phase == PhaseScheduled || t.Status.Phase == PhaseRunning
		if err == nil && inFlight && t.Status.PropletID == pl.propletID {
			if err := e.disp.StartTask(ctx, pl.propletID, t, e.window()); err != nil {
				e.log.Warn("start command not re-sent", "task", t.ID, "err", err)
			}
		}
		unlock()
	}
}

// Heartbeat extends a known proplet's liveness. Heartbeats from a proplet
// whose status was never seen are ignored: without a status there is no
// capacity to schedule on.
func (e *Engine) Heartbeat(ctx context.Context, hb Heartbeat) error {
	e.mu.Lock()
	p := e.proplets[hb.PropletID]
	if p == nil || (hb.Instance != "" && p.Instance != "" && hb.Instance != p.Instance) {
		e.mu.Unlock()
		return nil
	}
	revived := !p.Alive
	p.Alive = true
	now := e.clock.Now()
	p.LastSeen = now
	ask := e.reconcileLocked(p, hb.Running, now)
	stray := e.strayLocked(p, hb.Running)
	e.mu.Unlock()
	for _, r := range stray {
		e.log.Warn("stopping an attempt the engine gave up on", "task", r.TaskID, "attempt", r.Attempt, "proplet", p.ID)
		if err := e.disp.StopTask(ctx, p.ID, r.TaskID, r.Attempt, ReasonSuperseded); err != nil {
			e.log.Warn("stop command not delivered", "task", r.TaskID, "proplet", p.ID, "err", err)
		}
	}
	if revived {
		e.Tick(ctx)
	}
	e.resend(ctx, ask)
	return nil
}

// strayLocked lists the attempts p says it runs that are not the current
// attempt of their task on p: ones the engine gave up on (p was lost, the
// deadline passed, the task was retried, cancelled or deleted) while p
// kept running them, say through a pause or a network cut. Each is
// stopped, on every heartbeat that still lists it, so a module does not
// run beside its retry. The current attempt is known before its start
// goes out, so a freshly started one is never taken for a stray. Callers
// hold e.mu.
func (e *Engine) strayLocked(p *propletState, running []AttemptRef) []AttemptRef {
	var out []AttemptRef
	for _, r := range running {
		if f := e.flights[r.TaskID]; f != nil && f.propletID == p.ID && f.attempt == r.Attempt {
			continue
		}
		out = append(out, r)
	}
	return out
}

// maxAsks bounds how often one attempt is asked for again.
const maxAsks = 3

// reconcileLocked compares the attempts placed on p with those p says it
// runs. One placed over ReconcileGrace ago and missing from two
// heartbeats in a row is asked for again (its start, same attempt): the
// start may have been lost (a broker restarted without persistence), or
// the result (see flight.redispatch). Asking is safe: a proplet runs an
// attempt it never saw, ignores one it runs, and re-sends the result of
// one it finished. After maxAsks the deadline decides. Callers hold e.mu.
func (e *Engine) reconcileLocked(p *propletState, running []AttemptRef, now time.Time) []placement {
	if len(p.assigned) == 0 {
		return nil
	}
	listed := make(map[AttemptRef]struct{}, len(running))
	for _, r := range running {
		listed[r] = struct{}{}
	}
	var ask []placement
	for id := range p.assigned {
		f := e.flights[id]
		if f == nil || f.attempt == 0 || f.propletID != p.ID {
			continue
		}
		if _, ok := listed[AttemptRef{TaskID: id, Attempt: f.attempt}]; ok || now.Sub(f.placed) < e.cfg.ReconcileGrace {
			f.missed = 0
			continue
		}
		f.missed++
		if f.missed >= 2 && f.asked < maxAsks {
			f.missed = 0
			f.asked++
			ask = append(ask, placement{taskID: id, propletID: p.ID})
		}
	}
	return ask
}
