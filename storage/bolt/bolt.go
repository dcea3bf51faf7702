// Package bolt is the standalone manager's orchestration.Store: one bbolt
// file holding tasks, their secondary indexes and known proplets.
//
// Durability: a nil error from any write means the transaction was fsynced.
// Throughput comes from sharing that fsync (group commit, see commit.go):
// writes that arrive while a commit is in progress all go into the next
// transaction, so a lone writer pays one commit and many writers share one.
//
// Layout (all keys sort by task id within a prefix, so lists come out in
// id order without sorting):
//
//	tasks     id                 -> record (format byte + JSON)
//	idx       kind|parts|id      -> empty   (phase, proplet, label k/v)
//	idxcount  kind|parts         -> uint64  (entries under that prefix)
//	proplets  id                 -> JSON
//	idem, idemtime               -> idempotency records (idempotency.go)
//	meta      "schema"           -> version
//
// Index entries and counts change in the same transaction as the record, so
// they can never disagree with it, crash or not. The counts let ListTasks
// walk the most selective index when several filters are combined.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/internal/query"
)

// ErrLocked means another process has the database open. bbolt would
// otherwise block forever on the file lock.
var ErrLocked = errors.New("database is locked by another process")

// Defaults for Options' zero values.
const (
	DefaultLockTimeout  = 2 * time.Second
	DefaultMaxBatchSize = 1000
)

// ErrNewerSchema means the file was written by a newer propeller, whose
// layout this one cannot read; opening it refuses rather than guess.
var ErrNewerSchema = errors.New("database written by a newer propeller")

// recordJSON marks a JSON-encoded record, leaving room for a binary
// encoding later without a migration of old records.
const recordJSON byte = 1

// Index kinds: the first byte of every idx key.
const (
	kindPhase   byte = 'p'
	kindProplet byte = 'n'
	kindLabel   byte = 'l'
)

var (
	bucketTasks    = []byte("tasks")
	bucketIdx      = []byte("idx")
	bucketIdxCount = []byte("idxcount")
	bucketProplets = []byte("proplets")
	bucketMeta     = []byte("meta")
	keySchema      = []byte("schema")
)

// Options tune Open. The zero value is sensible.
type Options struct {
	// LockTimeout bounds the wait for another process to release the
	// file; 0 means DefaultLockTimeout, negative waits forever.
	LockTimeout time.Duration
	// MaxBatchSize caps how many writes share one transaction, bounding
	// the work lost to a re-run when one of them fails.
	MaxBatchSize int
}

// Store implements orchestration.Store on bbolt.
type Store struct {
	db *bbolt.DB
	gc *groupCommit
}

var _ orchestration.Store = (*Store)(nil)

// Open opens or creates the database at path.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	switch {
	case timeout == 0:
		timeout = DefaultLockTimeout
	case timeout < 0:
		timeout = 0 // bbolt: wait forever
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		// The map freelist keeps allocation cheap once the file has many
		// free pages (finished tasks deleted over time).
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w (gave up after %s)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	batch := DefaultMaxBatchSize
	if opts.MaxBatchSize > 0 {
		batch = opts.MaxBatchSize
	}
	return &Store{db: db, gc: startGroupCommit(db, batch)}, nil
}

