package orchestration

import (
	"context"
	"errors"
	"slices"
	"time"
)

type waiting struct {
	propletID string
	// candidates, sorted, are the only proplets the task may run on;
	// empty means any.
	candidates []string
	selector   map[string]string
	// memory is what the task needs from a proplet, in bytes; 0 is any.
	memory    int64
	notBefore time.Time
	// reported is set once the task's Unschedulable reason was written,
	// so a task that waits long is written once, not on every tick.
	reported bool
}

// newWaiting is t's placement constraints.
func newWaiting(t *Task) *waiting {
	w := &waiting{
		propletID: t.Spec.PropletID,
		selector:  t.Spec.Selector,
		notBefore: t.Status.NotBefore,
		memory:    max(t.Spec.MemoryBytes, int64(t.Spec.MemoryPages)<<16),
	}
	if len(t.Spec.PropletIDs) > 0 {
		w.candidates = slices.Clone(t.Spec.PropletIDs)
		slices.Sort(w.candidates)
	}
	return w
}

// feasible reports whether p can take w now: it is alive, has a free
// slot and meets every constraint of w.
func (w *waiting) feasible(p *propletState) bool {
	return p.Alive && len(p.assigned) < p.Slots && w.allows(p.ID) && p.Matches(w.selector) && w.fits(p)
}

// fits reports whether p offers a task the memory w needs.
func (w *waiting) fits(p *propletState) bool {
	return w.memory == 0 || p.MemoryBytes == 0 || p.MemoryBytes >= w.memory
}

// allows reports whether w's candidate set admits proplet id.
func (w *waiting) allows(id string) bool {
	if len(w.candidates) == 0 {
		return true
	}
	_, ok := slices.BinarySearch(w.candidates, id)
	return ok
}

// enqueue puts a Pending task on the queue. Callers hold its lock.
func (e *Engine) enqueue(t Task) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.pending[t.ID]; ok {
		return
	}
	e.pending[t.ID] = newWaiting(&t)
	e.queue = append(e.queue, t.ID)
}

// release forgets a task's in-memory state: its queue entry, its flight and
// the slot it held. Callers hold its lock.
func (e *Engine) release(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, id)
	if f, ok := e.flights[id]; ok {
		if p := e.proplets[f.propletID]; p != nil {
			delete(p.assigned, id)
		}
		delete(e.flights, id)
	}
}

type placement struct {
	taskID    string
	propletID string
}

// schedule places as many queued tasks as there are free slots. Callers
// must not hold any task lock: dispatch takes them.
func (e *Engine) schedule(ctx context.Context) {
	for _, pl := range e.place() {
		e.dispatch(ctx, pl)
	}
}

// placeNow picks a proplet for a new task when nothing waits ahead of it,
// reserves the slot and marks t Scheduled. Callers hold t's lock.
func (e *Engine) placeNow(t *Task, now time.Time) bool {
	if !e.linkUp() {
		return false // queued: placed once the link is back
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) > 0 {
		return false // FIFO: the queue goes first
	}
	p := e.pick(newWaiting(t))
	if p == nil {
		return false
	}
	e.reserveLocked(t, p, now)
	return true
}

// reserveLocked starts a new attempt of a task not yet stored on p and
// holds p's slot for it. Callers hold t's lock and e.mu.
func (e *Engine) reserveLocked(t *Task, p *propletState, now time.Time) {
	e.markScheduled(t, p.ID, now)
	p.assigned[t.ID] = struct{}{}
	e.flights[t.ID] = &flight{propletID: p.ID, attempt: t.Status.Attempt, deadline: t.Status.Deadline, placed: now}
}

