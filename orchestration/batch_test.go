package orchestration_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
	"github.com/absmach/propeller/storage/memory"
)

const img = "oci://registry.local/app:v1"

func specs(names ...string) []orchestration.TaskSpec {
	out := make([]orchestration.TaskSpec, len(names))
	for i, n := range names {
		out[i] = orchestration.TaskSpec{Name: n, Image: img}
	}
	return out
}

func taskIDs(tasks []orchestration.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

func (h *harness) stored() []string {
	h.t.Helper()
	page, err := h.store.ListTasks(h.ctx, orchestration.TaskFilter{Limit: 1000})
	require.NoError(h.t, err)
	return taskIDs(page.Tasks)
}

func (h *harness) batch(sp []orchestration.TaskSpec, idem orchestration.Idempotency) ([]orchestration.Task, bool) {
	h.t.Helper()
	tasks, replayed, err := h.eng.SubmitBatch(h.ctx, sp, idem)
	require.NoError(h.t, err)
	require.Len(h.t, tasks, len(sp))
	return tasks, replayed
}

func TestSubmitBatchPlacesInOrder(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 2, nil)
	sp := specs("a", "b", "c", "d")
	sp[1].Suspend = true
	tasks, replayed := h.batch(sp, orchestration.Idempotency{})
	require.False(t, replayed)
	for i, want := range []orchestration.Phase{orchestration.PhaseScheduled, orchestration.PhasePending, orchestration.PhaseScheduled, orchestration.PhasePending} {
		require.Equal(t, want, tasks[i].Status.Phase, "tasks[%d]", i)
		require.Equal(t, sp[i].Name, tasks[i].Spec.Name)
		require.Equal(t, tasks[i], h.get(tasks[i].ID), "answered as stored")
	}
	require.Equal(t, orchestration.ReasonSuspended, tasks[1].Status.Reason)
	require.Equal(t, []string{tasks[0].ID, tasks[1].ID, tasks[2].ID, tasks[3].ID}, h.stored(), "ids in request order")
	require.Equal(t, []command{{proplet: "p1", task: tasks[0].ID, attempt: 1}, {proplet: "p1", task: tasks[2].ID, attempt: 1}}, h.disp.starts())

	// d waited for a slot, b for its start.
	require.True(t, h.event(tasks[0].ID, 1, orchestration.EventSucceeded))
	require.Equal(t, orchestration.PhaseScheduled, h.get(tasks[3].ID).Status.Phase)
	require.Equal(t, orchestration.PhasePending, h.get(tasks[1].ID).Status.Phase)
}

func TestSubmitBatchQueuesBehindWaitingTasks(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	first := h.submit(orchestration.TaskSpec{Name: "busy"})
	waiting := h.submit(orchestration.TaskSpec{Name: "waiting"})
	require.Equal(t, orchestration.PhasePending, waiting.Status.Phase)
	tasks, _ := h.batch(specs("x", "y"), orchestration.Idempotency{})
	require.True(t, h.event(first.ID, 1, orchestration.EventSucceeded))
	require.Equal(t, orchestration.PhaseScheduled, h.get(waiting.ID).Status.Phase, "FIFO: the task waiting before the batch goes first")
	require.Equal(t, orchestration.PhasePending, h.get(tasks[0].ID).Status.Phase)
}

func TestSubmitBatchRefusesBadInputWhole(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 8, nil)
	bad := specs("ok", "ok too", "bad")
	bad[2].Image = "ftp://x/y.wasm"
	many := make([]orchestration.TaskSpec, orchestration.MaxBatchSize+1)
	for i := range many {
		many[i] = orchestration.TaskSpec{Image: img}
	}
	cases := []struct {
		name  string
		specs []orchestration.TaskSpec
		idem  orchestration.Idempotency
		want  string
	}{
		{"invalid member", bad, orchestration.Idempotency{}, `tasks[2]: imageUrl "ftp://x/y.wasm"`},
		{"empty", nil, orchestration.Idempotency{}, "at least one task"},
		{"too many", many, orchestration.Idempotency{}, "a batch of 1001 tasks: at most 1000"},
		{"long key", specs("a"), orchestration.Idempotency{Key: strings.Repeat("k", 256)}, "idempotency key of 256 characters: at most 255"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := h.eng.SubmitBatch(h.ctx, c.specs, c.idem)
			require.ErrorIs(t, err, orchestration.ErrInvalid)
			require.ErrorContains(t, err, c.want)
			require.Empty(t, h.stored(), "nothing written")
			require.Empty(t, h.disp.starts())
		})
	}
}

