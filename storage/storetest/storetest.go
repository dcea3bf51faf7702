// Package storetest is the conformance suite for orchestration.Store. Every
// implementation (memory, bolt, the operator's CRD store) runs the same
// cases, so the engine can rely on one behaviour whatever backs it. It
// depends on the interface only.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

// Run runs the whole suite: the TaskStore and PropletStore cases, then
// the cases of the optional ports the store implements (runOptional).
// newStore must return an empty store that is closed by t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) orchestration.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s orchestration.Store)
	}{
		{"CreateGet", testCreateGet},
		{"RoundTripAllFields", testRoundTrip},
		{"CreateInvalid", testCreateInvalid},
		{"CreateSameIDConcurrently", testCreateSameIDConcurrently},
		{"UpdateConcurrentCounter", testUpdateConcurrentCounter},
		{"UpdateNoChange", testUpdateNoChange},
		{"UpdateFuncError", testUpdateFuncError},
		{"UpdateMissing", testUpdateMissing},
		{"UpdateCannotChangeID", testUpdateCannotChangeID},
		{"Delete", testDelete},
		{"ListFilters", testListFilters},
		{"ListPagination", testListPagination},
		{"ListByName", testListByName},
		{"ListByIDPrefix", testListByIDPrefix},
		{"ListLimits", testListLimits},
		{"ListBadInput", testListBadInput},
		{"IndexFollowsUpdates", testIndexFollowsUpdates},
		{"CountByPhase", testCountByPhase},
		{"Proplets", testProplets},
		{"IsolationTasks", testIsolationTasks},
		{"IsolationProplets", testIsolationProplets},
		{"CanceledContext", testCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
	runOptional(t, newStore)
}

// base is a fixed, monotonic-free UTC instant so stored times compare equal
// with require.Equal after any serialisation.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// NewTask is a small valid task; benchmarks share it so all stores measure
// the same payload.
func NewTask(id string, phase orchestration.Phase) orchestration.Task {
	return orchestration.Task{
		ID: id,
		Spec: orchestration.TaskSpec{
			Name:     "task " + id,
			Image:    "oci://registry.local/wasm/add:v1",
			Function: "add",
			Inputs:   []float64{1, 2},
		},
		Status: orchestration.TaskStatus{
			Phase:     phase,
			CreatedAt: base,
			UpdatedAt: base,
		},
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func testCreateGet(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	want := NewTask("t-001", orchestration.PhasePending)
	require.NoError(t, s.CreateTask(ctx, want))

	got, err := s.GetTask(ctx, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)

	err = s.CreateTask(ctx, NewTask("t-001", orchestration.PhaseRunning))
	require.ErrorIs(t, err, orchestration.ErrExists)
	got, err = s.GetTask(ctx, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, got, "a rejected create must not overwrite")

	_, err = s.GetTask(ctx, "t-missing")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
}

func testRoundTrip(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	code := 3
	want := orchestration.Task{
		ID: "t-full",
		Spec: orchestration.TaskSpec{
			Name:        "full",
			Image:       wire.BlobScheme + "sha256:abcd",
			Digest:      "sha256:abcd",
			Function:    "main",
			Inputs:      []float64{1.5, -2, 0},
			CLIArgs:     []string{"--x", "y"},
			Env:         map[string]string{"ROUND_ID": "r1", "MODEL_URI": "m"},
			Labels:      map[string]string{"app": "fl", "tier": "edge"},
			PropletID:   "p-pinned",
			PropletIDs:  []string{"p-2", "p-1"},
			Selector:    map[string]string{"arch": "arm64"},
			Timeout:     90 * time.Second,
			MaxAttempts: 4,
			MemoryPages: 17,
			Suspend:     true,
		},
		Status: orchestration.TaskStatus{
			Phase:       orchestration.PhaseFailed,
			PropletID:   "p-1",
			Attempt:     2,
			Reason:      "Trap",
			Message:     "unreachable executed",
			Results:     []float64{42},
			Stdout:      "out\n",
			Stderr:      "err\n",
			ExitCode:    &code,
			CreatedAt:   base,
			UpdatedAt:   base.Add(5 * time.Second),
			ScheduledAt: base.Add(time.Second),
			StartedAt:   base.Add(2 * time.Second),
			FinishedAt:  base.Add(3 * time.Second),
			NotBefore:   base.Add(4 * time.Second),
			Deadline:    base.Add(time.Minute),
		},
	}
	require.NoError(t, s.CreateTask(ctx, want))
	got, err := s.GetTask(ctx, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func testCreateInvalid(t *testing.T, s orchestration.Store) {
	err := s.CreateTask(ctxT(t), NewTask("", orchestration.PhasePending))
	require.ErrorIs(t, err, orchestration.ErrInvalid)
}

func testCreateSameIDConcurrently(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tk := NewTask("t-race", orchestration.PhasePending)
			tk.Status.Attempt = i
			errs[i] = s.CreateTask(ctx, tk)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, orchestration.ErrExists)
	}
	require.Equal(t, 1, ok, "exactly one create of an id wins")
}

func testUpdateConcurrentCounter(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	require.NoError(t, s.CreateTask(ctx, NewTask("t-counter", orchestration.PhasePending)))
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.UpdateTask(ctx, "t-counter", func(tk *orchestration.Task) error {
				tk.Status.Attempt++
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := s.GetTask(ctx, "t-counter")
	require.NoError(t, err)
	require.Equal(t, n, got.Status.Attempt, "every increment must land exactly once")
}

func testUpdateNoChange(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	want := NewTask("t-nochange", orchestration.PhasePending)
	require.NoError(t, s.CreateTask(ctx, want))
	got, err := s.UpdateTask(ctx, want.ID, func(tk *orchestration.Task) error {
		tk.Status.Phase = orchestration.PhaseRunning // discarded
		return orchestration.ErrNoChange
	})
	require.NoError(t, err)
	require.Equal(t, want, got, "ErrNoChange returns the stored task")
	stored, err := s.GetTask(ctx, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, stored)

	page, err := s.ListTasks(ctx, orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhaseRunning}})
	require.NoError(t, err)
	require.Empty(t, page.Tasks)
}

func testUpdateFuncError(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	want := NewTask("t-fnerr", orchestration.PhasePending)
	require.NoError(t, s.CreateTask(ctx, want))
	boom := errors.New("boom")
	_, err := s.UpdateTask(ctx, want.ID, func(tk *orchestration.Task) error {
		tk.Status.Phase = orchestration.PhaseRunning
		return fmt.Errorf("stale event: %w", boom)
	})
	require.ErrorIs(t, err, boom)
	stored, err := s.GetTask(ctx, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, stored, "an aborted update writes nothing")
}

func testUpdateMissing(t *testing.T, s orchestration.Store) {
	called := false
	_, err := s.UpdateTask(ctxT(t), "t-nope", func(*orchestration.Task) error {
		called = true
		return nil
	})
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	require.False(t, called)
	_, err = s.GetTask(ctxT(t), "t-nope")
	require.ErrorIs(t, err, orchestration.ErrNotFound, "update must not create")
}

func testUpdateCannotChangeID(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	require.NoError(t, s.CreateTask(ctx, NewTask("t-id", orchestration.PhasePending)))
	_, err := s.UpdateTask(ctx, "t-id", func(tk *orchestration.Task) error {
		tk.ID = "t-other"
		return nil
	})
	require.ErrorIs(t, err, orchestration.ErrInvalid)
	_, err = s.GetTask(ctx, "t-other")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
}

func testDelete(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	tk := NewTask("t-del", orchestration.PhasePending)
	tk.Spec.Labels = map[string]string{"a": "1"}
	tk.Status.PropletID = "p-1"
	require.NoError(t, s.CreateTask(ctx, tk))
	require.NoError(t, s.DeleteTask(ctx, tk.ID))
	_, err := s.GetTask(ctx, tk.ID)
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	require.ErrorIs(t, s.DeleteTask(ctx, tk.ID), orchestration.ErrNotFound)

	for _, f := range []orchestration.TaskFilter{
		{},
		{Phases: []orchestration.Phase{orchestration.PhasePending}},
		{PropletID: "p-1"},
		{Labels: map[string]string{"a": "1"}},
	} {
		page, err := s.ListTasks(ctx, f)
		require.NoError(t, err)
		require.Empty(t, page.Tasks, "filter %+v", f)
	}
	// The id is free again.
	require.NoError(t, s.CreateTask(ctx, tk))
}

// seed creates tasks concurrently: persistent stores batch concurrent
// writes, so this keeps the suite fast without a store-specific bulk path.
func seed(t *testing.T, s orchestration.Store, tasks []orchestration.Task) {
	t.Helper()
	ctx := ctxT(t)
	const workers = 16
	ch := make(chan orchestration.Task)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for tk := range ch {
				if err := s.CreateTask(ctx, tk); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, tk := range tasks {
		select {
		case ch <- tk:
		case err := <-errs:
			close(ch)
			wg.Wait()
			require.NoError(t, err)
		}
	}
	close(ch)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func ids(tasks []orchestration.Task) []string {
	out := make([]string, 0, len(tasks))
	for _, tk := range tasks {
		out = append(out, tk.ID)
	}
	return out
}

// listAll walks every page of f, failing on duplicates or disorder.
func listAll(t *testing.T, s orchestration.Store, f orchestration.TaskFilter) []string {
	t.Helper()
	var out []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000, "pagination does not terminate")
		page, err := s.ListTasks(ctxT(t), f)
		require.NoError(t, err)
		if page.Continue != "" {
			require.NotEmpty(t, page.Tasks, "a page with a continue token has tasks")
		}
		if f.Limit > 0 {
			require.LessOrEqual(t, len(page.Tasks), f.Limit)
		}
		for _, tk := range page.Tasks {
			if len(out) > 0 {
				require.Less(t, out[len(out)-1], tk.ID, "ids must strictly increase across pages")
			}
			out = append(out, tk.ID)
		}
		if page.Continue == "" {
			return out
		}
		f.Continue = page.Continue
	}
}

func testListFilters(t *testing.T, s orchestration.Store) {
	P := orchestration.PhasePending
	R := orchestration.PhaseRunning
	D := orchestration.PhaseSucceeded
	mk := func(id string, ph orchestration.Phase, proplet string, labels map[string]string) orchestration.Task {
		tk := NewTask(id, ph)
		tk.Status.PropletID = proplet
		tk.Spec.Labels = labels
		return tk
	}
	seed(t, s, []orchestration.Task{
		mk("t-01", P, "", map[string]string{"app": "a"}),
		mk("t-02", R, "p-1", map[string]string{"app": "a", "tier": "edge"}),
		mk("t-03", R, "p-2", map[string]string{"app": "b", "tier": "edge"}),
		mk("t-04", D, "p-1", map[string]string{"app": "a"}),
		mk("t-05", P, "", nil),
		mk("t-06", R, "p-1", map[string]string{"app": "b"}),
		// Label values containing the separators an index might use.
		mk("t-07", D, "p-2", map[string]string{"k=x": "y", "k": "x=y"}),
		mk("t-08", D, "p-1\x00x", map[string]string{"app": "a\x00tier"}),
	})
	cases := []struct {
		name string
		f    orchestration.TaskFilter
		want []string
	}{
		{"all", orchestration.TaskFilter{}, []string{"t-01", "t-02", "t-03", "t-04", "t-05", "t-06", "t-07", "t-08"}},
		{"phase", orchestration.TaskFilter{Phases: []orchestration.Phase{R}}, []string{"t-02", "t-03", "t-06"}},
		{"phases union", orchestration.TaskFilter{Phases: []orchestration.Phase{P, D}}, []string{"t-01", "t-04", "t-05", "t-07", "t-08"}},
		{"phases repeated", orchestration.TaskFilter{Phases: []orchestration.Phase{R, R}}, []string{"t-02", "t-03", "t-06"}},
		{"phase none", orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhaseCancelled}}, nil},
		{"proplet", orchestration.TaskFilter{PropletID: "p-1"}, []string{"t-02", "t-04", "t-06"}},
		{"proplet unknown", orchestration.TaskFilter{PropletID: "p-9"}, nil},
		{"label", orchestration.TaskFilter{Labels: map[string]string{"app": "a"}}, []string{"t-01", "t-02", "t-04"}},
		{"labels all", orchestration.TaskFilter{Labels: map[string]string{"app": "b", "tier": "edge"}}, []string{"t-03"}},
		{"label separator key", orchestration.TaskFilter{Labels: map[string]string{"k": "x=y"}}, []string{"t-07"}},
		{"label separator key2", orchestration.TaskFilter{Labels: map[string]string{"k=x": "y"}}, []string{"t-07"}},
		{"label empty value absent", orchestration.TaskFilter{Labels: map[string]string{"tier": ""}}, nil},
		{"phase+proplet", orchestration.TaskFilter{Phases: []orchestration.Phase{R}, PropletID: "p-1"}, []string{"t-02", "t-06"}},
		{"phase+label", orchestration.TaskFilter{Phases: []orchestration.Phase{R}, Labels: map[string]string{"tier": "edge"}}, []string{"t-02", "t-03"}},
		{"proplet+label", orchestration.TaskFilter{PropletID: "p-1", Labels: map[string]string{"app": "a"}}, []string{"t-02", "t-04"}},
		{"all three", orchestration.TaskFilter{Phases: []orchestration.Phase{R, D}, PropletID: "p-1", Labels: map[string]string{"app": "a"}}, []string{"t-02", "t-04"}},
		{"all three none", orchestration.TaskFilter{Phases: []orchestration.Phase{P}, PropletID: "p-1", Labels: map[string]string{"app": "a"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page, err := s.ListTasks(ctxT(t), c.f)
			require.NoError(t, err)
			require.Equal(t, c.want, nilIfEmpty(ids(page.Tasks)))
			require.Empty(t, page.Continue)
			// Page size 1 must walk the same result.
			f := c.f
			f.Limit = 1
			require.Equal(t, c.want, nilIfEmpty(listAll(t, s, f)))
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func testListPagination(t *testing.T, s orchestration.Store) {
	phases := []orchestration.Phase{orchestration.PhasePending, orchestration.PhaseRunning, orchestration.PhaseSucceeded}
	var tasks []orchestration.Task
	want := map[orchestration.Phase][]string{}
	var all []string
	for i := range 250 {
		ph := phases[i%len(phases)]
		tk := NewTask(fmt.Sprintf("t-%05d", i), ph)
		tk.Spec.Labels = map[string]string{"mod": fmt.Sprint(i % 2)}
		tasks = append(tasks, tk)
		want[ph] = append(want[ph], tk.ID)
		all = append(all, tk.ID)
	}
	seed(t, s, tasks)
	cases := []struct {
		name string
		f    orchestration.TaskFilter
		want []string
	}{
		{"all by 7", orchestration.TaskFilter{Limit: 7}, all},
		{"all by 1", orchestration.TaskFilter{Limit: 1}, all},
		{"all by 250", orchestration.TaskFilter{Limit: 250}, all},
		{"all by 125 exact", orchestration.TaskFilter{Limit: 125}, all},
		{"running by 10", orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhaseRunning}, Limit: 10}, want[orchestration.PhaseRunning]},
		{"two phases by 9", orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhaseSucceeded, orchestration.PhasePending}, Limit: 9}, merge(want[orchestration.PhasePending], want[orchestration.PhaseSucceeded])},
		{"label+phase by 4", orchestration.TaskFilter{Phases: []orchestration.Phase{orchestration.PhasePending}, Labels: map[string]string{"mod": "0"}, Limit: 4}, everyOther(want[orchestration.PhasePending])},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, listAll(t, s, c.f))
		})
	}

	t.Run("writes between pages", func(t *testing.T) {
		ctx := ctxT(t)
		page, err := s.ListTasks(ctx, orchestration.TaskFilter{Limit: 100})
		require.NoError(t, err)
		// Delete the task the token points at: the next page still starts
		// right after it.
		last := page.Tasks[len(page.Tasks)-1].ID
		require.NoError(t, s.DeleteTask(ctx, last))
		next, err := s.ListTasks(ctx, orchestration.TaskFilter{Limit: 100, Continue: page.Continue})
		require.NoError(t, err)
		require.Equal(t, all[100:200], ids(next.Tasks))
	})
}

