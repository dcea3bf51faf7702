package orchestration

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Idempotency names a create request so a retry of it is answered with
// the tasks the first one created instead of new ones. The zero value
// means no key: every call creates.
//
// Fingerprint identifies the request itself (the REST layer hashes its
// method, path and canonical body); reusing Key with another Fingerprint
// is ErrIdempotencyMismatch.
type Idempotency struct {
	Key, Fingerprint string
}

// MaxIdempotencyKeyLen caps Idempotency.Key, so a record's key stays a
// small store key.
const MaxIdempotencyKeyLen = 255

// ErrIdempotencyMismatch means an idempotency key was used before, within
// the window, for a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key reused for a different request")

// IdempotencyRecord is what a store keeps for a key: the request's
// fingerprint and the ids of the tasks it created, in request order.
type IdempotencyRecord struct {
	Key         string    `json:"key"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	TaskIDs     []string  `json:"task_ids"`
	CreatedAt   time.Time `json:"created_at"`
}

// BatchCreator is an optional TaskStore capability: many tasks, and the
// idempotency record of the request that made them, in one durable write.
// SubmitBatch uses it when the store has it.
//
// storage/bolt (one bbolt transaction, so one fsync for a whole batch) and
// storage/memory implement it. The operator's CRD store does not: the
// Kubernetes API has no write spanning objects. There the engine creates a
// batch one task at a time (deleting what it created if one fails) and
// refuses an idempotency key with errors.ErrUnsupported; the operator
// serves no REST API today, so no request of it carries one.
//
// # Concurrency
//
// Safe for concurrent use. CreateTasks is atomic: either every task and
// rec are stored, durably, or nothing is. It returns ErrExists, writing
// nothing, if a task id is taken or rec.Key already has a record (expired
// or not: the engine prunes an expired key before using it again), and
// ErrInvalid for an empty or repeated id. rec may be nil.
type BatchCreator interface {
	CreateTasks(ctx context.Context, tasks []Task, rec *IdempotencyRecord) error
}

// IdempotencyStore reads and prunes the records BatchCreator writes; a
// store implements both or neither.
//
// # Concurrency
//
// Safe for concurrent use. A record read is one a CreateTasks committed
// together with its tasks, never half of one.
type IdempotencyStore interface {
	// GetIdempotency returns ErrNotFound for an unknown key.
	GetIdempotency(ctx context.Context, key string) (IdempotencyRecord, error)
	// PruneIdempotency deletes the records created before `before` and
	// says how many it deleted. It writes nothing when none is that old.
	PruneIdempotency(ctx context.Context, before time.Time) (int, error)
}

// idemState is the engine's idempotency bookkeeping.
type idemState struct {
	// pruneAt is when Tick next prunes records (unix ns).
	pruneAt atomic.Int64
	// keys serialise requests per key (striped), so a retry racing its
	// original waits for it and replays instead of creating tasks whose
	// write the store then refuses.
	keys [64]sync.Mutex
}

func (s *idemState) lockKey(seed maphash.Seed, key string) func() {
	m := &s.keys[maphash.String(seed, key)%uint64(len(s.keys))]
	m.Lock()
	return m.Unlock
}

// idempotencyPorts returns the store's optional ports; ok is false unless
// it has both.
func (e *Engine) idempotencyPorts() (BatchCreator, IdempotencyStore, bool) {
	bc, okB := e.store.(BatchCreator)
	is, okI := e.store.(IdempotencyStore)
	return bc, is, okB && okI
}

// expired reports whether a record is past the window: a retry at exactly
// CreatedAt+IdempotencyWindow still replays. PruneIdempotency(now-window)
// deletes exactly the expired records.
func (e *Engine) expired(rec IdempotencyRecord, now time.Time) bool {
	return rec.CreatedAt.Before(now.Add(-e.cfg.IdempotencyWindow))
}

// replay answers a request whose key is already recorded: the tasks it
// created as they stand now, or ErrIdempotencyMismatch. found is false
// when the key is unknown or its record expired (then it is pruned, so
// the key can be recorded again).
func (e *Engine) replay(ctx context.Context, is IdempotencyStore, idem Idempotency) (tasks []Task, found bool, err error) {
	rec, err := is.GetIdempotency(ctx, idem.Key)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read idempotency key: %w", err)
	}
	now := e.clock.Now()
	if e.expired(rec, now) {
		if _, err := is.PruneIdempotency(ctx, now.Add(-e.cfg.IdempotencyWindow)); err != nil {
			return nil, false, fmt.Errorf("prune idempotency keys: %w", err)
		}
		return nil, false, nil
	}
	if rec.Fingerprint != idem.Fingerprint {
		return nil, false, fmt.Errorf("idempotency key %q was used at %s for a different request: %w",
			idem.Key, rec.CreatedAt.UTC().Format(time.RFC3339), ErrIdempotencyMismatch)
	}
	tasks = make([]Task, 0, len(rec.TaskIDs))
	for _, id := range rec.TaskIDs {
		t, err := e.store.GetTask(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, false, fmt.Errorf("task %s, created under idempotency key %q, has since been deleted: %w", id, idem.Key, ErrNotFound)
		}
		if err != nil {
			return nil, false, fmt.Errorf("read task %s: %w", id, err)
		}
		tasks = append(tasks, t)
	}
	return tasks, true, nil
}

// pruneIdempotency deletes expired idempotency records, at most once per
// IdempotencyWindow/24 (hourly by default): a record only has to be gone
// before its key is reused, and replay prunes an expired one it meets, so
// this only bounds the space old records take. Tick calls it.
func (e *Engine) pruneIdempotency(ctx context.Context, now time.Time) {
	_, is, ok := e.idempotencyPorts()
	if !ok {
		return
	}
	next := e.idem.pruneAt.Load()
	if now.UnixNano() < next || !e.idem.pruneAt.CompareAndSwap(next, now.Add(e.cfg.IdempotencyWindow/24).UnixNano()) {
		return
	}
	n, err := is.PruneIdempotency(ctx, now.Add(-e.cfg.IdempotencyWindow))
	if err != nil {
		e.log.Warn("prune idempotency keys", "err", err)
		return
	}
	if n > 0 {
		e.log.Debug("pruned expired idempotency keys", "count", n)
	}
}
