package orchestration_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

// TestCandidatePlacement: a task with proplet_ids runs only on one of
// them, intersected with its selector, whatever the policy.
func TestCandidatePlacement(t *testing.T) {
	type prop struct {
		id     string
		slots  int
		labels map[string]string
	}
	fleet := []prop{
		{"a", 4, map[string]string{"zone": "x"}},
		{"b", 4, map[string]string{"zone": "y"}},
		{"c", 4, map[string]string{"zone": "x"}},
		{"d", 4, map[string]string{"zone": "y"}},
	}
	tests := []struct {
		name     string
		policy   orchestration.Policy
		spec     orchestration.TaskSpec
		tasks    int
		wantOn   []string // every task lands on one of these
		wantUsed []string // and these all get some (spread)
	}{
		{"round-robin over candidates", orchestration.PolicyRoundRobin,
			orchestration.TaskSpec{PropletIDs: []string{"d", "b"}}, 6, []string{"b", "d"}, []string{"b", "d"}},
		{"least-loaded over candidates", orchestration.PolicyLeastLoaded,
			orchestration.TaskSpec{PropletIDs: []string{"a", "c", "d"}}, 9, []string{"a", "c", "d"}, []string{"a", "c", "d"}},
		{"candidates and selector intersect", orchestration.PolicyRoundRobin,
			orchestration.TaskSpec{PropletIDs: []string{"a", "b", "d"}, Selector: map[string]string{"zone": "x"}}, 4, []string{"a"}, []string{"a"}},
		{"unknown candidates are skipped", orchestration.PolicyRoundRobin,
			orchestration.TaskSpec{PropletIDs: []string{"ghost", "c"}}, 3, []string{"c"}, []string{"c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testCfg
			cfg.Policy = tc.policy
			h := newHarness(t, cfg)
			for _, p := range fleet {
				h.join(p.id, p.slots, p.labels)
			}
			used := map[string]int{}
			for range tc.tasks {
				got := h.get(h.submit(tc.spec).ID)
				require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
				require.Contains(t, tc.wantOn, got.Status.PropletID)
				used[got.Status.PropletID]++
			}
			for _, id := range tc.wantUsed {
				require.Positive(t, used[id], "%s unused: %v", id, used)
			}
		})
	}
}

// TestCandidatesWaitForTheirOwn: free slots elsewhere do not count; the
// task runs once a candidate frees a slot or comes alive.
func TestCandidatesWaitForTheirOwn(t *testing.T) {
	h := newHarness(t, testCfg)
	h.join("a", 1, nil)
	h.join("other", 8, nil)
	first := h.submit(orchestration.TaskSpec{PropletIDs: []string{"a", "late"}})
	require.Equal(t, "a", h.get(first.ID).Status.PropletID)

	second := h.submit(orchestration.TaskSpec{PropletIDs: []string{"a", "late"}})
	h.eng.Tick(h.ctx)
	got := h.get(second.ID)
	require.Equal(t, orchestration.PhasePending, got.Status.Phase, "busy candidate, idle non-candidate")
	require.Empty(t, got.Status.Reason, "a busy candidate is no reason to call it unschedulable")

	h.event(first.ID, 1, orchestration.EventSucceeded)
	got = h.get(second.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, "a", got.Status.PropletID)

	third := h.submit(orchestration.TaskSpec{PropletIDs: []string{"a", "late"}})
	require.Equal(t, orchestration.PhasePending, h.get(third.ID).Status.Phase)
	h.join("late", 1, nil)
	got = h.get(third.ID)
	require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
	require.Equal(t, "late", got.Status.PropletID)
}

// TestCandidatesUnschedulable: a task no candidate can ever take says
// which candidates and what they lack.
func TestCandidatesUnschedulable(t *testing.T) {
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("n%02d", i)
	}
	tests := []struct {
		name string
		spec orchestration.TaskSpec
		msg  string
	}{
		{"none known", orchestration.TaskSpec{PropletIDs: []string{"z", "x", "y"}},
			"none of the 3 candidate proplets [x y z] is alive"},
		{"known but dead", orchestration.TaskSpec{PropletIDs: []string{"dead", "ghost"}},
			"none of the 2 candidate proplets [dead ghost] is alive"},
		{"no slots", orchestration.TaskSpec{PropletIDs: []string{"dead", "zero"}},
			"none of the 2 candidate proplets [dead zero] is alive and offers slots"},
		{"selector excludes the live ones", orchestration.TaskSpec{PropletIDs: []string{"arm", "dead"}, Selector: map[string]string{"arch": "amd64"}},
			"none of the 2 candidate proplets [arm dead] is alive and matches selector map[arch:amd64]"},
		{"one unknown", orchestration.TaskSpec{PropletIDs: []string{"ghost"}}, "candidate proplet ghost is not known"},
		{"one dead", orchestration.TaskSpec{PropletIDs: []string{"dead"}}, "candidate proplet dead is not alive"},
		{"one without slots", orchestration.TaskSpec{PropletIDs: []string{"zero"}}, "candidate proplet zero offers no slots"},
		{"one not matching", orchestration.TaskSpec{PropletIDs: []string{"arm"}, Selector: map[string]string{"arch": "amd64"}},
			"candidate proplet arm does not match selector map[arch:amd64]"},
		{"long lists are cut", orchestration.TaskSpec{PropletIDs: many},
			"none of the 12 candidate proplets [n00 n01 n02 n03 n04 n05 n06 n07 n08 n09 ... +2 more] is alive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			h.join("arm", 2, map[string]string{"arch": "arm64"})
			h.join("zero", 0, nil)
			h.join("dead", 2, nil)
			h.join("free", 8, map[string]string{"arch": "amd64"})
			require.NoError(t, h.eng.PropletDown(h.ctx, "dead"))
			task := h.submit(tc.spec)
			h.eng.Tick(h.ctx)
			got := h.get(task.ID)
			require.Equal(t, orchestration.PhasePending, got.Status.Phase)
			require.Equal(t, orchestration.ReasonUnschedulable, got.Status.Reason)
			require.Equal(t, tc.msg, got.Status.Message)
			require.Empty(t, h.disp.starts())
		})
	}
}