// merge returns the sorted union of two sorted id lists.
func merge(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return out
}

// everyOther keeps the ids whose numeric suffix is even (label mod=0).
func everyOther(in []string) []string {
	var out []string
	for _, id := range in {
		var n int
		_, _ = fmt.Sscanf(id, "t-%05d", &n)
		if n%2 == 0 {
			out = append(out, id)
		}
	}
	return out
}

func testListLimits(t *testing.T, s orchestration.Store) {
	var tasks []orchestration.Task
	for i := range orchestration.MaxPageLimit + 5 {
		tasks = append(tasks, NewTask(fmt.Sprintf("t-%05d", i), orchestration.PhasePending))
	}
	seed(t, s, tasks)
	cases := []struct {
		name  string
		limit int
		want  int
	}{
		{"default", 0, orchestration.DefaultPageLimit},
		{"explicit", 3, 3},
		{"max", orchestration.MaxPageLimit, orchestration.MaxPageLimit},
		{"capped", 5 * orchestration.MaxPageLimit, orchestration.MaxPageLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page, err := s.ListTasks(ctxT(t), orchestration.TaskFilter{Limit: c.limit})
			require.NoError(t, err)
			require.Len(t, page.Tasks, c.want)
			require.NotEmpty(t, page.Continue)
		})
	}
}

