package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// Store is the orchestration.Store over the Kubernetes API: every task is a
// WasmTask in one namespace, named by its id, so `kubectl get wasmtasks`
// shows exactly what the engine sees; proplets are ConfigMaps there too.
//
// # Mapping
//
//   - The object name is the task id, so ids must be DNS-1123 subdomains
//     (the engine's UUIDv7 ids are). List order is etcd key order, which is
//     id order, which for engine ids is creation order.
//   - Spec fields map to TaskSpec one to one, except that the user owns
//     spec.suspend and spec.selector while the engine's view of them is in
//     status.held and status.selector (the controller resolves
//     propletGroupRef into status.selector).
//   - Status mirrors TaskStatus; conditions and observedGeneration belong to
//     the controller and are carried through store writes untouched.
//
// # Writes
//
// Every write is optimistic: read, apply, write with the read
// resourceVersion, retry on conflict. A change to engine-owned spec fields
// (rare: labels, suspended edits) is a second write, to the main resource,
// before the status write; a crash between the two leaves a spec the next
// update completes.
//
// # Lists
//
// Phase and proplet filters become field selectors (the CRD declares
// status.phase and status.propletId selectable), task labels become label
// selectors on hashed index labels, and pages are the API server's own
// (limit + continue), so a list never reads more than it returns. The
// continue token wraps the server's token and the last id returned: when
// the server's token expired (etcd compaction), the next page restarts
// from that id.
type Store struct {
	c  client.Client
	ns string
	// all makes the store serve WasmTasks of every namespace (AllNamespaces).
	all    bool
	owners Owners

	// last holds the object as this store last wrote it, for tasks in
	// flight: the engine is almost always the only writer, so UpdateTask
	// can skip the read and let the resourceVersion check catch the rare
	// other writer.
	mu   sync.Mutex
	last map[string]*v1.WasmTask

	// coalesce, when positive, holds back status writes whose state is
	// superseded within moments in the common case (see deferrable) for
	// that long: the next write carries them, or a timer writes them.
	coalesce time.Duration
	// held are those writes, by task id; held[id].obj is also last[id].
	held map[string]*heldWrite

	// writing serialises writes per task. The engine already does, but a
	// held write's timer does not take the engine's lock: without this
	// it races the task's next write, and the loser pays a conflict, a
	// read and a retry.
	writing keyedMutex
}

var _ orchestration.Store = (*Store)(nil)

// Owners says which object owns a task the store creates. The store knows
// WasmTasks only: what a workflow built on tasks hangs them under is the
// workflow's business (RoundOwners, for federated learning).
type Owners interface {
	// Owner returns the controller reference the new object of t carries,
	// or nil for none.
	Owner(ctx context.Context, t orchestration.Task) (*metav1.OwnerReference, error)
}

// NewStore returns a store over namespace ns. c should read from the API
// server, not a cache: UpdateTask needs the latest version. owners may be
// nil: then no task gets an owner.
func NewStore(c client.Client, ns string, owners Owners) *Store {
	return &Store{c: c, ns: ns, owners: owners, last: map[string]*v1.WasmTask{}, held: map[string]*heldWrite{}}
}

// Namespace is where the store keeps proplet records, and its tasks unless
// AllNamespaces.
func (s *Store) Namespace() string { return s.ns }

// AllNamespaces makes the store serve WasmTasks in every namespace. A task
// in the store's own namespace keeps its name as its id (engine-created
// tasks, such as federated learning's, live there); one elsewhere has the
// id "<namespace>/<name>", which no object name can be, so ids never
// collide. Call it before use.
func (s *Store) AllNamespaces() { s.all = true }

// Serves reports whether the store keeps the WasmTasks of namespace ns.
func (s *Store) Serves(ns string) bool { return s.all || ns == s.ns }

// ID is the task id of the WasmTask ns/name.
func (s *Store) ID(ns, name string) string {
	if ns == s.ns {
		return name
	}
	return ns + "/" + name
}

// Key is the object a task id names.
func (s *Store) Key(id string) client.ObjectKey {
	if ns, name, ok := strings.Cut(id, "/"); ok && s.all {
		return client.ObjectKey{Namespace: ns, Name: name}
	}
	return client.ObjectKey{Namespace: s.ns, Name: id}
}

func (s *Store) idOf(obj *v1.WasmTask) string { return s.ID(obj.Namespace, obj.Name) }

// key checks id and returns its object; an id that names no possible
// object is ErrNotFound for reads (wrap) and the caller's choice otherwise.
func (s *Store) key(id string) (client.ObjectKey, error) {
	k := s.Key(id)
	if errs := validation.IsDNS1123Label(k.Namespace); len(errs) > 0 {
		return k, fmt.Errorf("task id %q names no namespace (%s): %w", id, strings.Join(errs, "; "), orchestration.ErrInvalid)
	}
	return k, checkID(k.Name)
}