// TestCandidateRetries: every retry, after a failure or a lost proplet and
// across a manager restart, is placed among the candidates only.
func TestCandidateRetries(t *testing.T) {
	tests := []struct {
		name string
		lose func(h *harness, id string, attempt int, on string)
	}{
		{"failed attempt", func(h *harness, id string, attempt int, _ string) {
			h.fail(id, attempt, "Trap")
		}},
		{"lost proplet", func(h *harness, _ string, _ int, on string) {
			require.NoError(h.t, h.eng.PropletDown(h.ctx, on))
		}},
		{"lost proplet across a restart", func(h *harness, _ string, _ int, on string) {
			h.restart()
			for _, p := range []string{"a", "b", "c", "d"} {
				if p != on {
					h.join(p, 2, nil)
				}
			}
			h.clock.Advance(testCfg.HeartbeatTimeout + time.Second)
			for _, p := range []string{"a", "b", "c", "d"} {
				if p != on {
					require.NoError(h.t, h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: p}))
				}
			}
			h.eng.Tick(h.ctx)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testCfg)
			for _, p := range []string{"a", "b", "c", "d"} {
				h.join(p, 2, nil)
			}
			cands := []string{"b", "d"}
			task := h.submit(orchestration.TaskSpec{PropletIDs: cands, MaxAttempts: 3})
			for attempt := 1; attempt <= 2; attempt++ {
				got := h.get(task.ID)
				require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
				require.Equal(t, attempt, got.Status.Attempt)
				require.Contains(t, cands, got.Status.PropletID)
				tc.lose(h, task.ID, attempt, got.Status.PropletID)
				got = h.get(task.ID)
				require.Equal(t, orchestration.PhasePending, got.Status.Phase)
				require.Equal(t, cands, got.Spec.PropletIDs, "the candidate set outlives the attempt")
				h.clock.Advance(testCfg.BackoffMax)
				for _, p := range []string{"a", "b", "c", "d"} {
					_ = h.eng.Heartbeat(h.ctx, orchestration.Heartbeat{PropletID: p})
				}
				h.eng.Tick(h.ctx)
			}
			got := h.get(task.ID)
			require.Equal(t, orchestration.PhaseScheduled, got.Status.Phase)
			require.Equal(t, 3, got.Status.Attempt)
			for _, c := range h.disp.starts() {
				require.Contains(t, cands, c.proplet, "attempt %d went to a non-candidate", c.attempt)
			}
		})
	}
}

func TestCandidateValidation(t *testing.T) {
	tooMany := make([]string, orchestration.MaxPropletIDs+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("p", i)
	}
	tests := []struct {
		name string
		ids  []string
		pin  string
		msg  string
	}{
		{"empty id", []string{"a", ""}, "", "propletIds[1] is empty"},
		{"repeated id", []string{"a", "b", "a"}, "", `propletIds lists "a" twice`},
		{"too many", tooMany, "", "propletIds lists 1001 proplets, at most 1000 are allowed"},
		{"with a pin", []string{"a"}, "a", "set propletId or propletIds, not both"},
	}
	h := newHarness(t, testCfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.eng.Submit(h.ctx, orchestration.TaskSpec{Image: "oci://x/y", PropletIDs: tc.ids, PropletID: tc.pin})
			require.ErrorIs(t, err, orchestration.ErrInvalid)
			require.ErrorContains(t, err, tc.msg)
		})
	}
	require.NoError(t, orchestration.ValidatePropletIDs(tooMany[:orchestration.MaxPropletIDs]))
	require.NoError(t, orchestration.ValidatePropletIDs(nil))
	require.NoError(t, orchestration.ValidateSpec(orchestration.TaskSpec{
		Image: "oci://x/y", PropletIDs: []string{"a", "b"}, Selector: map[string]string{"k": "v"},
	}), "candidates with a selector is fine")
	page, err := h.eng.List(h.ctx, orchestration.TaskFilter{})
	require.NoError(t, err)
	require.Empty(t, page.Tasks)
}
