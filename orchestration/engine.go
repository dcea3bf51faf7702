package orchestration

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Deps are the engine's ports. Store and Dispatcher are required.
type Deps struct {
	Store      Store
	Dispatcher Dispatcher
	// Clock defaults to the wall clock.
	Clock Clock
	// NewID defaults to NewTimeIDGen(Clock).
	NewID IDGen
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told about every task change the engine
	// commits, in commit order per task. It runs on the engine's goroutine
	// with the task's lock held: it must be quick and must not call back
	// into the engine for the same task.
	Observer func(Task)
}

// ErrTerminal is returned when an operation needs a task that has not
// finished yet.
var ErrTerminal = errors.New("task already finished")

// Engine owns the lifecycle of every task. All methods are safe for
// concurrent use.
//
// # Notes
//
//   - Only in-flight work lives in memory: pending ids with their placement
//     constraints, and dispatched attempts with their deadline. Finished
//     tasks are only in the store.
//   - Every decision about one task is taken under that task's lock (a
//     striped mutex), and written to the store before it is acted on, so a
//     crash between the two leaves a state Recover can finish.
type Engine struct {
	cfg     Config
	store   Store
	disp    Dispatcher
	clock   Clock
	newID   IDGen
	log     *slog.Logger
	observe func(Task)

	seed  maphash.Seed
	locks [256]sync.Mutex

	mu       sync.Mutex
	proplets map[string]*propletState
	order    []string // proplet ids, sorted, for round-robin
	rrNext   int
	flights  map[string]*flight // Scheduled/Running tasks
	pending  map[string]*waiting
	queue    []string // FIFO of pending ids; may hold stale ids
	seq      uint64

	idem idemState
}

type propletState struct {
	Proplet
	alive bool
	// assigned are the in-flight task ids placed here; len is the busy
	// slot count.
	assigned map[string]struct{}
}

type flight struct {
	propletID string
	attempt   int
	deadline  time.Time
	// placed is when the attempt's start went out (or, recovered, when
	// the engine started); missed counts heartbeats in a row from the
	// proplet that did not list it since ReconcileGrace passed, and asked
	// the starts sent again because of that (see reconcileLocked).
	placed time.Time
	missed int
	asked  int
	// redispatch marks an attempt recovered after a restart. Its start
	// command may never have left, or its result may have been lost with
	// the broker (an embedded broker dies with the manager after it
	// acknowledged the result to the proplet). So the start is sent again,
	// same attempt, once the proplet is alive: a proplet runs an attempt
	// it never saw, ignores one still running, and re-sends the result of
	// one it finished.
	redispatch bool
}

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

// New builds an engine. Call Recover before serving, then Run.
func New(cfg Config, deps Deps) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Dispatcher == nil {
		return nil, errors.New("orchestration: store and dispatcher are required")
	}
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.NewID == nil {
		deps.NewID = NewTimeIDGen(deps.Clock)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Observer == nil {
		deps.Observer = func(Task) {}
	}
	return &Engine{
		cfg:      cfg,
		store:    deps.Store,
		disp:     deps.Dispatcher,
		clock:    deps.Clock,
		newID:    deps.NewID,
		log:      deps.Logger,
		observe:  deps.Observer,
		seed:     maphash.MakeSeed(),
		proplets: make(map[string]*propletState),
		flights:  make(map[string]*flight),
		pending:  make(map[string]*waiting),
	}, nil
}

// Config returns the effective configuration, defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) lock(id string) func() {
	m := &e.locks[maphash.String(e.seed, id)%uint64(len(e.locks))]
	m.Lock()
	return m.Unlock
}

