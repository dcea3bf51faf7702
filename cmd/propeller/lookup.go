package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/standalone/client"
)

// maxCandidates caps the tasks an ambiguity error lists.
const maxCandidates = 10

// findTask resolves what the user typed, as nomad resolves job ids: an
// exact id first, then a name no other task has, then an id prefix no
// other id starts with. An ambiguous name or prefix is an error that lists
// the candidates, so the user can pick one by id.
func findTask(ctx context.Context, c *client.Client, ref string) (standalone.Task, error) {
	if ref == "" {
		return standalone.Task{}, usageErrorf("a task id, name or id prefix is required")
	}
	t, err := c.GetTask(ctx, ref)
	if err == nil || !client.IsNotFound(err) {
		return t, err
	}
	var byName, byPrefix []standalone.Task
	f := client.ListFilter{Limit: 1000}
	for {
		page, err := c.ListTasks(ctx, f)
		if err != nil {
			return standalone.Task{}, err
		}
		for _, t := range page.Tasks {
			if t.Name == ref {
				byName = append(byName, t)
			}
			if strings.HasPrefix(t.ID, ref) {
				byPrefix = append(byPrefix, t)
			}
		}
		if page.Continue == "" {
			break
		}
		f.Continue = page.Continue
	}
	switch {
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1:
		return standalone.Task{}, ambiguous(fmt.Sprintf("%d tasks are named %q", len(byName), ref), byName)
	case len(byPrefix) == 1:
		return byPrefix[0], nil
	case len(byPrefix) > 1:
		return standalone.Task{}, ambiguous(fmt.Sprintf("%d task ids start with %q", len(byPrefix), ref), byPrefix)
	}
	return standalone.Task{}, fmt.Errorf("task %q not found: no task has that id or name, and no id starts with it", ref)
}

func ambiguous(what string, tasks []standalone.Task) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s; name one by id:", what)
	for i, t := range tasks {
		if i == maxCandidates {
			fmt.Fprintf(&b, "\n  ... and %d more", len(tasks)-maxCandidates)
			break
		}
		fmt.Fprintf(&b, "\n  %s  %-9s  %s  created %s", t.ID, t.State, dash(t.Name), t.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return fmt.Errorf("%s", b.String())
}