func testListBadInput(t *testing.T, s orchestration.Store) {
	require.NoError(t, s.CreateTask(ctxT(t), NewTask("t-1", orchestration.PhasePending)))
	cases := []struct {
		name string
		f    orchestration.TaskFilter
	}{
		{"negative limit", orchestration.TaskFilter{Limit: -1}},
		{"garbage token", orchestration.TaskFilter{Continue: "%%% not a token"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.ListTasks(ctxT(t), c.f)
			require.ErrorIs(t, err, orchestration.ErrInvalid)
		})
	}
}

func testIndexFollowsUpdates(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	tk := NewTask("t-move", orchestration.PhasePending)
	tk.Spec.Labels = map[string]string{"app": "a"}
	require.NoError(t, s.CreateTask(ctx, tk))
	require.NoError(t, s.CreateTask(ctx, NewTask("t-stay", orchestration.PhasePending)))

	list := func(f orchestration.TaskFilter) []string {
		page, err := s.ListTasks(ctx, f)
		require.NoError(t, err)
		return nilIfEmpty(ids(page.Tasks))
	}
	phase := func(p orchestration.Phase) orchestration.TaskFilter {
		return orchestration.TaskFilter{Phases: []orchestration.Phase{p}}
	}
	steps := []struct {
		name   string
		mutate func(*orchestration.Task)
		checks map[string]struct {
			f    orchestration.TaskFilter
			want []string
		}
	}{
		{
			name: "schedule on p-1",
			mutate: func(t *orchestration.Task) {
				t.Status.Phase = orchestration.PhaseScheduled
				t.Status.PropletID = "p-1"
			},
		},
		{
			name: "run",
			mutate: func(t *orchestration.Task) {
				t.Status.Phase = orchestration.PhaseRunning
			},
		},
		{
			name: "lost, retried on p-2 with new label",
			mutate: func(t *orchestration.Task) {
				t.Status.Phase = orchestration.PhaseRunning
				t.Status.PropletID = "p-2"
				t.Spec.Labels = map[string]string{"app": "b"}
			},
		},
		{
			name: "back to pending, unplaced, unlabelled",
			mutate: func(t *orchestration.Task) {
				t.Status.Phase = orchestration.PhasePending
				t.Status.PropletID = ""
				t.Spec.Labels = nil
			},
		},
	}
	for _, st := range steps {
		got, err := s.UpdateTask(ctx, "t-move", func(t *orchestration.Task) error {
			st.mutate(t)
			return nil
		})
		require.NoError(t, err, st.name)
		// Every filter must agree with the task's current state.
		for _, p := range []orchestration.Phase{orchestration.PhasePending, orchestration.PhaseScheduled, orchestration.PhaseRunning} {
			want := []string(nil)
			if got.Status.Phase == p {
				want = append(want, "t-move")
			}
			if p == orchestration.PhasePending {
				want = append(want, "t-stay")
			}
			require.Equal(t, want, list(phase(p)), "%s: phase %s", st.name, p)
		}
		for _, p := range []string{"p-1", "p-2"} {
			var want []string
			if got.Status.PropletID == p {
				want = []string{"t-move"}
			}
			require.Equal(t, want, list(orchestration.TaskFilter{PropletID: p}), "%s: proplet %s", st.name, p)
		}
		for _, v := range []string{"a", "b"} {
			var want []string
			if got.Spec.Labels["app"] == v {
				want = []string{"t-move"}
			}
			require.Equal(t, want, list(orchestration.TaskFilter{Labels: map[string]string{"app": v}}), "%s: label app=%s", st.name, v)
		}
	}
}

