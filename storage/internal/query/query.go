// Package query holds the continue token and copy rules the memory and
// bolt stores share, so they cannot drift apart. Filter matching and page
// sizes are orchestration.TaskFilter's, shared with every store.
package query

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"

	"github.com/absmach/propeller/orchestration"
)

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
