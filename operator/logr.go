package operator

import (
	"log/slog"

	"github.com/go-logr/logr"
)

// logrFromSlog routes controller-runtime's logging into the process's slog
// handler, so the operator logs in one format.
func logrFromSlog(l *slog.Logger) logr.Logger { return logr.FromSlogHandler(l.Handler()) }
