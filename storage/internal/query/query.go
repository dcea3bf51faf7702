// Package query holds the filter, paging and copy rules every Propeller
// store shares, so the memory and bolt stores cannot drift apart.
package query

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"

	"github.com/absmach/propeller/orchestration"
)

// Page size bounds documented on orchestration.TaskFilter.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Matches reports whether t passes every filter of f except paging.
// PropletID matches the proplet the task is placed on (Status.PropletID),
// because that is what the engine asks when a proplet is lost.
func Matches(t *orchestration.Task, f orchestration.TaskFilter) bool {
	if len(f.Phases) > 0 && !slices.Contains(f.Phases, t.Status.Phase) {
		return false
	}
	if f.PropletID != "" && t.Status.PropletID != f.PropletID {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := t.Spec.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// PageLimit applies the documented defaults so all stores page alike.
func PageLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("limit %d: %w", n, orchestration.ErrInvalid)
	case n == 0:
		return DefaultLimit, nil
	case n > MaxLimit:
		return MaxLimit, nil
	}
	return n, nil
}

// EncodeContinue makes the opaque continue token for a page ending at id.
func EncodeContinue(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// DecodeContinue returns the id the previous page ended at ("" for none).
func DecodeContinue(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("continue token %q: %w", tok, orchestration.ErrInvalid)
	}
	return string(b), nil
}

// CloneTask deep-copies t. Empty maps and slices become nil, which is
// what a JSON round trip (bolt, CRDs) yields, so all stores return the same
// shape.
func CloneTask(t orchestration.Task) orchestration.Task {
	t.Spec.Inputs = cloneSlice(t.Spec.Inputs)
	t.Spec.CLIArgs = cloneSlice(t.Spec.CLIArgs)
	t.Spec.Env = cloneMap(t.Spec.Env)
	t.Spec.Labels = cloneMap(t.Spec.Labels)
	t.Spec.Selector = cloneMap(t.Spec.Selector)
	t.Spec.PropletIDs = cloneSlice(t.Spec.PropletIDs)
	t.Status.Results = cloneSlice(t.Status.Results)
	if t.Status.ExitCode != nil {
		c := *t.Status.ExitCode
		t.Status.ExitCode = &c
	}
	return t
}

// CloneProplet deep-copies p, with the same nil-for-empty rule as CloneTask.
func CloneProplet(p orchestration.Proplet) orchestration.Proplet {
	p.Labels = cloneMap(p.Labels)
	p.Running = cloneSlice(p.Running)
	return p
}

func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