func testProplets(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	ps, err := s.ListProplets(ctx)
	require.NoError(t, err)
	require.Empty(t, ps)

	_, err = s.GetProplet(ctx, "p-x")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	require.ErrorIs(t, s.DeleteProplet(ctx, "p-x"), orchestration.ErrNotFound)
	require.ErrorIs(t, s.PutProplet(ctx, orchestration.Proplet{}), orchestration.ErrInvalid)

	p2 := orchestration.Proplet{
		ID: "p-2", Labels: map[string]string{"arch": "arm64"}, Slots: 4, MemoryBytes: 1 << 30,
		Runtime: "wazero", Version: "v1", Instance: "i-1", Alive: true, LastSeen: base,
		Running: []string{"t-1", "t-2"},
	}
	p1 := orchestration.Proplet{ID: "p-1", Slots: 1}
	require.NoError(t, s.PutProplet(ctx, p2))
	require.NoError(t, s.PutProplet(ctx, p1))

	got, err := s.GetProplet(ctx, "p-2")
	require.NoError(t, err)
	require.Equal(t, p2, got)

	ps, err = s.ListProplets(ctx)
	require.NoError(t, err)
	require.Equal(t, []orchestration.Proplet{p1, p2}, ps, "listed by id")

	// Put replaces the whole record.
	p2b := orchestration.Proplet{ID: "p-2", Slots: 8, Instance: "i-2"}
	require.NoError(t, s.PutProplet(ctx, p2b))
	got, err = s.GetProplet(ctx, "p-2")
	require.NoError(t, err)
	require.Equal(t, p2b, got)

	require.NoError(t, s.DeleteProplet(ctx, "p-1"))
	_, err = s.GetProplet(ctx, "p-1")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	ps, err = s.ListProplets(ctx)
	require.NoError(t, err)
	require.Equal(t, []orchestration.Proplet{p2b}, ps)
}