// task is the engine's view of obj, with its id.
func (s *Store) task(obj *v1.WasmTask) orchestration.Task {
	t := toTask(obj)
	t.ID = s.idOf(obj)
	return t
}

// sortKey orders objects as the API server lists them across namespaces.
func sortKey(obj *v1.WasmTask) string { return obj.Namespace + "/" + obj.Name }

// mapErr translates API errors to the engine's, keeping the original.
func mapErr(err error) error {
	var sentinel error
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		sentinel = orchestration.ErrNotFound
	case apierrors.IsAlreadyExists(err):
		sentinel = orchestration.ErrExists
	case apierrors.IsConflict(err):
		sentinel = orchestration.ErrConflict
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		sentinel = orchestration.ErrInvalid
	default:
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

func checkID(id string) error {
	if errs := validation.IsDNS1123Subdomain(id); len(errs) > 0 {
		return fmt.Errorf("task id %q is not a valid object name (%s): %w", id, strings.Join(errs, "; "), orchestration.ErrInvalid)
	}
	return nil
}

// CreateTask creates the WasmTask, then writes its status: the API server
// drops status on create when the status subresource is enabled.
func (s *Store) CreateTask(ctx context.Context, t orchestration.Task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := s.key(t.ID)
	if err != nil {
		return err
	}
	obj := newObject(k.Namespace, t)
	obj.Name = k.Name
	if s.owners != nil {
		ref, err := s.owners.Owner(ctx, t)
		if err != nil {
			return fmt.Errorf("owner of task %s: %w", t.ID, err)
		}
		if ref != nil {
			obj.OwnerReferences = []metav1.OwnerReference{*ref}
		}
	}
	status := *obj.Status.DeepCopy()
	if err := s.c.Create(ctx, obj); err != nil {
		return fmt.Errorf("create wasmtask %s: %w", t.ID, mapErr(err))
	}
	for {
		obj.Status = *status.DeepCopy()
		err := s.c.Status().Update(ctx, obj)
		if err == nil {
			s.remember(obj)
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("write status of wasmtask %s: %w", t.ID, mapErr(err))
		}
		// The controller touched it first (conditions); keep its
		// metadata, write our status.
		if err := s.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return fmt.Errorf("write status of wasmtask %s: %w", t.ID, mapErr(err))
		}
		if admitted(obj) {
			return nil // someone wrote a status already; ours was the initial one
		}
	}
}

func (s *Store) get(ctx context.Context, id string) (*v1.WasmTask, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, err := s.key(id)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", id, orchestration.ErrNotFound)
	}
	obj := &v1.WasmTask{}
	if err := s.c.Get(ctx, k, obj); err != nil {
		if apierrors.IsNotFound(err) {
			s.forget(id)
		}
		return nil, fmt.Errorf("get wasmtask %s: %w", id, mapErr(err))
	}
	_, obj = s.heldOver(obj)
	return obj, nil
}

// GetTask reads the WasmTask named id.
func (s *Store) GetTask(ctx context.Context, id string) (orchestration.Task, error) {
	obj, err := s.get(ctx, id)
	if err != nil {
		return orchestration.Task{}, err
	}
	return s.task(obj), nil
}

// UpdateTask applies fn and writes what changed with the read
// resourceVersion, retrying fn on conflict.
//
// The first try may start from the object this store last wrote instead of
// reading it. A write from that copy is safe (a newer version makes it
// conflict), but a decision not to write is not, so when fn declines on the
// remembered copy it runs again on a fresh read.
func (s *Store) UpdateTask(ctx context.Context, id string, fn orchestration.UpdateFunc) (orchestration.Task, error) {
	return s.update(ctx, id, fn, s.coalesce > 0)
}

// update is UpdateTask; mayHold allows holding the write back.
func (s *Store) update(ctx context.Context, id string, fn orchestration.UpdateFunc, mayHold bool) (orchestration.Task, error) {
	unlock := s.writing.lock(id)
	defer unlock()
	return s.updateLocked(ctx, id, fn, mayHold)
}

