package orchestration

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"
)

// SubmitBatch validates and stores many tasks at once, then schedules them
// as Submit does. It is all or nothing: a bad spec fails the whole batch,
// with an error naming its index (tasks[i]), before anything is written.
// On a store that is a BatchCreator every task, and the idempotency
// record, go in one durable write; on another the tasks are created one by
// one and the ones already created are deleted if a later one fails.
//
// With a key, a retry within Config.IdempotencyWindow (same key, same
// fingerprint) creates nothing and returns the tasks the first call
// created, as they stand now, with replayed true; this holds across a
// manager restart because the record is stored with the tasks. The same
// key with another fingerprint is ErrIdempotencyMismatch. Keys need a
// store that is both a BatchCreator and an IdempotencyStore; on another
// a key is errors.ErrUnsupported.
func (e *Engine) SubmitBatch(ctx context.Context, specs []TaskSpec, idem Idempotency) (tasks []Task, replayed bool, err error) {
	if err := validateBatch(specs, idem); err != nil {
		return nil, false, err
	}
	bc, is, keeps := e.idempotencyPorts()
	if idem.Key != "" {
		if !keeps {
			return nil, false, fmt.Errorf("idempotency keys need a store that records them with the tasks; this one does not: %w", errors.ErrUnsupported)
		}
		defer e.idem.lockKey(e.seed, idem.Key)()
		if tasks, found, err := e.replay(ctx, is, idem); found || err != nil {
			return tasks, found, err
		}
	}
	now := e.clock.Now()
	tasks = make([]Task, len(specs))
	for i, spec := range specs {
		tasks[i] = e.newTask(spec, now)
	}
	if bc == nil {
		return e.createEach(ctx, tasks)
	}
	var rec *IdempotencyRecord
	if idem.Key != "" {
		rec = &IdempotencyRecord{Key: idem.Key, Fingerprint: idem.Fingerprint, CreatedAt: now, TaskIDs: make([]string, len(tasks))}
		for i := range tasks {
			rec.TaskIDs[i] = tasks[i].ID
		}
	}

	unlock := e.lockAll(tasks)
	// As in Submit: tasks placed before the write are stored Scheduled,
	// so reaching a proplet costs no second write.
	placed := e.placeBatch(tasks, now)
	if err := bc.CreateTasks(ctx, tasks, rec); err != nil {
		for _, i := range placed {
			e.release(tasks[i].ID)
		}
		unlock()
		if len(placed) > 0 {
			e.schedule(ctx) // tasks queued meanwhile may take the slots
		}
		if rec != nil && errors.Is(err, ErrExists) {
			// Another writer of the store recorded the key first.
			if tasks, found, rerr := e.replay(ctx, is, idem); found || rerr != nil {
				return tasks, found, rerr
			}
		}
		return nil, false, fmt.Errorf("create tasks: %w", err)
	}
	queued := e.admit(tasks, placed)
	unlock()
	e.sendPlaced(ctx, tasks, placed)
	if queued {
		e.scheduleBatch(ctx, tasks)
	}
	return tasks, false, nil
}

func validateBatch(specs []TaskSpec, idem Idempotency) error {
	switch {
	case len(specs) == 0:
		return fmt.Errorf("a batch needs at least one task: %w", ErrInvalid)
	case len(specs) > MaxBatchSize:
		return fmt.Errorf("a batch of %d tasks: at most %d are allowed: %w", len(specs), MaxBatchSize, ErrInvalid)
	case len(idem.Key) > MaxIdempotencyKeyLen:
		return fmt.Errorf("idempotency key of %d characters: at most %d are allowed: %w", len(idem.Key), MaxIdempotencyKeyLen, ErrInvalid)
	}
	for i, s := range specs {
		if err := ValidateSpec(s); err != nil {
			return fmt.Errorf("tasks[%d]: %w", i, err)
		}
	}
	return nil
}

// newTask is a new Pending task for spec.
func (e *Engine) newTask(spec TaskSpec, now time.Time) Task {
	t := Task{
		ID:     e.newID(),
		Spec:   spec,
		Status: TaskStatus{Phase: PhasePending, CreatedAt: now, UpdatedAt: now},
	}
	if spec.Suspend {
		t.Status.Reason = ReasonSuspended
	}
	return t
}