func initSchema(tx *bbolt.Tx) error {
	// Buckets added later are created here too: schema 1 files gain them
	// on open, empty, so no migration is needed.
	for _, name := range [][]byte{bucketTasks, bucketIdx, bucketIdxCount, bucketProplets, bucketIdem, bucketIdemTime, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return migrate(tx, schema)
}

// Close waits for writes in flight, then releases the file. Later writes
// fail with ErrClosed.
func (s *Store) Close() error {
	s.gc.stop()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// write commits fn durably, sharing the transaction with concurrent
// writes. fn may run more than once (see groupCommit), so every fn here
// resets what it captured before doing anything else.
func (s *Store) write(fn func(*bbolt.Tx) error) error {
	return s.gc.do(fn)
}

// CreateTask implements orchestration.TaskStore.
func (s *Store) CreateTask(ctx context.Context, t orchestration.Task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.ID == "" {
		return fmt.Errorf("bolt: create task: empty id: %w", orchestration.ErrInvalid)
	}
	rec, err := encodeTask(&t)
	if err != nil {
		return fmt.Errorf("bolt: create task %q: %w", t.ID, err)
	}
	id := []byte(t.ID)
	keys := indexPrefixes(&t)
	var exists bool
	err = s.write(func(tx *bbolt.Tx) error {
		// Rejections are reported through exists, not as a tx error: an
		// error would roll back and re-run every write sharing the tx.
		exists = false
		tasks := tx.Bucket(bucketTasks)
		if tasks.Get(id) != nil {
			exists = true
			return nil
		}
		if err := tasks.Put(id, rec); err != nil {
			return err
		}
		return applyIndex(tx, t.ID, nil, keys)
	})
	if err != nil {
		return fmt.Errorf("bolt: create task %q: %w", t.ID, err)
	}
	if exists {
		return fmt.Errorf("bolt: create task %q: %w", t.ID, orchestration.ErrExists)
	}
	return nil
}

// GetTask implements orchestration.TaskStore.
func (s *Store) GetTask(ctx context.Context, id string) (orchestration.Task, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Task{}, err
	}
	var t orchestration.Task
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketTasks).Get([]byte(id))
		if v == nil {
			return orchestration.ErrNotFound
		}
		return decodeTask(v, &t)
	})
	if err != nil {
		return orchestration.Task{}, fmt.Errorf("bolt: get task %q: %w", id, err)
	}
	return t, nil
}

// UpdateTask implements orchestration.TaskStore. The read, fn and the write
// are atomic: no other write to the task can land in between.
//
// It runs optimistically first: decode, fn and encode happen in the
// caller's goroutine, and the commit only checks that the stored record is
// still the one fn saw before writing. That keeps the single committer's
// work per write small, so a batch commits sooner. Callers that serialise
// writes per task (the engine does) never conflict; on a conflict the
// update is redone inside the transaction.
func (s *Store) UpdateTask(ctx context.Context, id string, fn orchestration.UpdateFunc) (orchestration.Task, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Task{}, err
	}
	key := []byte(id)
	var raw []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketTasks).Get(key); v != nil {
			raw = bytes.Clone(v)
		}
		return nil
	}); err != nil {
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, err)
	}
	if raw == nil {
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, orchestration.ErrNotFound)
	}
	u, err := prepareUpdate(id, raw, fn)
	if err != nil {
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, err)
	}
	if u.outcome != nil || u.rec == nil {
		return u.result(id)
	}
	var conflict bool
	err = s.write(func(tx *bbolt.Tx) error {
		tasks := tx.Bucket(bucketTasks)
		conflict = !bytes.Equal(tasks.Get(key), raw)
		if conflict {
			return nil
		}
		if err := tasks.Put(key, u.rec); err != nil {
			return err
		}
		return applyIndex(tx, id, indexPrefixes(&u.cur), indexPrefixes(&u.next))
	})
	if err != nil {
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, err)
	}
	if !conflict {
		return u.next, nil
	}
	return s.updateInTx(id, fn)
}

// update is one prepared UpdateTask: rec is nil when fn made no change.
type update struct {
	cur, next orchestration.Task
	rec       []byte
	outcome   error // not-found, fn's error or a bad result: nothing to write
}

// prepareUpdate decodes raw, applies fn and encodes the result. Its error
// is a corrupt record; outcome carries what the caller should see.
func prepareUpdate(id string, raw []byte, fn orchestration.UpdateFunc) (update, error) {
	var u update
	if err := decodeTask(raw, &u.cur); err != nil {
		return u, err
	}
	u.next = query.CloneTask(u.cur)
	if err := fn(&u.next); err != nil {
		if !errors.Is(err, orchestration.ErrNoChange) {
			u.outcome = err
		}
		u.next = u.cur
		return u, nil
	}
	if u.next.ID != id {
		u.outcome = fmt.Errorf("id changed to %q: %w", u.next.ID, orchestration.ErrInvalid)
		return u, nil
	}
	rec, err := encodeTask(&u.next)
	if err != nil {
		u.outcome = err
		return u, nil
	}
	u.rec = rec
	return u, nil
}

