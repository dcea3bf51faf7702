package operator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
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

// keyedMutex is a mutex per key, kept only while someone holds or waits
// for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// heldWrite is a status write not sent yet.
type heldWrite struct {
	// obj is the object as written, with the resourceVersion of base.
	obj *v1.WasmTask
	// base is the status on the server it replaces.
	base v1.WasmTaskStatus
	// timer writes it when no later write did.
	timer *time.Timer
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

// Coalesce makes the store hold back transient status writes for up to d
// (0, the default, writes everything at once). Two transitions qualify,
// both followed at once by another write in the common case:
//
//   - admitting a kubectl-created object (Pending, not held), which the
//     scheduler turns into Scheduled as soon as a slot is free;
//   - Scheduled -> Running, which a short task follows with its result.
//
// Neither matters to recovery: an object never admitted is admitted again
// by the controller, and a task that still reads Scheduled after a restart
// gets its start command again with the same attempt, which proplets
// de-duplicate. Scheduled and final
// states are always written before the store returns. Reads through the
// store (GetTask, ListTasks, UpdateTask) see held writes. Call it before
// use.
func (s *Store) Coalesce(d time.Duration) { s.coalesce = d }

// deferrable reports whether the write of next over obj may be held back.
func deferrable(obj, next *v1.WasmTask) bool {
	to := next.Status.Phase
	if !admitted(obj) {
		return to == v1.TaskPending && !next.Status.Held
	}
	return obj.Status.Phase == v1.TaskScheduled && to == v1.TaskRunning && obj.Status.Attempt == next.Status.Attempt
}

// engineStatus is st without what the controller writes besides the
// engine (conditions, observedGeneration).
func engineStatus(st v1.WasmTaskStatus) v1.WasmTaskStatus {
	st.Conditions = nil
	st.ObservedGeneration = 0
	return st
}

// hold records next as a held write over base and arms its timer.
func (s *Store) hold(next *v1.WasmTask, base v1.WasmTaskStatus) {
	id := s.idOf(next)
	h := &heldWrite{obj: next, base: base}
	s.mu.Lock()
	if old := s.held[id]; old != nil {
		old.timer.Stop()
	}
	s.held[id] = h
	s.last[id] = next
	h.timer = time.AfterFunc(s.coalesce, func() { s.flush(id, h) })
	s.mu.Unlock()
}

// flush writes h if it is still held.
func (s *Store) flush(id string, h *heldWrite) {
	// Under the task's write lock: a write that raced the timer and
	// carried h is then seen, and there is nothing to do.
	unlock := s.writing.lock(id)
	defer unlock()
	s.mu.Lock()
	cur := s.held[id]
	s.mu.Unlock()
	if cur != h {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A no-op update writes what is held (UpdateTask writes while a held
	// write exists); errors leave the object as it was, which is safe.
	_, _ = s.updateLocked(ctx, id, func(*orchestration.Task) error { return nil }, false)
}

// dropHeld forgets the held write of id, if it is h (nil: any).
func (s *Store) dropHeld(id string, h *heldWrite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.held[id]
	if cur == nil || (h != nil && cur != h) {
		return
	}
	cur.timer.Stop()
	delete(s.held, id)
}

// heldOver returns the held write of obj's task and obj with it applied,
// when the server's object is still the one the write replaces (no one
// else changed the engine's status since); otherwise nil and obj.
func (s *Store) heldOver(obj *v1.WasmTask) (*heldWrite, *v1.WasmTask) {
	s.mu.Lock()
	h := s.held[s.idOf(obj)]
	s.mu.Unlock()
	if h == nil || !equality.Semantic.DeepEqual(engineStatus(obj.Status), engineStatus(h.base)) {
		return nil, obj
	}
	out := obj.DeepCopy()
	applyStatus(out, toTask(h.obj))
	return h, out
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

// listToken is the store's continue token.
type listToken struct {
	// K is the API server's continue token.
	K string `json:"k,omitempty"`
	// A is the sort key ("<namespace>/<name>") of the last task returned,
	// to resume after K expired.
	A string `json:"a"`
}

func encodeToken(tk listToken) string {
	b, _ := json.Marshal(tk)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (listToken, error) {
	var tk listToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &tk)
	}
	if err == nil && tk.A == "" {
		err = errors.New("no position")
	}
	if err != nil {
		return tk, fmt.Errorf("bad continue token: %w", orchestration.ErrInvalid)
	}
	return tk, nil
}

var allPhases = []orchestration.Phase{
	orchestration.PhasePending, orchestration.PhaseScheduled, orchestration.PhaseRunning,
	orchestration.PhaseSucceeded, orchestration.PhaseFailed, orchestration.PhaseCancelled,
}

// selectorValue reports whether v can travel in a field selector as is.
func selectorValue(v string) bool {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// fieldSelector narrows a list on the server. It may select more than f
// (the store re-checks every task), never less.
func fieldSelector(f orchestration.TaskFilter) fields.Selector {
	var terms []fields.Selector
	if f.PropletID != "" && selectorValue(f.PropletID) {
		terms = append(terms, fields.OneTermEqualSelector("status.propletId", f.PropletID))
	}
	want := map[orchestration.Phase]bool{}
	known := true
	for _, p := range f.Phases {
		want[p] = true
		known = known && p.Valid()
	}
	switch {
	case len(want) == 0 || !known || len(want) == len(allPhases):
	case len(want) == 1 && !want[orchestration.PhasePending]:
		// Pending also covers objects not yet admitted (no phase), so it
		// is only ever selected as "not the others".
		terms = append(terms, fields.OneTermEqualSelector("status.phase", string(f.Phases[0])))
	default:
		for _, p := range allPhases {
			if !want[p] {
				terms = append(terms, fields.OneTermNotEqualSelector("status.phase", string(p)))
			}
		}
	}
	if len(terms) == 0 {
		return nil
	}
	return fields.AndSelectors(terms...)
}

// ListTasks returns one page in id order.
func (s *Store) ListTasks(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.TaskPage{}, err
	}
	limit, err := f.PageLimit()
	if err != nil {
		return orchestration.TaskPage{}, err
	}
	var tk listToken
	if f.Continue != "" {
		var err error
		if tk, err = decodeToken(f.Continue); err != nil {
			return orchestration.TaskPage{}, err
		}
	}
	opts := []client.ListOption{client.Limit(int64(limit))}
	if !s.all {
		opts = append(opts, client.InNamespace(s.ns))
	}
	if len(f.Labels) > 0 {
		sel := labels.Set{}
		for k, v := range f.Labels {
			sel[indexLabelKey(k)] = hash32(v)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel.AsSelector()})
	}
	sf := f
	if s.coalesce > 0 && slices.Contains(f.Phases, orchestration.PhaseRunning) && !slices.Contains(f.Phases, orchestration.PhaseScheduled) {
		// A held Running write still reads Scheduled on the server.
		sf.Phases = append(slices.Clone(f.Phases), orchestration.PhaseScheduled)
	}
	if fs := fieldSelector(sf); fs != nil {
		opts = append(opts, client.MatchingFieldsSelector{Selector: fs})
	}
	// after skips what an earlier page returned; it matters only after a
	// restart from the beginning.
	after := ""
	cont := tk.K
	if f.Continue != "" && cont == "" {
		after = tk.A
	}
	var page orchestration.TaskPage
	// lastKey is the sort key of the last task in page.
	lastKey := ""
	for {
		list := &v1.WasmTaskList{}
		err := s.c.List(ctx, list, append(opts, client.Continue(cont))...)
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			cont, after = "", tk.A
			continue
		}
		if err != nil {
			return orchestration.TaskPage{}, fmt.Errorf("list wasmtasks: %w", mapErr(err))
		}
		slices.SortFunc(list.Items, func(a, b v1.WasmTask) int { return strings.Compare(sortKey(&a), sortKey(&b)) })
		for i := range list.Items {
			if sortKey(&list.Items[i]) <= after {
				continue
			}
			_, item := s.heldOver(&list.Items[i])
			t := s.task(item)
			if f.Match(&t) {
				page.Tasks = append(page.Tasks, t)
				lastKey = sortKey(item)
			}
		}
		if list.Continue == "" {
			return page, nil
		}
		if len(page.Tasks) > 0 {
			page.Continue = encodeToken(listToken{K: list.Continue, A: lastKey})
			return page, nil
		}
		// Everything on this server page was filtered out here: keep
		// going rather than hand out an empty page with a token.
		cont = list.Continue
		if len(list.Items) > 0 {
			tk.A = sortKey(&list.Items[len(list.Items)-1])
		}
	}
}

// Proplets are ConfigMaps labelled propletLabel, named by a hash of the id
// (ids come from MQTT client ids and need not be object names), holding
// the record as JSON. They are few and small, and the engine re-learns
// liveness from the broker anyway.
const (
	propletLabel   = "propeller.absmach.io/proplet"
	propletDataKey = "proplet.json"
	propletIDKey   = "id"
)

func propletObjectName(id string) string { return "proplet-" + hash32(id) }

func (s *Store) propletKey(id string) client.ObjectKey {
	return client.ObjectKey{Namespace: s.ns, Name: propletObjectName(id)}
}

func decodeProplet(cm *corev1.ConfigMap) (orchestration.Proplet, error) {
	var p orchestration.Proplet
	if err := json.Unmarshal([]byte(cm.Data[propletDataKey]), &p); err != nil {
		return p, fmt.Errorf("decode proplet %s: %w", cm.Name, err)
	}
	return p, nil
}

// PutProplet creates or replaces the proplet's record.
func (s *Store) PutProplet(ctx context.Context, p orchestration.Proplet) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return fmt.Errorf("proplet without id: %w", orchestration.ErrInvalid)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode proplet %s: %w", p.ID, err)
	}
	data := map[string]string{propletDataKey: string(b), propletIDKey: p.ID}
	for {
		cm := &corev1.ConfigMap{}
		err := s.c.Get(ctx, s.propletKey(p.ID), cm)
		switch {
		case apierrors.IsNotFound(err):
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name: propletObjectName(p.ID), Namespace: s.ns,
					Labels: map[string]string{propletLabel: "true"},
				},
				Data: data,
			}
			err = s.c.Create(ctx, cm)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		case err == nil:
			cm.Data = data
			err = s.c.Update(ctx, cm)
			if apierrors.IsConflict(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("put proplet %s: %w", p.ID, mapErr(err))
		}
		return nil
	}
}