// lockAll takes the locks of every task, each stripe once and in stripe
// order, so two batches cannot deadlock. Nothing else holds two stripes.
func (e *Engine) lockAll(tasks []Task) func() {
	stripes := make([]int, 0, min(len(tasks), len(e.locks)))
	for i := range tasks {
		stripes = append(stripes, int(maphash.String(e.seed, tasks[i].ID)%uint64(len(e.locks))))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, s := range stripes {
		e.locks[s].Lock()
	}
	return func() {
		for _, s := range stripes {
			e.locks[s].Unlock()
		}
	}
}

// placeBatch places the batch's tasks on free slots in order, marking
// them Scheduled, until one cannot be placed: the rest queue behind it
// (FIFO, as Submit one by one would), and nothing is placed ahead of tasks
// already waiting. It returns the placed indexes. Callers hold the tasks'
// locks.
func (e *Engine) placeBatch(tasks []Task, now time.Time) []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) > 0 {
		return nil
	}
	var placed []int
	for i := range tasks {
		t := &tasks[i]
		if t.Spec.Suspend {
			continue
		}
		p := e.pick(newWaiting(t))
		if p == nil {
			break
		}
		e.reserveLocked(t, p, now)
		placed = append(placed, i)
	}
	return placed
}

// admit tells the observer about the stored batch and queues the tasks
// that were neither placed nor suspended; it reports whether any was
// queued. Callers hold the tasks' locks.
func (e *Engine) admit(tasks []Task, placed []int) (queued bool) {
	for i := range tasks {
		t := tasks[i]
		e.observe(t)
		if t.Status.Phase == PhasePending && !t.Spec.Suspend {
			e.enqueue(t)
			queued = true
		}
	}
	return queued
}

// sendPlaced sends the start commands of the tasks placeBatch placed, each
// under its own lock only, so a batch does not hold every lock while it
// waits for the broker. An attempt the engine gave up on meanwhile (its
// proplet was lost) is not started.
func (e *Engine) sendPlaced(ctx context.Context, tasks []Task, placed []int) {
	for _, i := range placed {
		t := tasks[i]
		unlock := e.lock(t.ID)
		e.mu.Lock()
		f := e.flights[t.ID]
		current := f != nil && f.propletID == t.Status.PropletID && f.attempt == t.Status.Attempt
		e.mu.Unlock()
		if current {
			e.send(ctx, t)
		}
		unlock()
	}
}

// scheduleBatch serves the queue, as schedule does, and refreshes the
// batch's tasks that it placed, so the caller is answered with where they
// stand (usually Scheduled) without re-reading the whole batch.
func (e *Engine) scheduleBatch(ctx context.Context, tasks []Task) {
	pls := e.place()
	moved := make(map[string]struct{}, len(pls))
	for _, pl := range pls {
		e.dispatch(ctx, pl)
		moved[pl.taskID] = struct{}{}
	}
	for i := range tasks {
		if _, ok := moved[tasks[i].ID]; !ok {
			continue
		}
		if cur, err := e.store.GetTask(ctx, tasks[i].ID); err == nil {
			tasks[i] = cur
		}
	}
}

// createEach is SubmitBatch on a store that cannot write many tasks at
// once. Every task is stored before any is scheduled, so a failure can
// delete the ones created before the engine acted on them.
func (e *Engine) createEach(ctx context.Context, tasks []Task) ([]Task, bool, error) {
	for i := range tasks {
		if err := e.store.CreateTask(ctx, tasks[i]); err != nil {
			for _, t := range tasks[:i] {
				if derr := e.store.DeleteTask(ctx, t.ID); derr != nil && !errors.Is(derr, ErrNotFound) {
					e.log.Error("undo batch create", "task", t.ID, "err", derr)
				}
			}
			return nil, false, fmt.Errorf("create tasks[%d]: %w", i, err)
		}
	}
	unlock := e.lockAll(tasks)
	queued := e.admit(tasks, nil)
	unlock()
	if queued {
		e.scheduleBatch(ctx, tasks)
	}
	return tasks, false, nil
}