// Run ticks until ctx ends. It returns ctx.Err().
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// Submit validates and stores a new task, then schedules it unless it is
// suspended.
func (e *Engine) Submit(ctx context.Context, spec TaskSpec) (Task, error) {
	if err := ValidateSpec(spec); err != nil {
		return Task{}, err
	}
	now := e.clock.Now()
	t := Task{
		ID:   e.newID(),
		Spec: spec,
		Status: TaskStatus{
			Phase:     PhasePending,
			CreatedAt: now,
			UpdatedAt: now,
		},
	}
	if spec.Suspend {
		t.Status.Reason = ReasonSuspended
	}
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

// placeNow picks a proplet for a new task when nothing waits ahead of it,
// reserves the slot and marks t Scheduled. Callers hold t's lock.
func (e *Engine) placeNow(t *Task, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) > 0 {
		return false // FIFO: the queue goes first
	}
	p := e.pick(newWaiting(t))
	if p == nil {
		return false
	}
	e.markScheduled(t, p.ID, now)
	p.assigned[t.ID] = struct{}{}
	e.flights[t.ID] = &flight{propletID: p.ID, attempt: t.Status.Attempt, deadline: t.Status.Deadline, placed: now}
	return true
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

// send delivers the start command of t's current attempt; a failed
// delivery fails the attempt. Callers hold t's lock.
func (e *Engine) send(ctx context.Context, t Task) {
	if err := e.disp.StartTask(ctx, t.Status.PropletID, t); err != nil {
		e.log.Warn("start command not delivered", "task", t.ID, "proplet", t.Status.PropletID, "err", err)
		e.failAttemptLocked(ctx, t.ID, t.Status.Attempt, ReasonDispatchFailed, err.Error())
	}
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

// Get returns a task from the store.
func (e *Engine) Get(ctx context.Context, id string) (Task, error) {
	return e.store.GetTask(ctx, id)
}

// List returns a page of tasks from the store.
func (e *Engine) List(ctx context.Context, f TaskFilter) (TaskPage, error) {
	return e.store.ListTasks(ctx, f)
}

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

// fail ends the current attempt: back to Pending with a backoff when
// attempts remain, else Failed.
//
// A proplet that refused the start for want of a free slot ran nothing:
// its slots were busy with work the engine no longer counts (an attempt
// stopped or deleted but still winding down). That uses no attempt: the
// same attempt number is placed again after the base backoff.
func (e *Engine) fail(t *Task, reason, message string) {
	st := &t.Status
	if reason == ReasonNoCapacity {
		st.Message = fmt.Sprintf("%s had no free slot (%s); placing attempt %d again", st.PropletID, message, st.Attempt)
		st.Attempt--
		st.Phase, st.Reason, st.PropletID = PhasePending, reason, ""
		st.NotBefore = e.clock.Now().Add(e.cfg.BackoffBase)
		st.Deadline = time.Time{}
		return
	}
	if st.Attempt < e.maxAttempts(t) {
		now := e.clock.Now()
		st.Message = fmt.Sprintf("attempt %d on %s failed: %s", st.Attempt, st.PropletID, reasonText(reason, message))
		st.LastFailure = st.Message
		st.Phase = PhasePending
		st.Reason = reason
		st.PropletID = ""
		st.NotBefore = now.Add(e.cfg.backoff(st.Attempt))
		st.Deadline = time.Time{}
		return
	}
	e.finish(t, PhaseFailed, reason, message)
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

// update writes through the store, stamps UpdatedAt and tells the
// observer. Callers hold the task's lock.
func (e *Engine) update(ctx context.Context, id string, fn UpdateFunc) (Task, error) {
	now := e.clock.Now()
	// Stores treat ErrNoChange as success; the engine needs to know.
	var unchanged bool
	t, err := e.store.UpdateTask(ctx, id, func(t *Task) error {
		unchanged = false
		err := fn(t)
		if errors.Is(err, ErrNoChange) {
			unchanged = true
		}
		if err != nil {
			return err
		}
		t.Status.UpdatedAt = now
		return nil
	})
	if err == nil && unchanged {
		err = ErrNoChange
	}
	if err != nil {
		// Callers answer with the task as it stands.
		if errors.Is(err, ErrNoChange) || errors.Is(err, ErrTerminal) {
			if cur, gerr := e.store.GetTask(ctx, id); gerr == nil {
				t = cur
			}
		}
		return t, err
	}
	e.observe(t)
	return t, nil
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

// place picks proplets for queued tasks and reserves their slots.
func (e *Engine) place() []placement {
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	free := 0
	for _, p := range e.proplets {
		if p.alive {
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

// pick chooses a proplet for w by policy. Callers hold e.mu.
func (e *Engine) pick(w *waiting) *propletState {
	eligible := func(p *propletState) bool {
		return p.alive && len(p.assigned) < p.Slots && w.allows(p.ID) && p.Matches(w.selector) && w.fits(p)
	}
	if w.propletID != "" {
		if p := e.proplets[w.propletID]; p != nil && eligible(p) {
			return p
		}
		return nil
	}
	n := len(e.order)
	var best *propletState
	for i := range n {
		idx := i
		if e.cfg.Policy == PolicyRoundRobin {
			idx = (e.rrNext + i) % n
		}
		p := e.proplets[e.order[idx]]
		if !eligible(p) {
			continue
		}
		if e.cfg.Policy == PolicyRoundRobin {
			e.rrNext = (idx + 1) % n
			return p
		}
		// least-loaded: lowest busy share; ties go to more free slots.
		if best == nil || len(p.assigned)*best.Slots < len(best.assigned)*p.Slots ||
			(len(p.assigned)*best.Slots == len(best.assigned)*p.Slots && p.Slots-len(p.assigned) > best.Slots-len(best.assigned)) {
			best = p
		}
	}
	return best
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

// Tick does the periodic work: proplets whose heartbeat deadline passed
// are lost, attempts past their deadline fail, the queue is served and,
// hourly, expired idempotency keys are pruned.
// Run calls it; tests call it with a fake clock.
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
	for _, p := range e.proplets {
		if p.LastSeen.Add(e.cfg.HeartbeatTimeout).After(now) {
			continue
		}
		if p.alive {
			e.log.Warn("proplet lost: heartbeat deadline passed", "proplet", p.ID)
			p.alive = false
			p.Alive = false
		}
		for id := range p.assigned {
			if f := e.flights[id]; f != nil {
				victims = append(victims, victim{id, p.ID, f.attempt, ReasonPropletLost, "no heartbeat from " + p.ID + " for " + e.cfg.HeartbeatTimeout.String()})
			}
		}
	}
	for id, f := range e.flights {
		if !f.deadline.IsZero() && now.After(f.deadline) {
			victims = append(victims, victim{id, f.propletID, f.attempt, ReasonDeadlineExceeded, "no result before the deadline"})
		}
		if f.redispatch {
			if p := e.proplets[f.propletID]; p != nil && p.alive {
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
		case !p.alive:
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
		if p.alive && p.Slots > 0 && p.Matches(w.selector) {
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
		if p == nil || !p.alive {
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

// resend repeats the start commands of in-flight attempts: recovered ones
// (flight.redispatch) and ones their proplet does not list (reconcileLocked).
func (e *Engine) resend(ctx context.Context, pls []placement) {
	for _, pl := range pls {
		unlock := e.lock(pl.taskID)
		t, err := e.store.GetTask(ctx, pl.taskID)
		inFlight := t.Status.Phase == PhaseScheduled || t.Status.Phase == PhaseRunning
		if err == nil && inFlight && t.Status.PropletID == pl.propletID {
			if err := e.disp.StartTask(ctx, pl.propletID, t); err != nil {
				e.log.Warn("start command not re-sent", "task", t.ID, "err", err)
			}
		}
		unlock()
	}
}
