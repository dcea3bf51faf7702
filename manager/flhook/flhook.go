// Package flhook connects the federated-learning coordinator to the
// engine's observer and to the MQTT link's FL updates, in both managers.
// The engine and the link exist before the coordinator does (it needs the
// engine, which needs the link), so the coordinator is plugged in later.
package flhook

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// ErrNotStarted refuses an FL update that arrives before the coordinator
// is set; the link does not acknowledge it, so the broker redelivers it.
var ErrNotStarted = errors.New("federated learning coordinator not started")

// Hook forwards to the coordinator once Set. Its zero value is ready to
// use; it is safe for concurrent use.
type Hook struct {
	c atomic.Pointer[fl.Coordinator]
}

var _ link.FLSink = (*Hook)(nil)

// Set plugs in the coordinator.
func (h *Hook) Set(c *fl.Coordinator) { h.c.Store(c) }

// TaskChanged is for the engine's observer. Changes before Set are
// dropped: the coordinator's Recover reads the tasks it cares about.
func (h *Hook) TaskChanged(t orchestration.Task) {
	if c := h.c.Load(); c != nil {
		c.TaskChanged(t)
	}
}

// FLUpdate implements link.FLSink. The link acknowledges the message when
// this returns nil, so the coordinator records the update durably first.
func (h *Hook) FLUpdate(ctx context.Context, propletID string, u wire.FLUpdate) error {
	c := h.c.Load()
	if c == nil {
		return ErrNotStarted
	}
	return c.Receive(ctx, fl.Update{
		JobID: u.JobID, RoundID: u.RoundID, TaskID: u.TaskID, PropletID: propletID, Attempt: u.Attempt,
		NumSamples: u.NumSamples, Metrics: u.Metrics, Tensor: u.Tensor, Time: u.Time,
	})
}
