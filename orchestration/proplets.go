package orchestration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// PropletUp records that a proplet is online (its retained status). A new
// Instance means the process restarted: whatever it was running is gone,
// so those attempts fail with PropletLost and are retried.
func (e *Engine) PropletUp(ctx context.Context, p Proplet) error {
	if p.ID == "" {
		return fmt.Errorf("proplet id is required: %w", ErrInvalid)
	}
	if p.Slots < 0 {
		return fmt.Errorf("proplet %s: negative slots: %w", p.ID, ErrInvalid)
	}
	now := e.clock.Now()
	var lost []victimRef
	e.mu.Lock()
	cur, known := e.proplets[p.ID]
	changed := !known || cur.Instance != p.Instance || cur.Slots != p.Slots || !maps.Equal(cur.Labels, p.Labels) ||
		cur.Version != p.Version || cur.Runtime != p.Runtime || cur.MemoryBytes != p.MemoryBytes
	if !known {
		cur = &propletState{assigned: make(map[string]struct{})}
		e.proplets[p.ID] = cur
		e.order = append(e.order, p.ID)
		slices.Sort(e.order)
	} else if cur.Instance != "" && p.Instance != "" && cur.Instance != p.Instance {
		lost = e.assignedLocked(cur)
	}
	assigned := cur.assigned
	cur.Proplet = p
	cur.Proplet.Running = nil
	cur.assigned = assigned
	cur.Alive = true
	cur.LastSeen = now
	stored := cur.Proplet
	e.mu.Unlock()

	if changed {
		stored.Alive = false // liveness is never persisted
		if err := e.store.PutProplet(ctx, stored); err != nil {
			return fmt.Errorf("store proplet %s: %w", p.ID, err)
		}
	}
	e.failVictims(ctx, lost, ReasonPropletLost, "proplet "+p.ID+" restarted")
	e.Tick(ctx) // resend recovered starts and use the new slots
	return nil
}

// PropletDown records that a proplet went offline (its last-will or a clean
// shutdown). Its in-flight attempts fail with PropletLost at once.
func (e *Engine) PropletDown(ctx context.Context, id string) error {
	e.mu.Lock()
	p := e.proplets[id]
	if p == nil {
		e.mu.Unlock()
		return nil
	}
	p.Alive = false
	lost := e.assignedLocked(p)
	e.mu.Unlock()
	e.failVictims(ctx, lost, ReasonPropletLost, "proplet "+id+" went offline")
	e.schedule(ctx)
	return nil
}

// RemoveProplet forgets a proplet. Its in-flight attempts are treated as
// lost.
func (e *Engine) RemoveProplet(ctx context.Context, id string) error {
	e.mu.Lock()
	p := e.proplets[id]
	var lost []victimRef
	if p != nil {
		lost = e.assignedLocked(p)
		delete(e.proplets, id)
		e.order = slices.DeleteFunc(e.order, func(s string) bool { return s == id })
	}
	e.mu.Unlock()
	err := e.store.DeleteProplet(ctx, id)
	if p == nil && err != nil {
		return err
	}
	e.failVictims(ctx, lost, ReasonPropletLost, "proplet "+id+" was removed")
	e.schedule(ctx)
	return nil
}

// Proplets lists every known proplet: live state for those seen since
// start, stored records for the others.
func (e *Engine) Proplets(ctx context.Context) ([]Proplet, error) {
	stored, err := e.store.ListProplets(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Proplet, len(stored))
	for _, p := range stored {
		p.Alive = false
		byID[p.ID] = p
	}
	e.mu.Lock()
	for id, p := range e.proplets {
		byID[id] = e.snapshotLocked(p)
	}
	e.mu.Unlock()
	out := slices.Collect(maps.Values(byID))
	slices.SortFunc(out, func(a, b Proplet) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Proplet returns one proplet.
func (e *Engine) Proplet(ctx context.Context, id string) (Proplet, error) {
	e.mu.Lock()
	if p := e.proplets[id]; p != nil {
		s := e.snapshotLocked(p)
		e.mu.Unlock()
		return s, nil
	}
	e.mu.Unlock()
	p, err := e.store.GetProplet(ctx, id)
	p.Alive = false
	return p, err
}

func (e *Engine) snapshotLocked(p *propletState) Proplet {
	s := p.Proplet
	s.Labels = maps.Clone(p.Labels)
	s.Running = slices.Sorted(maps.Keys(p.assigned))
	return s
}

type victimRef struct {
	id      string
	attempt int
}

func (e *Engine) assignedLocked(p *propletState) []victimRef {
	out := make([]victimRef, 0, len(p.assigned))
	for id := range p.assigned {
		if f := e.flights[id]; f != nil {
			out = append(out, victimRef{id, f.attempt})
		}
	}
	return out
}

func (e *Engine) failVictims(ctx context.Context, vs []victimRef, reason, msg string) {
	for _, v := range vs {
		unlock := e.lock(v.id)
		e.failAttemptLocked(ctx, v.id, v.attempt, reason, msg)
		unlock()
	}
}

// Recover rebuilds in-flight state from the store: pending tasks are
// queued again, dispatched ones are tracked on their proplet until it
// reports, or fail with PropletLost once its heartbeat deadline (counted
// from now) passes. In-flight attempts are re-sent with the same attempt
// number once the proplet is alive, which proplets de-duplicate (and
// answer with the result if the attempt already ended), so a restart never
// runs a task twice without a reason nor waits for a result that was lost.
func (e *Engine) Recover(ctx context.Context) error {
	now := e.clock.Now()
	stored, err := e.store.ListProplets(ctx)
	if err != nil {
		return fmt.Errorf("recover proplets: %w", err)
	}
	e.mu.Lock()
	for _, p := range stored {
		if _, ok := e.proplets[p.ID]; ok {
			continue
		}
		p.Alive = false
		p.Running = nil
		p.LastSeen = now // grace: one heartbeat timeout to come back
		e.proplets[p.ID] = &propletState{Proplet: p, assigned: make(map[string]struct{})}
		e.order = append(e.order, p.ID)
	}
	slices.Sort(e.order)
	e.mu.Unlock()

	n := 0
	f := TaskFilter{Phases: []Phase{PhasePending, PhaseScheduled, PhaseRunning}, Limit: MaxPageLimit}
	for {
		page, err := e.store.ListTasks(ctx, f)
		if err != nil {
			return fmt.Errorf("recover tasks: %w", err)
		}
		for _, t := range page.Tasks {
			e.adopt(t, now)
			n++
		}
		if page.Continue == "" {
			break
		}
		f.Continue = page.Continue
	}
	e.log.Info("engine recovered", "in_flight_tasks", n, "proplets", len(stored))
	return nil
}

func (e *Engine) adopt(t Task, now time.Time) {
	if t.Status.Phase == PhasePending {
		if !t.Spec.Suspend {
			e.enqueue(t)
		}
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.proplets[t.Status.PropletID]
	if p == nil {
		// Placed on a proplet we have no record of: track it so the
		// heartbeat deadline fails it over.
		p = &propletState{Proplet: Proplet{ID: t.Status.PropletID, LastSeen: now}, assigned: make(map[string]struct{})}
		e.proplets[p.ID] = p
		e.order = append(e.order, p.ID)
		slices.Sort(e.order)
	}
	p.assigned[t.ID] = struct{}{}
	e.flights[t.ID] = &flight{
		propletID:  p.ID,
		attempt:    t.Status.Attempt,
		deadline:   t.Status.Deadline,
		redispatch: true,
		placed:     now,
	}
}
