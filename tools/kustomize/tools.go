//go:build tools

// Package tools pins the kustomize CLI that `make kustomize` builds into bin/kustomize.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
