package orchestration

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RecordEvent applies a proplet's report. It returns false, and no error,
// when the event is stale (another attempt), repeated, or out of order in a
// way that would move the task backwards: recording is idempotent.
func (e *Engine) RecordEvent(ctx context.Context, ev TaskEvent) (bool, error) {
	unlock := e.lock(ev.TaskID)
	applied, retried, err := e.recordLocked(ctx, ev)
	if errors.Is(err, ErrNotFound) {
		// Deleted meanwhile, or never ours. An attempt the engine still
		// tracks is running for nothing: stop it and free its slot.
		freed := e.forgetLocked(ctx, ev.TaskID)
		unlock()
		if freed {
			e.schedule(ctx)
		}
		return false, nil
	}
	unlock()
	if err != nil || !applied {
		return false, err
	}
	if ev.Type == EventSucceeded || ev.Type == EventFailed || retried {
		e.schedule(ctx)
	}
	return true, nil
}

// applies reports whether ev would change t: it is for t's current
// attempt, from t's proplet, and moves t forward.
func applies(t *Task, ev TaskEvent) bool {
	st := &t.Status
	if st.Attempt != ev.Attempt || (st.Phase != PhaseScheduled && st.Phase != PhaseRunning) ||
		(ev.PropletID != "" && st.PropletID != ev.PropletID) {
		return false
	}
	switch ev.Type {
	case EventRunning:
		return st.Phase == PhaseScheduled
	case EventSucceeded, EventFailed:
		return true
	}
	return false // accepted changes nothing the engine records
}

func (e *Engine) recordLocked(ctx context.Context, ev TaskEvent) (applied, retried bool, err error) {
	if ev.Type == EventAccepted {
		return false, false, nil // changes nothing the engine records
	}
	now := e.clock.Now()
	t, err := e.update(ctx, ev.TaskID, func(t *Task) error {
		st := &t.Status
		if !applies(t, ev) {
			return ErrNoChange
		}
		switch ev.Type {
		case EventRunning:
			st.Phase = PhaseRunning
			st.StartedAt = now
			st.Reason, st.Message = "", ""
		case EventSucceeded:
			st.Results, st.Stdout, st.Stderr, st.ExitCode = ev.Results, ev.Stdout, ev.Stderr, ev.ExitCode
			e.finish(t, PhaseSucceeded, ReasonSucceeded, "")
		case EventFailed:
			st.Results, st.Stdout, st.Stderr, st.ExitCode = ev.Results, ev.Stdout, ev.Stderr, ev.ExitCode
			reason := ev.Reason
			if reason == "" {
				reason = "Error"
			}
			e.fail(t, reason, ev.Error)
		default:
			return ErrNoChange
		}
		return nil
	})
	if errors.Is(err, ErrNoChange) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if t.Status.Phase != PhaseRunning {
		e.release(t.ID)
	}
	if t.Status.Phase == PhasePending {
		e.enqueue(t)
		return true, true, nil
	}
	return true, false, nil
}

// failAttemptLocked fails attempt `attempt` of a task on the engine's own
// initiative (lost proplet, deadline, dispatch error). Callers hold the
// task's lock.
func (e *Engine) failAttemptLocked(ctx context.Context, id string, attempt int, reason, message string) {
	t, err := e.update(ctx, id, func(t *Task) error {
		if t.Status.Attempt != attempt || (t.Status.Phase != PhaseScheduled && t.Status.Phase != PhaseRunning) {
			return ErrNoChange
		}
		e.fail(t, reason, message)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		e.forgetLocked(ctx, id)
		return
	}
	if err != nil {
		if !errors.Is(err, ErrNoChange) {
			e.log.Error("fail attempt", "task", id, "err", err)
		}
		return
	}
	e.release(id)
	if t.Status.Phase == PhasePending {
		e.enqueue(t)
	}
}

// fail ends the current attempt: back to Pending with a backoff when
// attempts remain, else Failed.
//
// A proplet that refused the start for want of a free slot ran nothing:
// its slots were busy with work the engine no longer counts (an attempt
// stopped or deleted but still winding down). That uses no attempt: the
// same attempt number is placed again after the base backoff. So is a
// start refused because it arrived after its StartWindow.
func (e *Engine) fail(t *Task, reason, message string) {
	st := &t.Status
	if reason == ReasonNoCapacity || reason == ReasonExpired {
		st.Message = fmt.Sprintf("%s had no free slot (%s); placing attempt %d again", st.PropletID, message, st.Attempt)
		if reason == ReasonExpired {
			st.Message = fmt.Sprintf("%s got the start too late (%s); placing attempt %d again", st.PropletID, message, st.Attempt)
		}
		st.Attempt--
		st.Phase, st.Reason, st.PropletID = PhasePending, reason, ""
		st.NotBefore = e.clock.Now().Add(e.jitter(e.cfg.BackoffBase))
		st.Deadline = time.Time{}
		return
	}
	if st.Attempt < e.maxAttempts(t) && !deterministic(t, reason) {
		now := e.clock.Now()
		st.Message = fmt.Sprintf("attempt %d on %s failed: %s", st.Attempt, st.PropletID, reasonText(reason, message))
		st.LastFailure = st.Message
		st.Phase = PhasePending
		st.Reason = reason
		st.PropletID = ""
		st.NotBefore = now.Add(e.jitter(e.cfg.backoff(st.Attempt)))
		st.Deadline = time.Time{}
		return
	}
	if st.Attempt < e.maxAttempts(t) {
		message = fmt.Sprintf("%s (not retried: %s repeats on every attempt; %d of %d attempts used)",
			reasonText(reason, message), reason, st.Attempt, e.maxAttempts(t))
	}
	e.finish(t, PhaseFailed, reason, message)
}

// deterministic reports whether a failure would repeat on any proplet and
// any attempt, so retrying it only burns attempts: the module does not
// compile or validate, the task cannot be run as given, or it asks for
// more memory than its own explicit limit allows. A MemoryLimit under a
// proplet's default limit (no memory_pages in the spec) may pass on a
// proplet with a larger default, so it is retried.
func deterministic(t *Task, reason string) bool {
	switch reason {
	case ReasonInvalidModule, ReasonInvalidTask:
		return true
	case ReasonMemoryLimit:
		return t.Spec.MemoryPages > 0
	}
	return false
}

func reasonText(reason, message string) string {
	if message == "" {
		return reason
	}
	return reason + ": " + message
}

func (e *Engine) finish(t *Task, phase Phase, reason, message string) {
	st := &t.Status
	st.Phase = phase
	st.Reason = reason
	st.Message = message
	st.FinishedAt = e.clock.Now()
	st.Deadline = time.Time{}
	st.NotBefore = time.Time{}
}

func (e *Engine) maxAttempts(t *Task) int {
	if t.Spec.MaxAttempts > 0 {
		return t.Spec.MaxAttempts
	}
	return e.cfg.DefaultMaxAttempts
}

func (e *Engine) timeout(t *Task) time.Duration {
	if t.Spec.Timeout > 0 {
		return t.Spec.Timeout
	}
	return e.cfg.DefaultTimeout
}