func testIsolationTasks(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	code := 1
	in := NewTask("t-iso", orchestration.PhasePending)
	in.Spec.Labels = map[string]string{"app": "a"}
	in.Spec.Env = map[string]string{"K": "V"}
	in.Spec.CLIArgs = []string{"x"}
	in.Spec.PropletIDs = []string{"p-a"}
	in.Status.Results = []float64{1}
	in.Status.ExitCode = &code
	want := in
	want.Spec.Labels = map[string]string{"app": "a"}
	want.Spec.Env = map[string]string{"K": "V"}
	want.Spec.CLIArgs = []string{"x"}
	want.Spec.PropletIDs = []string{"p-a"}
	want.Spec.Inputs = []float64{1, 2}
	want.Status.Results = []float64{1}
	wantCode := 1
	want.Status.ExitCode = &wantCode

	require.NoError(t, s.CreateTask(ctx, in))
	scribble := func(tk *orchestration.Task) {
		tk.Spec.Labels["app"] = "evil"
		tk.Spec.Labels["new"] = "x"
		tk.Spec.Env["K"] = "evil"
		tk.Spec.CLIArgs[0] = "evil"
		tk.Spec.PropletIDs[0] = "evil"
		tk.Spec.Inputs[0] = 99
		tk.Status.Results[0] = 99
		*tk.Status.ExitCode = 99
	}
	check := func(msg string) {
		got, err := s.GetTask(ctx, "t-iso")
		require.NoError(t, err)
		require.Equal(t, want, got, msg)
		page, err := s.ListTasks(ctx, orchestration.TaskFilter{Labels: map[string]string{"app": "a"}})
		require.NoError(t, err)
		require.Equal(t, []string{"t-iso"}, ids(page.Tasks), msg)
	}

	scribble(&in)
	check("input of CreateTask aliased")

	got, err := s.GetTask(ctx, "t-iso")
	require.NoError(t, err)
	scribble(&got)
	check("result of GetTask aliased")

	page, err := s.ListTasks(ctx, orchestration.TaskFilter{})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	scribble(&page.Tasks[0])
	check("result of ListTasks aliased")

	_, err = s.UpdateTask(ctx, "t-iso", func(tk *orchestration.Task) error {
		scribble(tk)
		return orchestration.ErrNoChange
	})
	require.NoError(t, err)
	check("task given to a no-change UpdateFunc aliased")

	_, err = s.UpdateTask(ctx, "t-iso", func(tk *orchestration.Task) error {
		scribble(tk)
		return errors.New("abort")
	})
	require.Error(t, err)
	check("task given to an aborted UpdateFunc aliased")

	var kept *orchestration.Task
	upd, err := s.UpdateTask(ctx, "t-iso", func(tk *orchestration.Task) error {
		tk.Status.Attempt = 1
		kept = tk
		return nil
	})
	require.NoError(t, err)
	want.Status.Attempt = 1
	scribble(&upd)
	scribble(kept)
	check("result of UpdateTask aliased")
}

