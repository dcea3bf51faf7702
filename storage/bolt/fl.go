package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// Federated-learning jobs live in their own bucket, created on first
// write, so databases from before FL need no migration:
//
//	fljobs  id -> record (format byte + JSON of fl.Job)
//
// A job is one record: accepting an update and counting it in its round
// is one transaction, so a crash can neither lose nor double it.
var bucketFLJobs = []byte("fljobs")

var _ fl.Store = (*Store)(nil)

func encodeJob(j *fl.Job) ([]byte, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	return append([]byte{recordJSON}, b...), nil
}

func decodeJob(rec []byte) (fl.Job, error) {
	var j fl.Job
	if len(rec) == 0 || rec[0] != recordJSON {
		return j, errors.New("unknown job record format")
	}
	err := json.Unmarshal(rec[1:], &j)
	return j, err
}

// CreateJob implements fl.Store.
func (s *Store) CreateJob(ctx context.Context, j fl.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if j.ID == "" {
		return fmt.Errorf("bolt: create job: empty id: %w", orchestration.ErrInvalid)
	}
	rec, err := encodeJob(&j)
	if err != nil {
		return fmt.Errorf("bolt: create job %q: %w", j.ID, err)
	}
	var exists bool
	err = s.write(func(tx *bbolt.Tx) error {
		exists = false
		b, err := tx.CreateBucketIfNotExists(bucketFLJobs)
		if err != nil {
			return err
		}
		if b.Get([]byte(j.ID)) != nil {
			exists = true
			return nil
		}
		return b.Put([]byte(j.ID), rec)
	})
	if err != nil {
		return fmt.Errorf("bolt: create job %q: %w", j.ID, err)
	}
	if exists {
		return fmt.Errorf("bolt: create job %q: %w", j.ID, orchestration.ErrExists)
	}
	return nil
}

// GetJob implements fl.Store.
func (s *Store) GetJob(ctx context.Context, id string) (fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return fl.Job{}, err
	}
	var j fl.Job
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketFLJobs)
		if b == nil {
			return nil
		}
		rec := b.Get([]byte(id))
		if rec == nil {
			return nil
		}
		found = true
		var err error
		j, err = decodeJob(rec)
		return err
	})
	if err != nil {
		return fl.Job{}, fmt.Errorf("bolt: get job %q: %w", id, err)
	}
	if !found {
		return fl.Job{}, fmt.Errorf("bolt: get job %q: %w", id, orchestration.ErrNotFound)
	}
	return j, nil
}

// UpdateJob implements fl.Store. fn runs inside the write transaction and
// may run more than once (batched transactions are retried).
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*fl.Job) error) (fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return fl.Job{}, err
	}
	var out fl.Job
	var fnErr error
	var found bool
	err := s.write(func(tx *bbolt.Tx) error {
		out, fnErr, found = fl.Job{}, nil, false
		b, err := tx.CreateBucketIfNotExists(bucketFLJobs)
		if err != nil {
			return err
		}
		rec := b.Get([]byte(id))
		if rec == nil {
			return nil
		}
		found = true
		j, err := decodeJob(rec)
		if err != nil {
			return err
		}
		// fn's own error is reported outside the transaction: returning
		// it would roll back and re-run every other write in the batch.
		if fnErr = fn(&j); fnErr != nil {
			out, _ = decodeJob(rec)
			if !errors.Is(fnErr, orchestration.ErrNoChange) {
				out = j
			}
			return nil
		}
		if j.ID != id {
			fnErr = fmt.Errorf("id changed: %w", orchestration.ErrInvalid)
			return nil
		}
		nrec, err := encodeJob(&j)
		if err != nil {
			return err
		}
		out = j
		return b.Put([]byte(id), nrec)
	})
	if err != nil {
		return fl.Job{}, fmt.Errorf("bolt: update job %q: %w", id, err)
	}
	if !found {
		return fl.Job{}, fmt.Errorf("bolt: update job %q: %w", id, orchestration.ErrNotFound)
	}
	if fnErr != nil && !errors.Is(fnErr, orchestration.ErrNoChange) {
		return out, fnErr
	}
	return out, nil
}

// ListJobs implements fl.Store.
func (s *Store) ListJobs(ctx context.Context) ([]fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []fl.Job
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketFLJobs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, rec []byte) error {
			j, err := decodeJob(rec)
			if err != nil {
				return err
			}
			out = append(out, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: list jobs: %w", err)
	}
	return out, nil
}
