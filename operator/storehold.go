package operator

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// keyedMutex is a mutex per key, kept only while someone holds or waits
// for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// heldWrite is a status write not sent yet.
type heldWrite struct {
	// obj is the object as written, with the resourceVersion of base.
	obj *v1.WasmTask
	// base is the status on the server it replaces.
	base v1.WasmTaskStatus
	// timer writes it when no later write did.
	timer *time.Timer
}

// Coalesce makes the store hold back transient status writes for up to d
// (0, the default, writes everything at once). Two transitions qualify,
// both followed at once by another write in the common case:
//
//   - admitting a kubectl-created object (Pending, not held), which the
//     scheduler turns into Scheduled as soon as a slot is free;
//   - Scheduled -> Running, which a short task follows with its result.
//
// Neither matters to recovery: an object never admitted is admitted again
// by the controller, and a task that still reads Scheduled after a restart
// gets its start command again with the same attempt, which proplets
// de-duplicate. Scheduled and final
// states are always written before the store returns. Reads through the
// store (GetTask, ListTasks, UpdateTask) see held writes. Call it before
// use.
func (s *Store) Coalesce(d time.Duration) { s.coalesce = d }

// deferrable reports whether the write of next over obj may be held back.
func deferrable(obj, next *v1.WasmTask) bool {
	to := next.Status.Phase
	if !admitted(obj) {
		return to == v1.TaskPending && !next.Status.Held
	}
	return obj.Status.Phase == v1.TaskScheduled && to == v1.TaskRunning && obj.Status.Attempt == next.Status.Attempt
}

// engineStatus is st without what the controller writes besides the
// engine (conditions, observedGeneration).
func engineStatus(st v1.WasmTaskStatus) v1.WasmTaskStatus {
	st.Conditions = nil
	st.ObservedGeneration = 0
	return st
}

// hold records next as a held write over base and arms its timer.
func (s *Store) hold(next *v1.WasmTask, base v1.WasmTaskStatus) {
	id := s.idOf(next)
	h := &heldWrite{obj: next, base: base}
	s.mu.Lock()
	if old := s.held[id]; old != nil {
		old.timer.Stop()
	}
	s.held[id] = h
	s.last[id] = next
	h.timer = time.AfterFunc(s.coalesce, func() { s.flush(id, h) })
	s.mu.Unlock()
}

// flush writes h if it is still held.
func (s *Store) flush(id string, h *heldWrite) {
	// Under the task's write lock: a write that raced the timer and
	// carried h is then seen, and there is nothing to do.
	unlock := s.writing.lock(id)
	defer unlock()
	s.mu.Lock()
	cur := s.held[id]
	s.mu.Unlock()
	if cur != h {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A no-op update writes what is held (UpdateTask writes while a held
	// write exists); errors leave the object as it was, which is safe.
	_, _ = s.updateLocked(ctx, id, func(*orchestration.Task) error { return nil }, false)
}

// dropHeld forgets the held write of id, if it is h (nil: any).
func (s *Store) dropHeld(id string, h *heldWrite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.held[id]
	if cur == nil || (h != nil && cur != h) {
		return
	}
	cur.timer.Stop()
	delete(s.held, id)
}

// heldOver returns the held write of obj's task and obj with it applied,
// when the server's object is still the one the write replaces (no one
// else changed the engine's status since); otherwise nil and obj.
func (s *Store) heldOver(obj *v1.WasmTask) (*heldWrite, *v1.WasmTask) {
	s.mu.Lock()
	h := s.held[s.idOf(obj)]
	s.mu.Unlock()
	if h == nil || !equality.Semantic.DeepEqual(engineStatus(obj.Status), engineStatus(h.base)) {
		return nil, obj
	}
	out := obj.DeepCopy()
	applyStatus(out, toTask(h.obj))
	return h, out
}
