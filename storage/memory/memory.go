// Package memory is an in-memory orchestration.Store for tests and
// throwaway runs. It keeps no data across restarts.
package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/internal/query"
)

// Store keeps deep copies of everything it is given, so a caller that keeps
// mutating a task after CreateTask cannot change what the store holds.
//
// One mutex guards everything: the store is for tests, where simplicity
// beats write concurrency, and it makes UpdateTask trivially atomic.
type Store struct {
	mu       sync.RWMutex
	tasks    map[string]*orchestration.Task
	ids      []string // sorted, so List pages by id without sorting per call
	proplets map[string]*orchestration.Proplet
	idem     map[string]orchestration.IdempotencyRecord
}

var _ orchestration.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		tasks:    make(map[string]*orchestration.Task),
		proplets: make(map[string]*orchestration.Proplet),
		idem:     make(map[string]orchestration.IdempotencyRecord),
	}
}

// CreateTask implements orchestration.TaskStore.
func (s *Store) CreateTask(ctx context.Context, t orchestration.Task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.ID == "" {
		return fmt.Errorf("memory: create task: empty id: %w", orchestration.ErrInvalid)
	}
	c := query.CloneTask(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[t.ID]; ok {
		return fmt.Errorf("memory: create task %q: %w", t.ID, orchestration.ErrExists)
	}
	s.tasks[t.ID] = &c
	// Ids are time-ordered, so this is almost always an append.
	i, _ := slices.BinarySearch(s.ids, t.ID)
	s.ids = slices.Insert(s.ids, i, t.ID)
	return nil
}

// GetTask implements orchestration.TaskStore.
func (s *Store) GetTask(ctx context.Context, id string) (orchestration.Task, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Task{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tasks[id]
	if !ok {
		return orchestration.Task{}, fmt.Errorf("memory: get task %q: %w", id, orchestration.ErrNotFound)
	}
	return query.CloneTask(*t), nil
}

// UpdateTask implements orchestration.TaskStore. fn runs under the store
// lock, so it must not call back into the store.
func (s *Store) UpdateTask(ctx context.Context, id string, fn orchestration.UpdateFunc) (orchestration.Task, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Task{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.tasks[id]
	if !ok {
		return orchestration.Task{}, fmt.Errorf("memory: update task %q: %w", id, orchestration.ErrNotFound)
	}
	next := query.CloneTask(*cur)
	if err := fn(&next); err != nil {
		if errors.Is(err, orchestration.ErrNoChange) {
			return query.CloneTask(*cur), nil
		}
		return orchestration.Task{}, err
	}
	if next.ID != id {
		return orchestration.Task{}, fmt.Errorf("memory: update task %q: id changed to %q: %w", id, next.ID, orchestration.ErrInvalid)
	}
	stored := query.CloneTask(next)
	s.tasks[id] = &stored
	return next, nil
}

// DeleteTask implements orchestration.TaskStore.
func (s *Store) DeleteTask(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[id]; !ok {
		return fmt.Errorf("memory: delete task %q: %w", id, orchestration.ErrNotFound)
	}
	delete(s.tasks, id)
	if i, ok := slices.BinarySearch(s.ids, id); ok {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	return nil
}

// ListTasks implements orchestration.TaskStore. It scans in id order;
// fine for test-sized data, which is all this store is for.
func (s *Store) ListTasks(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.TaskPage{}, err
	}
	limit, err := f.PageLimit()
	if err != nil {
		return orchestration.TaskPage{}, err
	}
	after, err := query.DecodeContinue(f.Continue)
	if err != nil {
		return orchestration.TaskPage{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	start := sort.SearchStrings(s.ids, f.IDPrefix)
	if after > f.IDPrefix {
		start = sort.SearchStrings(s.ids, after)
		if start < len(s.ids) && s.ids[start] == after {
			start++
		}
	}
	var page orchestration.TaskPage
	for _, id := range s.ids[start:] {
		if !strings.HasPrefix(id, f.IDPrefix) {
			break // ids are sorted: none further has the prefix
		}
		t := s.tasks[id]
		if !f.Match(t) {
			continue
		}
		if len(page.Tasks) == limit {
			page.Continue = query.EncodeContinue(page.Tasks[limit-1].ID)
			break
		}
		page.Tasks = append(page.Tasks, query.CloneTask(*t))
	}
	return page, nil
}

// CountByPhase counts stored tasks per phase.
func (s *Store) CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[orchestration.Phase]int, len(orchestration.Phases))
	for _, t := range s.tasks {
		out[t.Status.Phase]++
	}
	return out, nil
}

// PutProplet implements orchestration.PropletStore. It stores p as given,
// liveness fields included; the engine decides what they mean after a
// restart.
func (s *Store) PutProplet(ctx context.Context, p orchestration.Proplet) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return fmt.Errorf("memory: put proplet: empty id: %w", orchestration.ErrInvalid)
	}
	c := query.CloneProplet(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proplets[p.ID] = &c
	return nil
}

// GetProplet implements orchestration.PropletStore.
func (s *Store) GetProplet(ctx context.Context, id string) (orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Proplet{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.proplets[id]
	if !ok {
		return orchestration.Proplet{}, fmt.Errorf("memory: get proplet %q: %w", id, orchestration.ErrNotFound)
	}
	return query.CloneProplet(*p), nil
}

// ListProplets implements orchestration.PropletStore; ordered by id.
func (s *Store) ListProplets(ctx context.Context) ([]orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := slices.Sorted(maps.Keys(s.proplets))
	out := make([]orchestration.Proplet, 0, len(ids))
	for _, id := range ids {
		out = append(out, query.CloneProplet(*s.proplets[id]))
	}
	return out, nil
}

// DeleteProplet implements orchestration.PropletStore; ErrNotFound if absent.
func (s *Store) DeleteProplet(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.proplets[id]; !ok {
		return fmt.Errorf("memory: delete proplet %q: %w", id, orchestration.ErrNotFound)
	}
	delete(s.proplets, id)
	return nil
}
