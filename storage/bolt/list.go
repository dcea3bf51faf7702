package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/internal/query"
)

// ListTasks implements orchestration.TaskStore.
//
// It walks one source in id order: the index with the fewest entries among
// the indexed filters given (phases, proplet, labels; phases count as the
// union of their entries), or the task bucket itself when there is none
// (a name filter is not indexed); an id prefix bounds
// either walk, since both are keyed by id. Every candidate is decoded
// and checked against the whole filter, so the other filters cost one
// record read per candidate rather than a second index walk. One match past
// the page is read to tell whether a continue token is needed.
func (s *Store) ListTasks(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.TaskPage{}, err
	}
	limit, err := f.PageLimit()
	if err != nil {
		return orchestration.TaskPage{}, fmt.Errorf("bolt: list tasks: %w", err)
	}
	after, err := query.DecodeContinue(f.Continue)
	if err != nil {
		return orchestration.TaskPage{}, fmt.Errorf("bolt: list tasks: %w", err)
	}
	var page orchestration.TaskPage
	err = s.db.View(func(tx *bbolt.Tx) error {
		tasks := tx.Bucket(bucketTasks)
		it := plan(tx, f, []byte(after))
		for {
			id, v := it.next()
			if id == nil {
				return nil
			}
			if v == nil {
				if v = tasks.Get(id); v == nil {
					return fmt.Errorf("index entry for missing task %q", id)
				}
			}
			var t orchestration.Task
			if err := decodeTask(v, &t); err != nil {
				return fmt.Errorf("task %q: %w", id, err)
			}
			if !f.Match(&t) {
				continue
			}
			if len(page.Tasks) == limit {
				page.Continue = query.EncodeContinue(page.Tasks[limit-1].ID)
				return nil
			}
			page.Tasks = append(page.Tasks, t)
		}
	})
	if err != nil {
		return orchestration.TaskPage{}, fmt.Errorf("bolt: list tasks: %w", err)
	}
	return page, nil
}

// plan picks the cheapest source for f, positioned after the given id.
func plan(tx *bbolt.Tx, f orchestration.TaskFilter, after []byte) *merged {
	counts := tx.Bucket(bucketIdxCount)
	var best [][]byte
	bestCost := uint64(math.MaxUint64)
	consider := func(prefixes [][]byte) {
		var cost uint64
		for _, p := range prefixes {
			cost += count(counts, p)
		}
		if cost < bestCost {
			best, bestCost = prefixes, cost
		}
	}
	if len(f.Phases) > 0 {
		phases := slices.Clone(f.Phases)
		slices.Sort(phases)
		phases = slices.Compact(phases)
		prefixes := make([][]byte, 0, len(phases))
		for _, p := range phases {
			prefixes = append(prefixes, phasePrefix(p))
		}
		consider(prefixes)
	}
	if f.PropletID != "" {
		consider([][]byte{propletPrefix(f.PropletID)})
	}
	for k, v := range f.Labels {
		consider([][]byte{labelPrefix(k, v)})
	}
	// Every source is keyed by id under its prefix, so an id prefix
	// bounds each walk.
	idPrefix := []byte(f.IDPrefix)
	m := &merged{}
	switch {
	case best == nil:
		m.srcs = []*source{newSource(tx.Bucket(bucketTasks), nil, idPrefix, after, true)}
	case bestCost == 0:
		// Nothing carries the rarest filter value: empty result.
	default:
		idx := tx.Bucket(bucketIdx)
		for _, p := range best {
			m.srcs = append(m.srcs, newSource(idx, p, idPrefix, after, false))
		}
	}
	return m
}

// source walks, in id order, the keys under one prefix whose ids start
// with idPrefix; the id is the rest of the key (for the task bucket, whose
// prefix is empty, the whole key). Slices point into the read
// transaction's mmap, valid until it ends.
type source struct {
	c          *bbolt.Cursor
	prefix     []byte
	idPrefix   []byte
	withValues bool
	key, val   []byte
}

// newSource starts s after the id after, or at the first id with idPrefix
// if that comes later.
func newSource(b *bbolt.Bucket, prefix, idPrefix, after []byte, withValues bool) *source {
	s := &source{c: b.Cursor(), prefix: prefix, idPrefix: idPrefix, withValues: withValues}
	from, skip := idPrefix, false
	if bytes.Compare(after, idPrefix) > 0 {
		from, skip = after, true
	}
	seek := append(slices.Clip(prefix), from...)
	k, v := s.c.Seek(seek)
	if skip && bytes.Equal(k, seek) {
		k, v = s.c.Next()
	}
	s.set(k, v)
	return s
}

func (s *source) set(k, v []byte) {
	if k == nil || !bytes.HasPrefix(k, s.prefix) || !bytes.HasPrefix(k[len(s.prefix):], s.idPrefix) {
		s.key, s.val = nil, nil
		return
	}
	s.key, s.val = k, nil
	if s.withValues {
		s.val = v
	}
}

func (s *source) id() []byte { return s.key[len(s.prefix):] }

func (s *source) advance() { s.set(s.c.Next()) }

// merged yields the union of its sources in id order. A task sits under
// one phase only, but equal ids are folded anyway so a union can never
// repeat a task.
type merged struct {
	srcs []*source
}

func (m *merged) next() (id, val []byte) {
	var min *source
	for _, s := range m.srcs {
		if s.key != nil && (min == nil || bytes.Compare(s.id(), min.id()) < 0) {
			min = s
		}
	}
	if min == nil {
		return nil, nil
	}
	id, val = min.id(), min.val
	for _, s := range m.srcs {
		if s.key != nil && bytes.Equal(s.id(), id) {
			s.advance()
		}
	}
	return id, val
}

// Check verifies the file (bbolt's page-level check) and that the indexes
// and their counts agree exactly with the task records. It reads the whole
// database: meant for tests, tools and after a crash, not the hot path.
func (s *Store) Check() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		want := map[string]struct{}{}
		wantCounts := map[string]uint64{}
		err := tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			var t orchestration.Task
			if err := decodeTask(v, &t); err != nil {
				return fmt.Errorf("task %q: %w", k, err)
			}
			if t.ID != string(k) {
				return fmt.Errorf("task under key %q has id %q", k, t.ID)
			}
			for _, p := range indexPrefixes(&t) {
				want[string(p)+t.ID] = struct{}{}
				wantCounts[string(p)]++
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
		_ = tx.Bucket(bucketIdx).ForEach(func(k, _ []byte) error {
			if _, ok := want[string(k)]; !ok {
				errs = append(errs, fmt.Errorf("stray index entry %q", k))
			}
			delete(want, string(k))
			return nil
		})
		for k := range want {
			errs = append(errs, fmt.Errorf("missing index entry %q", k))
		}
		_ = tx.Bucket(bucketIdxCount).ForEach(func(k, v []byte) error {
			if got, exp := count(tx.Bucket(bucketIdxCount), k), wantCounts[string(k)]; got != exp {
				errs = append(errs, fmt.Errorf("index count %q is %d, want %d", k, got, exp))
			}
			delete(wantCounts, string(k))
			return nil
		})
		for k, n := range wantCounts {
			errs = append(errs, fmt.Errorf("missing index count %q (want %d)", k, n))
		}
		errs = append(errs, checkIdempotency(tx)...)
		if len(errs) > 0 {
			return fmt.Errorf("bolt: check %s: %w", s.db.Path(), errors.Join(errs...))
		}
		return nil
	})
}
