//go:build noperator

package main

import (
	"context"
	"errors"
	"log/slog"
)

// Edge builds (tag noperator) have no `manager operator` command; the help
// does not offer it.
const (
	operatorBuilt = false
	operatorHelp  = ""
)

// startOperator is unreachable in edge builds: the command is not added.
func startOperator(context.Context, *operatorOptions, *slog.Logger) error {
	return errors.New("this is an edge build of propeller (tag noperator) without the Kubernetes operator; use the full build")
}
