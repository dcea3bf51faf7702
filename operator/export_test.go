package operator

import (
	"log/slog"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// EnsureJoinToken is ensureJoinToken, for tests that race it.
var EnsureJoinToken = ensureJoinToken

// ResolveTaskRef is taskRefs.resolve over store, an informer cache and a
// reader of the API server.
func ResolveTaskRef(store *Store, c cache.Cache, direct client.Reader, id string, record func(runtime.Object)) {
	taskRefs{store: store, cache: c, direct: direct, log: slog.Default()}.resolve(id, record)
}
