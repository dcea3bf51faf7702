package fl

import (
	"sync"

	"github.com/absmach/propeller/orchestration"
)

// Changes queues the engine's task changes for a coordinator. The engine's
// observer feeds it and the coordinator drains it, so it is built before
// both: the engine, which the coordinator needs, never needs the
// coordinator. It is safe for concurrent use; build it with NewChanges.
type Changes struct {
	mu     sync.Mutex
	tasks  []orchestration.Task
	signal chan struct{}
}

// NewChanges returns an empty queue.
func NewChanges() *Changes { return &Changes{signal: make(chan struct{}, 1)} }

// TaskChanged is for the engine's observer. The engine calls it with a
// task lock held, so it only queues the change; the coordinator's Tick
// (and Run) handle it.
func (q *Changes) TaskChanged(t orchestration.Task) {
	if t.Spec.Labels[LabelJob] == "" {
		return
	}
	// Only what moves a participant matters.
	if t.Status.Phase != orchestration.PhaseRunning && !t.Status.Phase.Terminal() {
		return
	}
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take returns and forgets the queued changes.
func (q *Changes) take() []orchestration.Task {
	q.mu.Lock()
	defer q.mu.Unlock()
	tasks := q.tasks
	q.tasks = nil
	return tasks
}
