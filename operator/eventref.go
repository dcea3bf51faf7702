package operator

import (
	"context"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// lookupTimeout bounds the API read for an event whose object's UID is
// not in memory.
const lookupTimeout = 30 * time.Second

// taskRefs finds the WasmTask an engine event is about, UID included:
// `kubectl describe wasmtask` lists events by involvedObject name,
// namespace, kind and uid, so an event without the UID is stored but never
// shown. The engine knows tasks by id only.
type taskRefs struct {
	store *Store
	// cache is the manager's informer cache, which the WasmTask
	// controller fills anyway.
	cache cache.Cache
	// direct reads the API server, for an object neither knows yet.
	direct client.Reader
	log    *slog.Logger
}

// resolve calls record with task id's object. It does not block (it runs
// in the engine's observer): the object comes from memory, the store's
// last write (tasks in flight) or the synced informer cache, and only a
// task the engine created moments ago, whose object the cache has not
// seen yet, is read from the API server, with record called from another
// goroutine. An object that is gone gets no event.
func (r taskRefs) resolve(id string, record func(runtime.Object)) {
	if obj := r.known(id); obj != nil {
		record(obj)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		obj := &v1.WasmTask{}
		if err := r.direct.Get(ctx, r.store.Key(id), obj); err != nil {
			if !apierrors.IsNotFound(err) {
				r.log.Warn("event not recorded: reading its WasmTask failed", "task", id, "err", err)
			}
			return
		}
		record(eventRef(obj))
	}()
}

// known returns task id's object from memory, or nil.
func (r taskRefs) known(id string) runtime.Object {
	if obj := r.store.remembered(id); obj != nil {
		return eventRef(obj)
	}
	ctx := context.Background()
	// Never wait for the informer to sync: this runs under the engine's
	// lock of the task.
	inf, err := r.cache.GetInformer(ctx, &v1.WasmTask{}, cache.BlockUntilSynced(false))
	if err != nil || !inf.HasSynced() {
		return nil
	}
	obj := &v1.WasmTask{}
	if err := r.cache.Get(ctx, r.store.Key(id), obj); err != nil {
		return nil
	}
	return eventRef(obj)
}

// eventRef is what an event needs of obj: kind, namespace, name and uid.
// No resourceVersion: the event is about the object, not one version.
func eventRef(obj *v1.WasmTask) *v1.WasmTask {
	ref := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID}}
	ref.SetGroupVersionKind(v1.GroupVersion.WithKind("WasmTask"))
	return ref
}