func TestSubmitBatchIdempotentReplay(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 1, nil)
	idem := orchestration.Idempotency{Key: "k-1", Fingerprint: "fp-1"}
	first, replayed := h.batch(specs("a", "b"), idem)
	require.False(t, replayed)
	require.True(t, h.event(first[0].ID, 1, orchestration.EventRunning))

	again, replayed := h.batch(specs("a", "b"), idem)
	require.True(t, replayed)
	require.Equal(t, taskIDs(first), taskIDs(again), "the first call's tasks")
	require.Equal(t, orchestration.PhaseRunning, again[0].Status.Phase, "as they stand now")
	require.Equal(t, taskIDs(first), h.stored(), "nothing new created")
	require.Len(t, h.disp.starts(), 1, "nothing new started")

	_, _, err := h.eng.SubmitBatch(h.ctx, specs("a", "b"), orchestration.Idempotency{Key: "k-1", Fingerprint: "fp-other"})
	require.ErrorIs(t, err, orchestration.ErrIdempotencyMismatch)
	require.ErrorContains(t, err, `idempotency key "k-1" was used at 2026-01-01T00:00:00Z for a different request`)
	require.Equal(t, taskIDs(first), h.stored())

	other, replayed := h.batch(specs("a", "b"), orchestration.Idempotency{Key: "k-2", Fingerprint: "fp-1"})
	require.False(t, replayed, "another key is another request")
	require.NotEqual(t, taskIDs(first), taskIDs(other))

	// A task deleted since cannot be answered with: say so.
	require.NoError(t, h.eng.Delete(h.ctx, first[1].ID))
	_, _, err = h.eng.SubmitBatch(h.ctx, specs("a", "b"), idem)
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	require.ErrorContains(t, err, fmt.Sprintf(`task %s, created under idempotency key "k-1", has since been deleted`, first[1].ID))
}

func TestSubmitBatchIdempotencyWindow(t *testing.T) {
	cfg := testCfg
	cfg.IdempotencyWindow = time.Hour
	h := newHarness(t, cfg)
	idem := orchestration.Idempotency{Key: "k", Fingerprint: "fp"}
	first, _ := h.batch(specs("a"), idem)

	h.clock.Advance(time.Hour)
	again, replayed := h.batch(specs("a"), idem)
	require.True(t, replayed, "a retry at the window's end still replays")
	require.Equal(t, first[0].ID, again[0].ID)

	h.clock.Advance(time.Nanosecond)
	later, replayed := h.batch(specs("a"), orchestration.Idempotency{Key: "k", Fingerprint: "another request"})
	require.False(t, replayed, "past the window the key starts afresh, whatever it named before")
	require.NotEqual(t, first[0].ID, later[0].ID)
	require.Len(t, h.stored(), 2)

	// Tick prunes what expired, so old keys take no space.
	is := h.store.(orchestration.IdempotencyStore)
	h.batch(specs("b"), orchestration.Idempotency{Key: "k-old"})
	h.clock.Advance(time.Hour + time.Nanosecond)
	h.eng.Tick(h.ctx)
	for _, key := range []string{"k", "k-old"} {
		_, err := is.GetIdempotency(h.ctx, key)
		require.ErrorIs(t, err, orchestration.ErrNotFound, key)
	}
	require.Len(t, h.stored(), 3, "pruning forgets keys, not tasks")
}

func TestSubmitBatchSameKeyConcurrently(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("p1", 4, nil)
	const n = 8
	results := make([][]string, n)
	replays := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tasks, replayed, err := h.eng.SubmitBatch(h.ctx, specs("a", "b", "c"), orchestration.Idempotency{Key: "k", Fingerprint: "fp"})
			if err == nil {
				results[i], replays[i] = taskIDs(tasks), replayed
			}
		})
	}
	wg.Wait()
	created := 0
	for i := range n {
		require.Equal(t, results[0], results[i], "every caller gets the same tasks")
		if !replays[i] {
			created++
		}
	}
	require.Equal(t, 1, created, "one call created, the others replayed")
	require.Equal(t, results[0], h.stored())
	require.Len(t, h.disp.starts(), 3, "each task started once")
}

func TestSubmitBatchReplaysAfterRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "propeller.db")
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	open := func() (*bolt.Store, *orchestration.Engine) {
		s, err := bolt.Open(path, bolt.Options{})
		require.NoError(t, err)
		eng, err := orchestration.New(testCfg, orchestration.Deps{Store: s, Dispatcher: &fakeDispatcher{}, Clock: clock, Logger: quiet})
		require.NoError(t, err)
		require.NoError(t, eng.Recover(ctx))
		return s, eng
	}
	idem := orchestration.Idempotency{Key: "k-restart", Fingerprint: "fp"}
	s, eng := open()
	first, replayed, err := eng.SubmitBatch(ctx, specs("a", "b", "c"), idem)
	require.NoError(t, err)
	require.False(t, replayed)
	require.NoError(t, s.Close())

	s, eng = open()
	defer func() { require.NoError(t, s.Close()) }()
	clock.Advance(time.Hour)
	again, replayed, err := eng.SubmitBatch(ctx, specs("a", "b", "c"), idem)
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, taskIDs(first), taskIDs(again))
	st, err := s.Stats()
	require.NoError(t, err)
	require.Equal(t, 3, st.Tasks)
	_, _, err = eng.SubmitBatch(ctx, specs("a"), orchestration.Idempotency{Key: "k-restart", Fingerprint: "other"})
	require.ErrorIs(t, err, orchestration.ErrIdempotencyMismatch)
}