func testIsolationProplets(t *testing.T, s orchestration.Store) {
	ctx := ctxT(t)
	in := orchestration.Proplet{ID: "p-iso", Labels: map[string]string{"a": "1"}, Running: []string{"t-1"}}
	want := orchestration.Proplet{ID: "p-iso", Labels: map[string]string{"a": "1"}, Running: []string{"t-1"}}
	require.NoError(t, s.PutProplet(ctx, in))
	in.Labels["a"] = "evil"
	in.Running[0] = "evil"
	got, err := s.GetProplet(ctx, "p-iso")
	require.NoError(t, err)
	require.Equal(t, want, got)
	got.Labels["a"] = "evil"
	got.Running[0] = "evil"
	list, err := s.ListProplets(ctx)
	require.NoError(t, err)
	require.Equal(t, []orchestration.Proplet{want}, list)
	list[0].Labels["a"] = "evil"
	got, err = s.GetProplet(ctx, "p-iso")
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func testCanceledContext(t *testing.T, s orchestration.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	err := s.CreateTask(ctx, NewTask("t-ctx", orchestration.PhasePending))
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.GetTask(ctxT(t), "t-ctx")
	require.ErrorIs(t, err, orchestration.ErrNotFound)
	_, err = s.UpdateTask(ctx, "t-ctx", func(*orchestration.Task) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
}

// phaseCounter is the optional counting interface the manager's metrics
// use; stores that have it must keep it exact through every write.
type phaseCounter interface {
	CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error)
}

func testCountByPhase(t *testing.T, s orchestration.Store) {
	pc, ok := s.(phaseCounter)
	if !ok {
		return // optional: nothing to check for stores without it
	}
	ctx := ctxT(t)
	for i, p := range []orchestration.Phase{orchestration.PhasePending, orchestration.PhasePending, orchestration.PhaseRunning} {
		require.NoError(t, s.CreateTask(ctx, NewTask(fmt.Sprintf("t-count-%d", i), p)))
	}
	_, err := s.UpdateTask(ctx, "t-count-0", func(t *orchestration.Task) error {
		t.Status.Phase = orchestration.PhaseSucceeded
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, s.DeleteTask(ctx, "t-count-2"))
	got, err := pc.CountByPhase(ctx)
	require.NoError(t, err)
	for _, p := range orchestration.Phases {
		want := map[orchestration.Phase]int{orchestration.PhasePending: 1, orchestration.PhaseSucceeded: 1}[p]
		require.Equal(t, want, got[p], "phase %s", p)
	}
}
