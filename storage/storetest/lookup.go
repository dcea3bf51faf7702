package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration"
)

// lookupTasks are the tasks the lookup cases (by name, by id prefix)
// search: ids that share prefixes at several lengths, names that share a
// prefix, and one phase and label to combine with.
func lookupTasks() []orchestration.Task {
	mk := func(id, name string, ph orchestration.Phase, labels map[string]string) orchestration.Task {
		tk := NewTask(id, ph)
		tk.Spec.Name = name
		tk.Spec.Labels = labels
		return tk
	}
	P, R := orchestration.PhasePending, orchestration.PhaseRunning
	return []orchestration.Task{
		mk("a1-01", "train", P, map[string]string{"app": "fl"}),
		mk("a1-02", "train", R, nil),
		mk("a1-10", "trainer", R, map[string]string{"app": "fl"}),
		mk("a2-01", "eval", P, nil),
		mk("b1-01", "train", R, map[string]string{"app": "fl"}),
		mk("b1-02", "", P, nil),
	}
}

func testListByName(t *testing.T, s orchestration.Store) {
	seed(t, s, lookupTasks())
	cases := []lookupCase{
		{"exact", orchestration.TaskFilter{Name: "train"}, []string{"a1-01", "a1-02", "b1-01"}},
		{"not a prefix match", orchestration.TaskFilter{Name: "trai"}, nil},
		{"longer name", orchestration.TaskFilter{Name: "trainer"}, []string{"a1-10"}},
		{"unknown", orchestration.TaskFilter{Name: "nope"}, nil},
		{"and phase", orchestration.TaskFilter{Name: "train", Phases: []orchestration.Phase{orchestration.PhaseRunning}}, []string{"a1-02", "b1-01"}},
		{"and label", orchestration.TaskFilter{Name: "train", Labels: map[string]string{"app": "fl"}}, []string{"a1-01", "b1-01"}},
	}
	runLookup(t, s, cases)
}

func testListByIDPrefix(t *testing.T, s orchestration.Store) {
	seed(t, s, lookupTasks())
	cases := []lookupCase{
		{"short", orchestration.TaskFilter{IDPrefix: "a"}, []string{"a1-01", "a1-02", "a1-10", "a2-01"}},
		{"longer", orchestration.TaskFilter{IDPrefix: "a1-0"}, []string{"a1-01", "a1-02"}},
		{"whole id", orchestration.TaskFilter{IDPrefix: "a1-01"}, []string{"a1-01"}},
		{"past every id", orchestration.TaskFilter{IDPrefix: "c"}, nil},
		{"between ids", orchestration.TaskFilter{IDPrefix: "a1-05"}, nil},
		{"longer than ids", orchestration.TaskFilter{IDPrefix: "a1-011"}, nil},
		{"and phase", orchestration.TaskFilter{IDPrefix: "a1", Phases: []orchestration.Phase{orchestration.PhaseRunning}}, []string{"a1-02", "a1-10"}},
		{"and label", orchestration.TaskFilter{IDPrefix: "a", Labels: map[string]string{"app": "fl"}}, []string{"a1-01", "a1-10"}},
		{"and name", orchestration.TaskFilter{IDPrefix: "b", Name: "train"}, []string{"b1-01"}},
	}
	runLookup(t, s, cases)

	t.Run("continue token from before the prefix", func(t *testing.T) {
		// A token that points before the prefix (the first page was
		// listed without it) resumes at the prefix's first id.
		first, err := s.ListTasks(ctxT(t), orchestration.TaskFilter{Limit: 1})
		require.NoError(t, err)
		require.Equal(t, []string{"a1-01"}, ids(first.Tasks))
		page, err := s.ListTasks(ctxT(t), orchestration.TaskFilter{IDPrefix: "b", Continue: first.Continue})
		require.NoError(t, err)
		require.Equal(t, []string{"b1-01", "b1-02"}, ids(page.Tasks))
	})
}

type lookupCase struct {
	name string
	f    orchestration.TaskFilter
	want []string
}

func runLookup(t *testing.T, s orchestration.Store, cases []lookupCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page, err := s.ListTasks(ctxT(t), c.f)
			require.NoError(t, err)
			require.Equal(t, c.want, nilIfEmpty(ids(page.Tasks)))
			require.Empty(t, page.Continue)
			// Page by page, the walk finds the same tasks.
			f := c.f
			f.Limit = 1
			require.Equal(t, c.want, nilIfEmpty(listAll(t, s, f)))
		})
	}
}