// result is what UpdateTask returns for a prepared update.
func (u update) result(id string) (orchestration.Task, error) {
	switch {
	case u.outcome == nil:
		return u.next, nil
	case errors.Is(u.outcome, orchestration.ErrNotFound), errors.Is(u.outcome, orchestration.ErrInvalid):
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, u.outcome)
	}
	// fn's own error goes back as is: it is the caller's vocabulary.
	return orchestration.Task{}, u.outcome
}

// updateInTx is UpdateTask with the read, fn and the write in one
// transaction: the path after a conflict.
func (s *Store) updateInTx(id string, fn orchestration.UpdateFunc) (orchestration.Task, error) {
	key := []byte(id)
	var u update
	err := s.write(func(tx *bbolt.Tx) error {
		tasks := tx.Bucket(bucketTasks)
		v := tasks.Get(key)
		if v == nil {
			u = update{outcome: orchestration.ErrNotFound}
			return nil
		}
		var err error
		if u, err = prepareUpdate(id, v, fn); err != nil || u.outcome != nil || u.rec == nil {
			return err
		}
		if err := tasks.Put(key, u.rec); err != nil {
			return err
		}
		return applyIndex(tx, id, indexPrefixes(&u.cur), indexPrefixes(&u.next))
	})
	if err != nil {
		return orchestration.Task{}, fmt.Errorf("bolt: update task %q: %w", id, err)
	}
	return u.result(id)
}

// DeleteTask implements orchestration.TaskStore.
func (s *Store) DeleteTask(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key := []byte(id)
	var missing bool
	err := s.write(func(tx *bbolt.Tx) error {
		missing = false
		tasks := tx.Bucket(bucketTasks)
		v := tasks.Get(key)
		if v == nil {
			missing = true
			return nil
		}
		var cur orchestration.Task
		if err := decodeTask(v, &cur); err != nil {
			return err
		}
		if err := tasks.Delete(key); err != nil {
			return err
		}
		return applyIndex(tx, id, indexPrefixes(&cur), nil)
	})
	if err != nil {
		return fmt.Errorf("bolt: delete task %q: %w", id, err)
	}
	if missing {
		return fmt.Errorf("bolt: delete task %q: %w", id, orchestration.ErrNotFound)
	}
	return nil
}

// PutProplet implements orchestration.PropletStore. It stores p as given;
// the engine decides what persisted liveness means after a restart.
func (s *Store) PutProplet(ctx context.Context, p orchestration.Proplet) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return fmt.Errorf("bolt: put proplet: empty id: %w", orchestration.ErrInvalid)
	}
	rec, err := json.Marshal(&p)
	if err != nil {
		return fmt.Errorf("bolt: put proplet %q: %w: %w", p.ID, orchestration.ErrInvalid, err)
	}
	err = s.write(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketProplets).Put([]byte(p.ID), rec)
	})
	if err != nil {
		return fmt.Errorf("bolt: put proplet %q: %w", p.ID, err)
	}
	return nil
}

// GetProplet implements orchestration.PropletStore.
func (s *Store) GetProplet(ctx context.Context, id string) (orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Proplet{}, err
	}
	var p orchestration.Proplet
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketProplets).Get([]byte(id))
		if v == nil {
			return orchestration.ErrNotFound
		}
		return json.Unmarshal(v, &p)
	})
	if err != nil {
		return orchestration.Proplet{}, fmt.Errorf("bolt: get proplet %q: %w", id, err)
	}
	return p, nil
}

// ListProplets implements orchestration.PropletStore; ordered by id.
func (s *Store) ListProplets(ctx context.Context) ([]orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []orchestration.Proplet
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketProplets).ForEach(func(_, v []byte) error {
			var p orchestration.Proplet
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: list proplets: %w", err)
	}
	return out, nil
}

// DeleteProplet implements orchestration.PropletStore; ErrNotFound if absent.
func (s *Store) DeleteProplet(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var missing bool
	err := s.write(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketProplets)
		missing = b.Get([]byte(id)) == nil
		if missing {
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("bolt: delete proplet %q: %w", id, err)
	}
	if missing {
		return fmt.Errorf("bolt: delete proplet %q: %w", id, orchestration.ErrNotFound)
	}
	return nil
}

