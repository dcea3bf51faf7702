package link

import (
	"context"
	"fmt"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// Assignments answers which tasks are placed on a proplet. The relay asks
// it before serving a blob: a proplet gets only the module, or the FL
// model (MODEL_URI), of a task placed on it, so knowing a digest is not
// enough to read another task's module. A Sink that implements it (the
// engine does) enables the relay; with one that does not, every request is
// refused.
type Assignments interface {
	List(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error)
}

// errNotAssigned is sent to the proplet in the error chunk; it says why
// without telling whether the blob exists.
var errNotAssigned = fmt.Errorf("not authorised: no task placed on this proplet uses this artifact")

// authorize reports whether a task Scheduled or Running on proplet id
// uses digest.
func (l *Link) authorize(tasks Assignments, id, digest string) error {
	if tasks == nil {
		return errNotAssigned
	}
	f := orchestration.TaskFilter{PropletID: id, Phases: []orchestration.Phase{orchestration.PhaseScheduled, orchestration.PhaseRunning}}
	for {
		page, err := tasks.List(l.ctx, f)
		if err != nil {
			return fmt.Errorf("look up the tasks of %s: %w", id, err)
		}
		for _, t := range page.Tasks {
			if uses(t.Spec, digest) {
				return nil
			}
		}
		if page.Continue == "" {
			return errNotAssigned
		}
		f.Continue = page.Continue
	}
}

func uses(s orchestration.TaskSpec, digest string) bool {
	if s.Digest == digest || s.Image == wire.BlobScheme+digest {
		return true
	}
	m := s.Env[fl.EnvModelURI]
	return m == wire.BlobScheme+digest || m == wire.RelayScheme+digest
}
