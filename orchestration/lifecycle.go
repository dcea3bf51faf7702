package orchestration

import (
	"context"
	"errors"
	"fmt"
)

// Submit validates and stores a new task, then schedules it unless it is
// suspended. SubmitBatch (batch.go) is the same for many tasks at once.
func (e *Engine) Submit(ctx context.Context, spec TaskSpec) (Task, error) {
	if err := ValidateSpec(spec); err != nil {
		return Task{}, err
	}
	now := e.clock.Now()
	t := e.newTask(spec, now)
	unlock := e.lock(t.ID)
	// With no backlog, place the task before storing it: one durable
	// write instead of two on the path to the proplet.
	placed := !spec.Suspend && e.placeNow(&t, now)
	if err := e.store.CreateTask(ctx, t); err != nil {
		if placed {
			e.release(t.ID)
		}
		unlock()
		return Task{}, fmt.Errorf("create task: %w", err)
	}
	e.observe(t)
	switch {
	case placed:
		e.send(ctx, t)
	case !spec.Suspend:
		e.enqueue(t)
	}
	unlock()
	if !placed && !spec.Suspend {
		e.schedule(ctx)
		// Answer with where the task stands now, usually Scheduled.
		if cur, err := e.store.GetTask(ctx, t.ID); err == nil {
			t = cur
		}
	}
	return t, nil
}

// Start releases a suspended task for scheduling and returns it as it
// stands after scheduling.
func (e *Engine) Start(ctx context.Context, id string) (Task, error) {
	t, err := e.start(ctx, id)
	if err != nil {
		return t, err
	}
	if cur, err := e.store.GetTask(ctx, id); err == nil {
		t = cur
	}
	return t, nil
}

// Release is Start for a caller that does not need the task back (the
// operator's controller): it saves the read that answers Start, which on
// the Kubernetes store is an API request per task.
func (e *Engine) Release(ctx context.Context, id string) error {
	_, err := e.start(ctx, id)
	return err
}

func (e *Engine) start(ctx context.Context, id string) (Task, error) {
	unlock := e.lock(id)
	t, err := e.update(ctx, id, func(t *Task) error {
		if t.Status.Phase.Terminal() {
			return ErrTerminal
		}
		if !t.Spec.Suspend {
			return ErrNoChange
		}
		if t.Spec.Image == "" {
			return fmt.Errorf("task %s has no module to run: %w", t.ID, ErrInvalid)
		}
		t.Spec.Suspend = false
		if t.Status.Reason == ReasonSuspended {
			t.Status.Reason = ""
		}
		return nil
	})
	if err == nil && t.Status.Phase == PhasePending {
		e.enqueue(t)
	}
	unlock()
	if err != nil {
		return t, err
	}
	e.schedule(ctx)
	return t, nil
}

// EditSuspended changes the spec of a suspended task, say to attach the
// module uploaded after creation. A task that may already be scheduled
// cannot change: ErrConflict.
func (e *Engine) EditSuspended(ctx context.Context, id string, fn func(*TaskSpec) error) (Task, error) {
	unlock := e.lock(id)
	defer unlock()
	return e.update(ctx, id, func(t *Task) error {
		if !t.Spec.Suspend || t.Status.Phase != PhasePending {
			return fmt.Errorf("task %s is %s and not suspended: %w", t.ID, t.Status.Phase, ErrConflict)
		}
		spec := t.Spec
		if err := fn(&spec); err != nil {
			return err
		}
		spec.Suspend = true
		if err := ValidateSpec(spec); err != nil {
			return err
		}
		t.Spec = spec
		return nil
	})
}

// Stop cancels a task: a pending one never runs, a dispatched one is told
// to stop. The task ends Cancelled at once; later events from the proplet
// about it are ignored.
func (e *Engine) Stop(ctx context.Context, id, message string) (Task, error) {
	unlock := e.lock(id)
	var prev TaskStatus
	t, err := e.update(ctx, id, func(t *Task) error {
		if t.Status.Phase.Terminal() {
			return ErrTerminal
		}
		prev = t.Status
		e.finish(t, PhaseCancelled, ReasonCancelled, message)
		return nil
	})
	if err != nil {
		unlock()
		return t, err
	}
	e.release(id)
	inFlight := prev.Phase == PhaseScheduled || prev.Phase == PhaseRunning
	if inFlight {
		if err := e.disp.StopTask(ctx, prev.PropletID, id, prev.Attempt, ReasonCancelled); err != nil {
			e.log.Warn("stop command not delivered", "task", id, "proplet", prev.PropletID, "err", err)
		}
	}
	unlock()
	if inFlight {
		e.schedule(ctx) // its slot is free
	}
	return t, nil
}

// Delete stops a task if it is in flight and removes it.
func (e *Engine) Delete(ctx context.Context, id string) error {
	if _, err := e.Stop(ctx, id, "task deleted"); err != nil && !errors.Is(err, ErrTerminal) {
		return err
	}
	unlock := e.lock(id)
	defer unlock()
	if err := e.store.DeleteTask(ctx, id); err != nil {
		return fmt.Errorf("delete task: %w", err)
	}
	e.release(id)
	return nil
}

// Forget drops what the engine holds for a task its store no longer has:
// the object was deleted behind the engine's back (a WasmTask deleted
// before it carried a finalizer, or with its finalizer removed by hand). A
// queued task leaves the queue; an attempt in flight is stopped on its
// proplet and its slot freed. While the store still has the task, Forget
// does nothing, so a caller unsure whether the deletion happened may call
// it anyway.
func (e *Engine) Forget(ctx context.Context, id string) error {
	unlock := e.lock(id)
	_, err := e.store.GetTask(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		unlock()
		return err
	}
	freed := e.forgetLocked(ctx, id)
	unlock()
	if freed {
		e.schedule(ctx)
	}
	return nil
}

// forgetLocked releases a task the store lost and stops its attempt, if
// one was in flight. It reports whether a slot was freed. Callers hold the
// task's lock.
func (e *Engine) forgetLocked(ctx context.Context, id string) bool {
	e.mu.Lock()
	var f flight
	fl, inFlight := e.flights[id]
	if inFlight {
		f = *fl
	}
	e.mu.Unlock()
	e.release(id)
	if !inFlight {
		return false
	}
	if err := e.disp.StopTask(ctx, f.propletID, id, f.attempt, ReasonCancelled); err != nil {
		e.log.Warn("stop command not delivered", "task", id, "proplet", f.propletID, "err", err)
	}
	return true
}
