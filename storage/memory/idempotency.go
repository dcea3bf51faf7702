package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/internal/query"
)

var (
	_ orchestration.BatchCreator     = (*Store)(nil)
	_ orchestration.IdempotencyStore = (*Store)(nil)
)

// CreateTasks implements orchestration.BatchCreator under the one store
// lock, so the batch and rec appear together or not at all.
func (s *Store) CreateTasks(ctx context.Context, tasks []orchestration.Task, rec *orchestration.IdempotencyRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	clones := make([]orchestration.Task, len(tasks))
	seen := make(map[string]struct{}, len(tasks))
	for i := range tasks {
		id := tasks[i].ID
		if id == "" {
			return fmt.Errorf("memory: create tasks: tasks[%d] has an empty id: %w", i, orchestration.ErrInvalid)
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("memory: create tasks: id %q appears twice: %w", id, orchestration.ErrInvalid)
		}
		seen[id] = struct{}{}
		clones[i] = query.CloneTask(tasks[i])
	}
	if rec != nil && rec.Key == "" {
		return fmt.Errorf("memory: create tasks: empty idempotency key: %w", orchestration.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range clones {
		if _, ok := s.tasks[clones[i].ID]; ok {
			return fmt.Errorf("memory: create tasks: task %q: %w", clones[i].ID, orchestration.ErrExists)
		}
	}
	if rec != nil {
		if _, ok := s.idem[rec.Key]; ok {
			return fmt.Errorf("memory: create tasks: idempotency key %q: %w", rec.Key, orchestration.ErrExists)
		}
		s.idem[rec.Key] = cloneRecord(*rec)
	}
	for i := range clones {
		t := &clones[i]
		s.tasks[t.ID] = t
		j, _ := slices.BinarySearch(s.ids, t.ID)
		s.ids = slices.Insert(s.ids, j, t.ID)
	}
	return nil
}

// GetIdempotency implements orchestration.IdempotencyStore.
func (s *Store) GetIdempotency(ctx context.Context, key string) (orchestration.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.IdempotencyRecord{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.idem[key]
	if !ok {
		return orchestration.IdempotencyRecord{}, fmt.Errorf("memory: get idempotency key %q: %w", key, orchestration.ErrNotFound)
	}
	return cloneRecord(rec), nil
}

// PruneIdempotency implements orchestration.IdempotencyStore; it scans
// every record, which is fine at test sizes.
func (s *Store) PruneIdempotency(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, rec := range s.idem {
		if rec.CreatedAt.Before(before) {
			delete(s.idem, k)
			n++
		}
	}
	return n, nil
}

func cloneRecord(r orchestration.IdempotencyRecord) orchestration.IdempotencyRecord {
	r.TaskIDs = slices.Clone(r.TaskIDs)
	return r
}
