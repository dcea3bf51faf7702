package main

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/absmach/propeller/internal/sdnotify"
)

// systemdNotifier tells systemd, under a Type=notify unit
// (deploy/systemd), how a long-running command is doing: READY=1 once it
// serves, so `systemctl start` returns when the service works, and
// STOPPING=1 once its context ends. Without $NOTIFY_SOCKET it does
// nothing.
type systemdNotifier struct {
	ctx    context.Context
	socket string
	log    *slog.Logger
	once   sync.Once
	// finished ends the watch for shutdown; watched is closed when it
	// has ended (STOPPING=1 sent, if it was due).
	finished, watched chan struct{}
}

func newSystemdNotifier(ctx context.Context, log *slog.Logger) *systemdNotifier {
	return &systemdNotifier{ctx: ctx, socket: os.Getenv("NOTIFY_SOCKET"), log: log,
		finished: make(chan struct{}), watched: make(chan struct{})}
}

// ready sends READY=1, once.
func (n *systemdNotifier) ready() {
	n.once.Do(func() {
		if n.socket == "" {
			close(n.watched)
			return
		}
		if err := sdnotify.Notify(n.socket, sdnotify.Ready); err != nil {
			n.log.Warn("systemd readiness", "error", err)
		}
		go func() {
			defer close(n.watched)
			select {
			case <-n.ctx.Done():
				_ = sdnotify.Notify(n.socket, sdnotify.Stopping)
			case <-n.finished:
			}
		}()
	})
}

// close ends the notifier when the command returns: a STOPPING=1 that is
// due has been sent by then, before the process exits.
func (n *systemdNotifier) close() {
	n.once.Do(func() { close(n.watched) })
	close(n.finished)
	<-n.watched
}
