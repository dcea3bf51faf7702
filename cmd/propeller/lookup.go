package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/absmach/propeller/api/rest"
)

// maxCandidates caps the tasks an ambiguity error lists.
const maxCandidates = 10

// findTask resolves what the user typed, as nomad resolves job ids: an
// exact id first, then a name no other task has, then an id prefix no
// other id starts with. An ambiguous name or prefix is an error that lists
// the candidates, so the user can pick one by id.
func findTask(ctx context.Context, c *rest.Client, ref string) (rest.Task, error) {
	if ref == "" {
		return rest.Task{}, usageErrorf("a task id, name or id prefix is required")
	}
	t, err := c.GetTask(ctx, ref)
	if err == nil || !rest.IsNotFound(err) {
		return t, err
	}
	collect := func(f rest.TaskFilter) ([]rest.Task, error) {
		var out []rest.Task
		for t, err := range c.Tasks(ctx, f) {
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
		return out, nil
	}
	byName, err := collect(rest.TaskFilter{Name: ref})
	if err != nil {
		return rest.Task{}, err
	}
	var byPrefix []rest.Task
	if len(byName) == 0 {
		if byPrefix, err = collect(rest.TaskFilter{IDPrefix: ref}); err != nil {
			return rest.Task{}, err
		}
	}
	switch {
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1:
		return rest.Task{}, ambiguous(fmt.Sprintf("%d tasks are named %q", len(byName), ref), byName)
	case len(byPrefix) == 1:
		return byPrefix[0], nil
	case len(byPrefix) > 1:
		return rest.Task{}, ambiguous(fmt.Sprintf("%d task ids start with %q", len(byPrefix), ref), byPrefix)
	}
	return rest.Task{}, fmt.Errorf("task %q not found: no task has that id or name, and no id starts with it", ref)
}

// task is the client of a task command and the task its argument names.
func (o *clientOptions) task(cmd *cobra.Command, ref string) (*rest.Client, rest.Task, error) {
	c, err := o.client(cmd)
	if err != nil {
		return nil, rest.Task{}, err
	}
	t, err := findTask(cmd.Context(), c, ref)
	return c, t, err
}

func ambiguous(what string, tasks []rest.Task) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s; name one by id:", what)
	for i, t := range tasks {
		if i == maxCandidates {
			fmt.Fprintf(&b, "\n  ... and %d more", len(tasks)-maxCandidates)
			break
		}
		fmt.Fprintf(&b, "\n  %s  %-9s  %s  created %s", t.ID, t.Phase, dash(t.Name), t.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return fmt.Errorf("%s", b.String())
}