// updateLocked is update under the task's write lock.
func (s *Store) updateLocked(ctx context.Context, id string, fn orchestration.UpdateFunc, mayHold bool) (orchestration.Task, error) {
	obj := s.remembered(id)
	for {
		fresh := obj == nil
		if fresh {
			var err error
			if obj, err = s.get(ctx, id); err != nil {
				s.forget(id)
				return orchestration.Task{}, err
			}
		}
		t := s.task(obj)
		if err := fn(&t); err != nil {
			if !fresh {
				obj = nil
				continue
			}
			if errors.Is(err, orchestration.ErrNoChange) {
				return s.task(obj), nil
			}
			return orchestration.Task{}, err
		}
		if t.ID != id {
			return orchestration.Task{}, fmt.Errorf("update may not change the id of %s: %w", id, orchestration.ErrInvalid)
		}
		next := obj.DeepCopy()
		applySpec(next, t.Spec)
		applyStatus(next, t)
		status := *next.Status.DeepCopy()
		if !equality.Semantic.DeepEqual(obj.Spec, next.Spec) || !equality.Semantic.DeepEqual(obj.Labels, next.Labels) {
			if err := s.c.Update(ctx, next); err != nil {
				if apierrors.IsConflict(err) {
					obj = nil
					continue
				}
				s.forget(id)
				return orchestration.Task{}, fmt.Errorf("update wasmtask %s: %w", id, mapErr(err))
			}
			next.Status = status
		}
		// An object the engine never saw is written even when the view did
		// not change: the write is what admits it. So is a held write.
		s.mu.Lock()
		h := s.held[id]
		s.mu.Unlock()
		statusChanged := !equality.Semantic.DeepEqual(obj.Status, next.Status)
		if mayHold && statusChanged && h == nil && deferrable(obj, next) {
			s.hold(next, obj.Status)
			return s.task(next), nil
		}
		if !admitted(obj) || statusChanged || h != nil {
			if err := s.c.Status().Update(ctx, next); err != nil {
				if apierrors.IsConflict(err) {
					obj = nil
					continue
				}
				s.forget(id)
				return orchestration.Task{}, fmt.Errorf("update status of wasmtask %s: %w", id, mapErr(err))
			}
			// The write carried the held one (obj was it, or was rebased
			// on it), or the held one was overtaken by another writer.
			if h != nil {
				s.dropHeld(id, h)
			}
		}
		s.remember(next)
		return s.task(next), nil
	}
}

// Seed offers obj, read from the controller's cache, as the base of its
// task's next write when the store remembers nothing for it: admitting a
// new object then needs no read. A stale copy costs what not seeding
// would: the write conflicts, and the store reads and retries.
func (s *Store) Seed(obj *v1.WasmTask) {
	if !s.Serves(obj.Namespace) || obj.Status.Phase.Terminal() {
		return
	}
	id := s.idOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.last[id]; !ok {
		s.last[id] = obj.DeepCopy()
	}
}

// Rebase tells the store about a write to obj's metadata (the finalizer)
// that it did not make. When obj still carries the engine status the store
// last wrote, the store adopts obj's metadata and resourceVersion, so its
// next status write does not conflict.
func (s *Store) Rebase(obj *v1.WasmTask) {
	unlock := s.writing.lock(s.idOf(obj))
	defer unlock()
	id := s.idOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.last[id]
	if l == nil {
		return
	}
	// What the server has: the held write's base, or the last write.
	base := l.Status
	h := s.held[id]
	if h != nil {
		base = h.base
	}
	if !equality.Semantic.DeepEqual(engineStatus(base), engineStatus(obj.Status)) {
		return
	}
	c := l.DeepCopy()
	c.ObjectMeta = *obj.ObjectMeta.DeepCopy()
	s.last[id] = c
	if h != nil {
		// A new held write over the same base: the old one's timer
		// compares identity, so it no longer writes.
		h.timer.Stop()
		h2 := &heldWrite{obj: c, base: h.base}
		s.held[id] = h2
		h2.timer = time.AfterFunc(s.coalesce, func() { s.flush(id, h2) })
	}
}

func (s *Store) remembered(id string) *v1.WasmTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[id]
}

// remember keeps obj while its task is in flight. Callers never mutate a
// remembered object: UpdateTask writes a deep copy.
func (s *Store) remember(obj *v1.WasmTask) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if obj.Status.Phase.Terminal() {
		delete(s.last, s.idOf(obj))
		return
	}
	s.last[s.idOf(obj)] = obj
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, id)
	if h := s.held[id]; h != nil {
		h.timer.Stop()
		delete(s.held, id)
	}
}

// DeleteTask deletes the WasmTask. Finalizers, if any, are the
// controller's business: the object is gone for the store once deletion
// started.
func (s *Store) DeleteTask(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := s.key(id)
	if err != nil {
		return fmt.Errorf("task %s: %w", id, orchestration.ErrNotFound)
	}
	s.forget(id)
	obj := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Name: k.Name, Namespace: k.Namespace}}
	if err := s.c.Delete(ctx, obj); err != nil {
		return fmt.Errorf("delete wasmtask %s: %w", id, mapErr(err))
	}
	return nil
}