// place picks proplets for queued tasks and reserves their slots.
func (e *Engine) place() []placement {
	if !e.linkUp() {
		// A start sent now would wait in the link for the broker, and
		// reach its proplet late or not at all: place once it is back.
		return nil
	}
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	free := 0
	for _, p := range e.proplets {
		if p.Alive {
			free += max(0, p.Slots-len(p.assigned))
		}
	}
	var out []placement
	kept := e.queue[:0]
	for i, id := range e.queue {
		w, ok := e.pending[id]
		if !ok {
			continue // stale entry
		}
		if free == 0 || w.notBefore.After(now) {
			kept = append(kept, id)
			if free == 0 {
				kept = append(kept, e.queue[i+1:]...)
				break
			}
			continue
		}
		p := e.pick(w)
		if p == nil {
			kept = append(kept, id)
			continue
		}
		p.assigned[id] = struct{}{}
		e.flights[id] = &flight{propletID: p.ID}
		delete(e.pending, id)
		free--
		out = append(out, placement{taskID: id, propletID: p.ID})
	}
	clear(e.queue[len(kept):])
	e.queue = kept
	return out
}

// linkUp reports whether the broker link is up (always, without one).
func (e *Engine) linkUp() bool {
	if e.link == nil {
		return true
	}
	up, _ := e.link.LinkState()
	return up
}

// pick chooses a proplet for w: a pinned task takes its proplet if that
// is feasible, any other goes to the policy's ranker. Callers hold e.mu.
func (e *Engine) pick(w *waiting) *propletState {
	if w.propletID != "" {
		if p := e.proplets[w.propletID]; p != nil && w.feasible(p) {
			return p
		}
		return nil
	}
	return e.rank.choose(feasibility{order: e.order, proplets: e.proplets, w: w})
}

// markScheduled starts a new attempt of t on a proplet.
func (e *Engine) markScheduled(t *Task, propletID string, now time.Time) {
	st := &t.Status
	st.Phase = PhaseScheduled
	st.Attempt++
	st.PropletID = propletID
	st.ScheduledAt = now
	st.NotBefore = time.Time{}
	st.Deadline = now.Add(e.timeout(t) + e.cfg.DeadlineGrace)
	if st.Reason == ReasonUnschedulable {
		st.Reason, st.Message = "", ""
	}
}

// dispatch commits a placement: Pending -> Scheduled with a new attempt,
// then sends the start command.
func (e *Engine) dispatch(ctx context.Context, pl placement) {
	unlock := e.lock(pl.taskID)
	defer unlock()
	now := e.clock.Now()
	t, err := e.update(ctx, pl.taskID, func(t *Task) error {
		if t.Status.Phase != PhasePending || t.Spec.Suspend {
			return ErrNoChange
		}
		e.markScheduled(t, pl.propletID, now)
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrNoChange) && !errors.Is(err, ErrNotFound) {
			e.log.Error("schedule task", "task", pl.taskID, "err", err)
			// Put it back so a later tick retries the write.
			e.release(pl.taskID)
			if t.ID != "" && t.Status.Phase == PhasePending {
				e.enqueue(t)
			}
			return
		}
		e.release(pl.taskID)
		return
	}
	e.mu.Lock()
	if f := e.flights[pl.taskID]; f != nil {
		f.attempt = t.Status.Attempt
		f.deadline = t.Status.Deadline
		f.placed = now
	}
	e.mu.Unlock()
	e.send(ctx, t)
}

// window fences a start sent now: a proplet begins it within a heartbeat
// timeout or not at all. One that did not get it by then was silent long
// enough to be lost, or nearly: its attempt may be retried elsewhere.
func (e *Engine) window() StartWindow {
	now := e.clock.Now()
	return StartWindow{Sent: now, NotAfter: now.Add(e.cfg.HeartbeatTimeout)}
}

// send delivers the start command of t's current attempt; a failed
// delivery fails the attempt. Callers hold t's lock.
func (e *Engine) send(ctx context.Context, t Task) {
	if err := e.disp.StartTask(ctx, t.Status.PropletID, t, e.window()); err != nil {
		e.log.Warn("start command not delivered", "task", t.ID, "proplet", t.Status.PropletID, "err", err)
		reason := ReasonDispatchFailed
		if errors.Is(err, ErrInvalid) {
			// The task itself cannot be turned into a start (a bad
			// module reference): every attempt would fail the same way.
			reason = ReasonInvalidTask
		}
		e.failAttemptLocked(ctx, t.ID, t.Status.Attempt, reason, err.Error())
	}
}
