package orchestration

import (
	"fmt"
	"slices"
	"strings"
)

// Page sizes of TaskStore.ListTasks, the same for every store.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// TaskFilter selects tasks in List. Zero fields match everything. Results
// are ordered by task id; ids are time-ordered, so this is creation order.
type TaskFilter struct {
	Phases []Phase
	// PropletID matches the proplet the task is placed on
	// (Status.PropletID), which is what the engine asks when a proplet is
	// lost.
	PropletID string
	// Labels matches tasks carrying all these labels (spec.labels).
	Labels map[string]string
	// Name matches tasks whose spec name is exactly this.
	Name string
	// IDPrefix matches tasks whose id starts with it, so a client can
	// accept an abbreviated id.
	IDPrefix string
	// Limit caps the page size; 0 means DefaultPageLimit, and more than
	// MaxPageLimit means MaxPageLimit.
	Limit int
	// Continue is the token from the previous page.
	Continue string
}

// TaskPage is one page of List.
type TaskPage struct {
	Tasks []Task
	// Continue is empty on the last page.
	Continue string
}

// Match reports whether t passes every filter of f except paging. Every
// store decides with it, whatever it narrows down by itself first, so no
// two stores can answer one filter differently.
func (f TaskFilter) Match(t *Task) bool {
	if len(f.Phases) > 0 && !slices.Contains(f.Phases, t.Status.Phase) {
		return false
	}
	if f.PropletID != "" && t.Status.PropletID != f.PropletID {
		return false
	}
	if f.Name != "" && t.Spec.Name != f.Name {
		return false
	}
	if !strings.HasPrefix(t.ID, f.IDPrefix) {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := t.Spec.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// PageLimit is the page size f asks for with the defaults applied; a
// negative Limit is ErrInvalid.
func (f TaskFilter) PageLimit() (int, error) {
	switch {
	case f.Limit < 0:
		return 0, fmt.Errorf("limit %d is negative: %w", f.Limit, ErrInvalid)
	case f.Limit == 0:
		return DefaultPageLimit, nil
	}
	return min(f.Limit, MaxPageLimit), nil
}
