package orchestration

import (
	"context"
	"errors"
	"time"
)

// Errors every TaskStore returns, so callers can test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict means a concurrent writer won; the caller may retry.
	ErrConflict = errors.New("conflict")
	// ErrInvalid wraps errors caused by bad input.
	ErrInvalid = errors.New("invalid")
)

// UpdateFunc mutates a task in place. It may be called more than once
// for one Update (a store retries it after a conflict or inside a batch),
// so it must be free of side effects other than on t. Returning an error
// aborts the update and Update returns that error. Returning ErrNoChange
// makes Update succeed without writing.
type UpdateFunc func(t *Task) error

// ErrNoChange is returned by an UpdateFunc to skip the write.
var ErrNoChange = errors.New("no change")

// TaskStore persists tasks. It is declared here, by its consumer, and
// implemented by storage/bolt, storage/memory and the operator's CRD store;
// storage/storetest is the conformance suite all of them pass.
//
// # Concurrency
//
// All methods are safe for concurrent use. Update is atomic per task: fn
// sees the latest committed version and no other write to that task lands
// between the read and the write. A nil error means the write is durable
// (for persistent stores: it survives a process crash).
type TaskStore interface {
	// CreateTask stores a new task; ErrExists if the id is taken.
	CreateTask(ctx context.Context, t Task) error
	// GetTask returns ErrNotFound for an unknown id.
	GetTask(ctx context.Context, id string) (Task, error)
	// UpdateTask applies fn to the stored task and returns the result.
	UpdateTask(ctx context.Context, id string, fn UpdateFunc) (Task, error)
	// DeleteTask removes a task; ErrNotFound if absent.
	DeleteTask(ctx context.Context, id string) error
	// ListTasks returns one page of matching tasks.
	ListTasks(ctx context.Context, f TaskFilter) (TaskPage, error)
}

// PropletStore remembers proplets that joined, so they are listed after a
// manager restart. Liveness is not persisted: it is re-learned from the
// broker (retained status and heartbeats).
type PropletStore interface {
	PutProplet(ctx context.Context, p Proplet) error
	GetProplet(ctx context.Context, id string) (Proplet, error)
	ListProplets(ctx context.Context) ([]Proplet, error)
	DeleteProplet(ctx context.Context, id string) error
}

// Store is everything the engine persists.
type Store interface {
	TaskStore
	PropletStore
}

// Dispatcher delivers commands to proplets (the manager's MQTT link).
// Sending the same start twice must be harmless: proplets de-duplicate by
// (task id, attempt).
type Dispatcher interface {
	// StartTask sends the start of t's current attempt; the proplet
	// refuses it (ReasonExpired) if it arrives after w.NotAfter.
	StartTask(ctx context.Context, propletID string, t Task, w StartWindow) error
	StopTask(ctx context.Context, propletID, taskID string, attempt int, reason string) error
}

// StartWindow fences a start command in time, on the engine's clock: Sent
// is when it went out, NotAfter the latest the proplet may still begin it.
// A start that sat in the broker longer (its proplet was cut off or
// paused) reached a proplet the engine has given up on, or could have, and
// whose attempt may have run elsewhere since: the proplet refuses it
// instead of running the module a second time. Proplets compare the two
// against the manager's clock as they observe it, so their own clock may
// be off.
type StartWindow struct {
	Sent, NotAfter time.Time
}

// BrokerLink is the manager's own connection to the broker, through which
// every heartbeat arrives (the manager's MQTT link). While it is down the
// engine hears nothing from any proplet, which says nothing about them,
// so it suspends liveness: no proplet is lost, and no attempt's deadline
// passes, until the link is back and a grace has passed.
type BrokerLink interface {
	// LinkState reports whether the link is up now, and how many times it
	// has come up so far: a changed count is a reconnection, even one that
	// happened between two looks.
	LinkState() (up bool, connects uint64)
}

// Clock supplies time, so tests control it.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