func encodeTask(t *orchestration.Task) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(512)
	buf.WriteByte(recordJSON)
	if err := json.NewEncoder(&buf).Encode(t); err != nil {
		// Only unencodable values (NaN results) get here: bad input.
		return nil, fmt.Errorf("encode: %w: %w", orchestration.ErrInvalid, err)
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil // drop the Encoder's newline
}

func decodeTask(v []byte, t *orchestration.Task) error {
	if len(v) == 0 || v[0] != recordJSON {
		return fmt.Errorf("unknown record format")
	}
	if err := json.Unmarshal(v[1:], t); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// appendPart appends a length-prefixed part, so prefixes are unambiguous
// whatever bytes ids, label keys or values contain.
func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func phasePrefix(p orchestration.Phase) []byte {
	return appendPart([]byte{kindPhase}, string(p))
}

func propletPrefix(id string) []byte {
	return appendPart([]byte{kindProplet}, id)
}

func labelPrefix(k, v string) []byte {
	return appendPart(appendPart([]byte{kindLabel}, k), v)
}

// indexPrefixes lists the index prefixes t belongs under; the full key is
// prefix+id. PropletID indexes the placement (Status), which is what
// TaskFilter.PropletID matches.
func indexPrefixes(t *orchestration.Task) [][]byte {
	out := make([][]byte, 0, 2+len(t.Spec.Labels))
	out = append(out, phasePrefix(t.Status.Phase))
	if t.Status.PropletID != "" {
		out = append(out, propletPrefix(t.Status.PropletID))
	}
	for k, v := range t.Spec.Labels {
		out = append(out, labelPrefix(k, v))
	}
	return out
}

// applyIndex moves task id from the old prefixes to the new ones, touching
// only entries that differ so a plain status update costs few page writes.
func applyIndex(tx *bbolt.Tx, id string, old, new [][]byte) error {
	idx := tx.Bucket(bucketIdx)
	counts := tx.Bucket(bucketIdxCount)
	has := func(set [][]byte, p []byte) bool {
		return slices.ContainsFunc(set, func(q []byte) bool { return bytes.Equal(p, q) })
	}
	for _, p := range old {
		if has(new, p) {
			continue
		}
		if err := idx.Delete(append(slices.Clip(p), id...)); err != nil {
			return err
		}
		if err := addCount(counts, p, -1); err != nil {
			return err
		}
	}
	for _, p := range new {
		if has(old, p) {
			continue
		}
		if err := idx.Put(append(slices.Clip(p), id...), nil); err != nil {
			return err
		}
		if err := addCount(counts, p, 1); err != nil {
			return err
		}
	}
	return nil
}

func addCount(b *bbolt.Bucket, prefix []byte, d int64) error {
	n := int64(count(b, prefix)) + d
	if n <= 0 {
		return b.Delete(prefix)
	}
	return b.Put(prefix, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

func count(b *bbolt.Bucket, prefix []byte) uint64 {
	v := b.Get(prefix)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Stats are sizes useful to operators and benchmarks.
type Stats struct {
	Tasks    int
	FileSize int64
	// Commits counts the write transactions (one fsync each) since Open:
	// how well concurrent writes share commits.
	Commits uint64
}

// Stats reports the number of tasks, the file size and the commits.
func (s *Store) Stats() (Stats, error) {
	st := Stats{Commits: s.gc.commits.Load()}
	err := s.db.View(func(tx *bbolt.Tx) error {
		st.Tasks = tx.Bucket(bucketTasks).Stats().KeyN
		st.FileSize = tx.Size()
		return nil
	})
	return st, err
}

// CountByPhase reads the phase index's counters, so metrics cost no scan.
func (s *Store) CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[orchestration.Phase]int, len(orchestration.Phases))
	err := s.db.View(func(tx *bbolt.Tx) error {
		counts := tx.Bucket(bucketIdxCount)
		for _, p := range orchestration.Phases {
			out[p] = int(count(counts, phasePrefix(p)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: count tasks: %w", err)
	}
	return out, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.db.Path() }
