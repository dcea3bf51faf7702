package standalone

import (
	"context"
	"log/slog"

	"github.com/absmach/propeller/manager/flhook"
	"github.com/absmach/propeller/orchestration/fl"
)

// startFL builds the coordinator over the engine, the job store and the
// blob store, recovers running jobs and runs it until ctx ends; done is
// closed when it stopped.
func startFL(ctx context.Context, h *flhook.Hook, engine fl.Engine, store fl.Store, b fl.Blobs, models fl.Models, log *slog.Logger) (c *fl.Coordinator, done <-chan struct{}, err error) {
	c, err = fl.New(fl.Config{}, fl.Deps{Store: store, Engine: engine, Blobs: b, Models: models, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	h.Set(c)
	if err := c.Recover(ctx); err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		_ = c.Run(ctx)
	}()
	return c, ch, nil
}