// GetProplet reads one proplet record.
func (s *Store) GetProplet(ctx context.Context, id string) (orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Proplet{}, err
	}
	cm := &corev1.ConfigMap{}
	if err := s.c.Get(ctx, s.propletKey(id), cm); err != nil {
		return orchestration.Proplet{}, fmt.Errorf("get proplet %s: %w", id, mapErr(err))
	}
	if cm.Data[propletIDKey] != id {
		return orchestration.Proplet{}, fmt.Errorf("proplet %s: %w", id, orchestration.ErrNotFound)
	}
	return decodeProplet(cm)
}

// ListProplets returns every proplet record, by id.
func (s *Store) ListProplets(ctx context.Context) ([]orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []orchestration.Proplet
	opts := []client.ListOption{client.InNamespace(s.ns), client.MatchingLabels{propletLabel: "true"}, client.Limit(500)}
	cont := ""
	for {
		list := &corev1.ConfigMapList{}
		if err := s.c.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return nil, fmt.Errorf("list proplets: %w", mapErr(err))
		}
		for i := range list.Items {
			p, err := decodeProplet(&list.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	slices.SortFunc(out, func(a, b orchestration.Proplet) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteProplet removes a proplet record.
func (s *Store) DeleteProplet(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: propletObjectName(id), Namespace: s.ns}}
	if err := s.c.Delete(ctx, cm); err != nil {
		return fmt.Errorf("delete proplet %s: %w", id, mapErr(err))
	}
	return nil
}
