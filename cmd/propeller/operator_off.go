//go:build noperator

package main

import (
	"context"
	"errors"
	"log/slog"
)

// startOperator is unavailable in edge builds (tag noperator).
func startOperator(context.Context, *operatorOptions, *slog.Logger) error {
	return errors.New("this is an edge build of propeller (tag noperator) without the Kubernetes operator; use the full build")
}
