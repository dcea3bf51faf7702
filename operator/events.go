package operator

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	"github.com/absmach/propeller/orchestration"
)

// transitions turns the engine's commits into Kubernetes events, so
// `kubectl describe wasmtask` tells the task's story. It is the engine's
// Observer: it runs under the task's lock and must not block, which the
// recorder (buffered, dropping when full) and resolve guarantee.
//
// Every event is an API write, as costly as a status write, so progress is
// reported only when it lasts: a Scheduled or Running event waits `hold`
// and is dropped if the task moves on before (its result, or a failure,
// is reported instead, and names the proplet too). Warnings and results
// go out at once. Most tasks finish within the hold and cost one event.
//
// When a held progress event goes out, the task has been in flight for
// `hold`: slow is called with its id, for work only such tasks need (the
// stop-task finalizer).
type transitions struct {
	rec events.EventRecorder
	// resolve calls record with the WasmTask of a task id (UID included,
	// see taskRefs), now or later; never for an object that is gone.
	resolve func(id string, record func(runtime.Object))
	hold    time.Duration
	slow    func(id string)

	mu sync.Mutex
	// last is the phase and reason last reported per in-flight task.
	last map[string]string
	// progress is the held progress event per task.
	progress map[string]*heldEvent
}

// heldEvent is a progress event waiting for its hold to pass.
type heldEvent struct {
	t     orchestration.Task
	timer *time.Timer
}

func newTransitions(rec events.EventRecorder, resolve func(id string, record func(runtime.Object)), hold time.Duration, slow func(id string)) *transitions {
	return &transitions{
		rec: rec, resolve: resolve, hold: hold, slow: slow,
		last: map[string]string{}, progress: map[string]*heldEvent{},
	}
}

func (tr *transitions) observe(t orchestration.Task) {
	ph := t.Status.Phase
	key := string(ph) + "/" + t.Status.Reason
	tr.mu.Lock()
	defer tr.mu.Unlock()
	prev, seen := tr.last[t.ID]
	if ph.Terminal() {
		delete(tr.last, t.ID) // the map holds in-flight tasks only
	} else {
		tr.last[t.ID] = key
	}
	if seen && prev == key {
		return
	}
	// A plain Pending (queued, no reason) says nothing; Pending with a
	// reason (Unschedulable, a retry's backoff) is reported.
	if ph == orchestration.PhasePending && t.Status.Reason == "" {
		return
	}
	if (ph == orchestration.PhaseScheduled || ph == orchestration.PhaseRunning) && tr.hold > 0 {
		if h := tr.progress[t.ID]; h != nil {
			h.t = t // supersedes the held one; its hold goes on
			return
		}
		h := &heldEvent{t: t}
		h.timer = time.AfterFunc(tr.hold, func() { tr.release(h) })
		tr.progress[t.ID] = h
		return
	}
	if h := tr.progress[t.ID]; h != nil {
		h.timer.Stop()
		delete(tr.progress, t.ID)
	}
	tr.emit(t)
}

// forget drops what is kept for a task whose WasmTask is gone: the engine
// tells no observer about a task deleted behind its back.
func (tr *transitions) forget(id string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	delete(tr.last, id)
	if h := tr.progress[id]; h != nil {
		h.timer.Stop()
		delete(tr.progress, id)
	}
}

// release sends a progress event whose hold passed, if it is still held.
func (tr *transitions) release(h *heldEvent) {
	tr.mu.Lock()
	id := h.t.ID
	if tr.progress[id] != h {
		tr.mu.Unlock()
		return
	}
	delete(tr.progress, id)
	tr.emit(h.t)
	tr.mu.Unlock()
	if tr.slow != nil {
		tr.slow(id)
	}
}

// emit records t's state as an event. Callers hold tr.mu.
func (tr *transitions) emit(t orchestration.Task) {
	ph := t.Status.Phase
	typ := "Normal"
	if ph == orchestration.PhaseFailed || t.Status.Reason == orchestration.ReasonUnschedulable {
		typ = "Warning"
	}
	note := string(ph)
	if t.Status.PropletID != "" {
		note += " on " + t.Status.PropletID
	}
	if t.Status.Message != "" {
		note += ": " + t.Status.Message
	}
	reason := string(ph)
	if t.Status.Reason != "" && conditionReason.MatchString(t.Status.Reason) {
		reason = t.Status.Reason
	}
	attempt := t.Status.Attempt
	tr.resolve(t.ID, func(obj runtime.Object) {
		tr.rec.Eventf(obj, nil, typ, reason, "Orchestrate", "attempt %d: %s", attempt, note)
	})
}