// plainStore hides the optional ports, as the operator's CRD store lacks
// them; failOn makes the n-th CreateTask fail.
type plainStore struct {
	orchestration.Store
	mu      sync.Mutex
	creates int
	failOn  int
}

func (s *plainStore) CreateTask(ctx context.Context, t orchestration.Task) error {
	s.mu.Lock()
	s.creates++
	fail := s.creates == s.failOn
	s.mu.Unlock()
	if fail {
		return errors.New("apiserver unavailable")
	}
	return s.Store.CreateTask(ctx, t)
}

func TestSubmitBatchOnStoreWithoutBatches(t *testing.T) {
	h := newHarness(t, testCfg)
	ps := &plainStore{Store: h.store}
	h.store = ps
	h.restart()
	h.join("p1", 2, nil)

	_, _, err := h.eng.SubmitBatch(h.ctx, specs("a"), orchestration.Idempotency{Key: "k"})
	require.ErrorIs(t, err, errors.ErrUnsupported)
	require.ErrorContains(t, err, "idempotency keys need a store that records them")
	require.Empty(t, h.stored())

	tasks, replayed := h.batch(specs("a", "b", "c"), orchestration.Idempotency{})
	require.False(t, replayed)
	require.Equal(t, taskIDs(tasks), h.stored())
	require.Equal(t, orchestration.PhaseScheduled, tasks[0].Status.Phase, "answered after scheduling")
	require.Equal(t, orchestration.PhasePending, tasks[2].Status.Phase)
	require.Len(t, h.disp.starts(), 2)

	// One create failing undoes the ones before it; nothing is started.
	ps.failOn = ps.creates + 3
	_, _, err = h.eng.SubmitBatch(h.ctx, specs("x", "y", "z", "w"), orchestration.Idempotency{})
	require.ErrorContains(t, err, "create tasks[2]: apiserver unavailable")
	require.Equal(t, taskIDs(tasks), h.stored())
	require.Len(t, h.disp.starts(), 2)
}

// staleStore answers the first GetIdempotency with not-found, as a read
// racing another writer that records the key just after it would.
type staleStore struct {
	*memory.Store
	once sync.Once
}

func (s *staleStore) GetIdempotency(ctx context.Context, key string) (orchestration.IdempotencyRecord, error) {
	stale := false
	s.once.Do(func() { stale = true })
	if stale {
		return orchestration.IdempotencyRecord{}, fmt.Errorf("stale read of %q: %w", key, orchestration.ErrNotFound)
	}
	return s.Store.GetIdempotency(ctx, key)
}

// TestSubmitBatchLosesKeyRaceToAnotherWriter: when the store refuses the
// write because the key was recorded meanwhile, the engine answers with
// the recorded tasks and frees the slots it had reserved.
func TestSubmitBatchLosesKeyRaceToAnotherWriter(t *testing.T) {
	h := newHarness(t, testCfg)
	m := memory.New()
	other := orchestration.Task{ID: "t-other", Spec: orchestration.TaskSpec{Image: img}, Status: orchestration.TaskStatus{Phase: orchestration.PhasePending}}
	require.NoError(t, m.CreateTasks(h.ctx, []orchestration.Task{other}, &orchestration.IdempotencyRecord{Key: "k", Fingerprint: "fp", TaskIDs: []string{"t-other"}, CreatedAt: h.clock.Now()}))
	h.store = &staleStore{Store: m}
	h.restart()
	h.join("p1", 1, nil)
	h.eng.Tick(h.ctx) // t-other, adopted by Recover, takes the slot
	require.Len(t, h.disp.starts(), 1)
	require.True(t, h.event("t-other", 1, orchestration.EventSucceeded))

	tasks, replayed := h.batch(specs("a"), orchestration.Idempotency{Key: "k", Fingerprint: "fp"})
	require.True(t, replayed)
	require.Equal(t, []string{"t-other"}, taskIDs(tasks))
	require.Equal(t, []string{"t-other"}, h.stored())
	require.Len(t, h.disp.starts(), 1, "the refused batch started nothing")

	next := h.submit(orchestration.TaskSpec{Name: "next"})
	require.Equal(t, orchestration.PhaseScheduled, next.Status.Phase, "the slot reserved for the refused batch is free again")
}
