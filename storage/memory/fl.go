package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// FLStore is an in-memory fl.Store. Jobs are kept JSON-encoded, which is
// both the deep copy and a check that everything the coordinator stores
// survives the encoding the persistent stores use.
type FLStore struct {
	mu   sync.Mutex
	jobs map[string][]byte
	ids  []string
}

var _ fl.Store = (*FLStore)(nil)

// NewFLStore returns an empty store.
func NewFLStore() *FLStore { return &FLStore{jobs: make(map[string][]byte)} }

func decodeJob(b []byte) (fl.Job, error) {
	var j fl.Job
	err := json.Unmarshal(b, &j)
	return j, err
}

// CreateJob implements fl.Store.
func (s *FLStore) CreateJob(ctx context.Context, j fl.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if j.ID == "" {
		return fmt.Errorf("memory: create job: empty id: %w", orchestration.ErrInvalid)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("memory: create job: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[j.ID]; ok {
		return fmt.Errorf("memory: create job %q: %w", j.ID, orchestration.ErrExists)
	}
	s.jobs[j.ID] = b
	i, _ := slices.BinarySearch(s.ids, j.ID)
	s.ids = slices.Insert(s.ids, i, j.ID)
	return nil
}

// GetJob implements fl.Store.
func (s *FLStore) GetJob(ctx context.Context, id string) (fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return fl.Job{}, err
	}
	s.mu.Lock()
	b, ok := s.jobs[id]
	s.mu.Unlock()
	if !ok {
		return fl.Job{}, fmt.Errorf("memory: get job %q: %w", id, orchestration.ErrNotFound)
	}
	return decodeJob(b)
}

// UpdateJob implements fl.Store; fn runs under the store lock.
func (s *FLStore) UpdateJob(ctx context.Context, id string, fn func(*fl.Job) error) (fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return fl.Job{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.jobs[id]
	if !ok {
		return fl.Job{}, fmt.Errorf("memory: update job %q: %w", id, orchestration.ErrNotFound)
	}
	j, err := decodeJob(b)
	if err != nil {
		return fl.Job{}, err
	}
	if err := fn(&j); err != nil {
		if errors.Is(err, orchestration.ErrNoChange) {
			return decodeJob(b)
		}
		return j, err
	}
	if j.ID != id {
		return fl.Job{}, fmt.Errorf("memory: update job %q: id changed: %w", id, orchestration.ErrInvalid)
	}
	nb, err := json.Marshal(j)
	if err != nil {
		return fl.Job{}, fmt.Errorf("memory: update job: %w", err)
	}
	s.jobs[id] = nb
	// j is this call's own decoded copy: handing it out aliases nothing.
	return j, nil
}

// ListJobs implements fl.Store.
func (s *FLStore) ListJobs(ctx context.Context) ([]fl.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fl.Job, 0, len(s.ids))
	for _, id := range s.ids {
		j, err := decodeJob(s.jobs[id])
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}
