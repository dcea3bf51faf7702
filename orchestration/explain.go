package orchestration

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// reportUnschedulable writes reason Unschedulable, with what is missing,
// on queued tasks that no live proplet could ever take, so a user sees why
// a task waits (say, pinned to a dead proplet).
func (e *Engine) reportUnschedulable(ctx context.Context) {
	type note struct{ id, msg string }
	var notes []note
	e.mu.Lock()
	for id, w := range e.pending {
		if w.reported {
			continue
		}
		if msg := e.explainLocked(w); msg != "" {
			w.reported = true
			notes = append(notes, note{id, msg})
		}
	}
	e.mu.Unlock()
	for _, n := range notes {
		unlock := e.lock(n.id)
		_, err := e.update(ctx, n.id, func(t *Task) error {
			if t.Status.Phase != PhasePending || t.Status.Reason == ReasonUnschedulable {
				return ErrNoChange
			}
			t.Status.Reason = ReasonUnschedulable
			t.Status.Message = n.msg
			return nil
		})
		unlock()
		if err != nil && !errors.Is(err, ErrNoChange) && !errors.Is(err, ErrNotFound) {
			e.log.Warn("report unschedulable task", "task", n.id, "err", err)
		}
	}
}

// explainLocked says why no live proplet can take w, or "" if one can
// (perhaps once a slot frees up). Callers hold e.mu.
func (e *Engine) explainLocked(w *waiting) string {
	if w.propletID != "" {
		p := e.proplets[w.propletID]
		switch {
		case p == nil:
			return "proplet " + w.propletID + " is not known"
		case !p.Alive:
			return "proplet " + w.propletID + " is not alive"
		case p.Slots == 0:
			return "proplet " + w.propletID + " offers no slots"
		case !w.fits(p):
			return fmt.Sprintf("proplet %s offers a task %s, this one needs %s", w.propletID, sizeText(p.MemoryBytes), sizeText(w.memory))
		}
		return ""
	}
	if len(w.candidates) > 0 {
		return e.explainCandidatesLocked(w)
	}
	var most int64
	short := false
	for _, p := range e.proplets {
		if p.Alive && p.Slots > 0 && p.Matches(w.selector) {
			if w.fits(p) {
				return ""
			}
			short, most = true, max(most, p.MemoryBytes)
		}
	}
	if short {
		return fmt.Sprintf("no live proplet offers a task %s (the most offered: %s)", sizeText(w.memory), sizeText(most))
	}
	if len(w.selector) > 0 {
		return fmt.Sprintf("no live proplet matches selector %v", w.selector)
	}
	return "no live proplet"
}

// sizeText writes a byte count in MiB when it is whole.
func sizeText(b int64) string {
	if b > 0 && b%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

// explainCandidatesLocked is explainLocked for a task with a candidate
// set: it names the candidates and the first thing none of them has.
// Callers hold e.mu.
func (e *Engine) explainCandidatesLocked(w *waiting) string {
	var alive, slots int
	short := false
	for _, id := range w.candidates {
		p := e.proplets[id]
		if p == nil || !p.Alive {
			continue
		}
		alive++
		if p.Slots == 0 {
			continue
		}
		slots++
		if p.Matches(w.selector) {
			if w.fits(p) {
				return ""
			}
			short = true
		}
	}
	if short {
		return fmt.Sprintf("no candidate proplet %s that is alive and matches offers a task %s", listIDs(w.candidates), sizeText(w.memory))
	}
	if len(w.candidates) == 1 {
		id := w.candidates[0]
		switch {
		case e.proplets[id] == nil:
			return "candidate proplet " + id + " is not known"
		case alive == 0:
			return "candidate proplet " + id + " is not alive"
		case slots == 0:
			return "candidate proplet " + id + " offers no slots"
		}
		return fmt.Sprintf("candidate proplet %s does not match selector %v", id, w.selector)
	}
	none := fmt.Sprintf("none of the %d candidate proplets %s is alive", len(w.candidates), listIDs(w.candidates))
	switch {
	case alive == 0:
		return none
	case slots == 0:
		return none + " and offers slots"
	}
	return fmt.Sprintf("%s and matches selector %v", none, w.selector)
}

// maxListedIDs bounds how many ids a message names, so a status message
// stays short (Kubernetes caps a condition message at 32 KiB).
const maxListedIDs = 10

// listIDs formats ids as [a b c], eliding past maxListedIDs.
func listIDs(ids []string) string {
	if len(ids) <= maxListedIDs {
		return "[" + strings.Join(ids, " ") + "]"
	}
	return fmt.Sprintf("[%s ... +%d more]", strings.Join(ids[:maxListedIDs], " "), len(ids)-maxListedIDs)
}
