package operator

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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

// UnservedSweep returns one sweep of the unserved-namespace watch of an
// operator serving ns.
func UnservedSweep(c client.Reader, rec events.EventRecorder, ns string) func(context.Context) {
	u := &unservedWatch{c: c, rec: rec, ns: ns, interval: time.Hour, log: slog.Default(),
		seen: map[types.UID]bool{}, told: map[types.UID]bool{}}
	return u.sweep
}
