package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/orchestration"
)

// Idempotency records live in two buckets written together:
//
//	idem      key                -> record (format byte + JSON)
//	idemtime  created(8, BE ns)|key -> empty
//
// idemtime sorts by creation, so pruning walks only the expired head.
var (
	bucketIdem     = []byte("idem")
	bucketIdemTime = []byte("idemtime")
)

var (
	_ orchestration.BatchCreator     = (*Store)(nil)
	_ orchestration.IdempotencyStore = (*Store)(nil)
)

// CreateTasks implements orchestration.BatchCreator: every task, its
// index entries and rec go into one transaction, so one fsync, and the
// group committer takes the batch as a single write.
func (s *Store) CreateTasks(ctx context.Context, tasks []orchestration.Task, rec *orchestration.IdempotencyRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	recs := make([][]byte, len(tasks))
	seen := make(map[string]struct{}, len(tasks))
	for i := range tasks {
		id := tasks[i].ID
		if id == "" {
			return fmt.Errorf("bolt: create tasks: tasks[%d] has an empty id: %w", i, orchestration.ErrInvalid)
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("bolt: create tasks: id %q appears twice: %w", id, orchestration.ErrInvalid)
		}
		seen[id] = struct{}{}
		var err error
		if recs[i], err = encodeTask(&tasks[i]); err != nil {
			return fmt.Errorf("bolt: create task %q: %w", id, err)
		}
	}
	var idemRec, idemKey []byte
	if rec != nil {
		if rec.Key == "" {
			return fmt.Errorf("bolt: create tasks: empty idempotency key: %w", orchestration.ErrInvalid)
		}
		var err error
		if idemRec, err = encodeIdempotency(rec); err != nil {
			return fmt.Errorf("bolt: create tasks: %w", err)
		}
		idemKey = []byte(rec.Key)
	}
	var taken string
	err := s.write(func(tx *bbolt.Tx) error {
		// As in CreateTask, a rejection is reported through taken: an
		// error would roll back and re-run every write sharing the tx.
		taken = ""
		b := tx.Bucket(bucketTasks)
		for i := range tasks {
			if b.Get([]byte(tasks[i].ID)) != nil {
				taken = fmt.Sprintf("task %q", tasks[i].ID)
				return nil
			}
		}
		if rec != nil && tx.Bucket(bucketIdem).Get(idemKey) != nil {
			taken = fmt.Sprintf("idempotency key %q", rec.Key)
			return nil
		}
		for i := range tasks {
			t := &tasks[i]
			if err := b.Put([]byte(t.ID), recs[i]); err != nil {
				return err
			}
			if err := applyIndex(tx, t.ID, nil, indexPrefixes(t)); err != nil {
				return err
			}
		}
		if rec == nil {
			return nil
		}
		if err := tx.Bucket(bucketIdem).Put(idemKey, idemRec); err != nil {
			return err
		}
		return tx.Bucket(bucketIdemTime).Put(idemTimeKey(rec.CreatedAt, rec.Key), nil)
	})
	if err != nil {
		return fmt.Errorf("bolt: create tasks: %w", err)
	}
	if taken != "" {
		return fmt.Errorf("bolt: create tasks: %s: %w", taken, orchestration.ErrExists)
	}
	return nil
}

// GetIdempotency implements orchestration.IdempotencyStore.
func (s *Store) GetIdempotency(ctx context.Context, key string) (orchestration.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.IdempotencyRecord{}, err
	}
	var rec orchestration.IdempotencyRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get([]byte(key))
		if v == nil {
			return orchestration.ErrNotFound
		}
		return decodeIdempotency(v, &rec)
	})
	if err != nil {
		return orchestration.IdempotencyRecord{}, fmt.Errorf("bolt: get idempotency key %q: %w", key, err)
	}
	return rec, nil
}

// PruneIdempotency implements orchestration.IdempotencyStore. It finds
// the expired records in a read transaction, so a prune with nothing to
// do costs no commit.
func (s *Store) PruneIdempotency(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	limit := idemTimeKey(before, "")
	var old [][]byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketIdemTime).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(old) == 0 {
		return 0, wrapPrune(err)
	}
	var n int
	err = s.write(func(tx *bbolt.Tx) error {
		n = 0
		times, recs := tx.Bucket(bucketIdemTime), tx.Bucket(bucketIdem)
		for _, k := range old {
			// Gone meanwhile (another prune); a key recorded again has a
			// new time entry, and its record is left alone.
			if times.Get(k) == nil {
				continue
			}
			if err := times.Delete(k); err != nil {
				return err
			}
			key := k[8:]
			if v := recs.Get(key); v != nil && bytes.Equal(idemTimeKeyOf(v, key), k) {
				if err := recs.Delete(key); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, wrapPrune(err)
	}
	return n, nil
}

func wrapPrune(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("bolt: prune idempotency keys: %w", err)
}

// idemTimeKey orders records by creation; times before 1970 sort first.
func idemTimeKey(t time.Time, key string) []byte {
	ns := max(t.UnixNano(), 0)
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(ns)), key...)
}

// idemTimeKeyOf is the idemtime key of a stored record, or nil if it does
// not decode.
func idemTimeKeyOf(v, key []byte) []byte {
	var rec orchestration.IdempotencyRecord
	if decodeIdempotency(v, &rec) != nil {
		return nil
	}
	return idemTimeKey(rec.CreatedAt, string(key))
}

func encodeIdempotency(rec *orchestration.IdempotencyRecord) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode idempotency record: %w: %w", orchestration.ErrInvalid, err)
	}
	return append([]byte{recordJSON}, b...), nil
}

func decodeIdempotency(v []byte, rec *orchestration.IdempotencyRecord) error {
	if len(v) == 0 || v[0] != recordJSON {
		return errors.New("unknown idempotency record format")
	}
	if err := json.Unmarshal(v[1:], rec); err != nil {
		return fmt.Errorf("decode idempotency record: %w", err)
	}
	return nil
}

// checkIdempotency reports records and time entries that do not match
// one to one (Check).
func checkIdempotency(tx *bbolt.Tx) []error {
	var errs []error
	want := map[string]struct{}{}
	_ = tx.Bucket(bucketIdem).ForEach(func(k, v []byte) error {
		tk := idemTimeKeyOf(v, k)
		if tk == nil {
			errs = append(errs, fmt.Errorf("idempotency record %q does not decode", k))
			return nil
		}
		want[string(tk)] = struct{}{}
		return nil
	})
	_ = tx.Bucket(bucketIdemTime).ForEach(func(k, _ []byte) error {
		if _, ok := want[string(k)]; !ok {
			errs = append(errs, fmt.Errorf("stray idempotency time entry %x", k))
		}
		delete(want, string(k))
		return nil
	})
	for k := range want {
		errs = append(errs, fmt.Errorf("missing idempotency time entry %x", k))
	}
	return errs
}
