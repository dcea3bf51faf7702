package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// TaskFinalizer keeps a WasmTask until its attempt on a proplet is
// stopped. Only tasks in flight for a while carry it (see Slow): a short
// task finishes before the write would pay off, and one deleted before it
// got the finalizer is stopped when the controller sees it gone.
const TaskFinalizer = "propeller.absmach.io/stop-task"

// Condition types the WasmTask controller owns, next to the engine's.
const (
	// ConditionGroupResolved is False while propletGroupRef names no
	// PropletGroup.
	ConditionGroupResolved = "GroupResolved"
)

// WasmTaskReconciler hands WasmTasks to the engine. The engine owns the
// task's lifecycle and writes its status through the Store; the
// reconciler only admits new objects, releases suspended ones, and stops
// deleted ones.
type WasmTaskReconciler struct {
	Client   client.Client
	Engine   *orchestration.Engine
	Store    *Store
	Recorder events.EventRecorder
	// Ready is closed once the engine recovered; reconciles wait for it.
	Ready <-chan struct{}
	// Slow names tasks that have been in flight for a while: they get the
	// finalizer.
	Slow <-chan event.TypedGenericEvent[*v1.WasmTask]
	// Gone, when set, is told the id of a task whose object is gone.
	Gone func(id string)
}

// taskScope is what the phase functions of one reconcile share.
type taskScope struct {
	obj *v1.WasmTask
	// conds are conditions this reconcile decided, patched once at the end.
	conds []metav1.Condition
}

// Reconcile admits, releases or finalizes one WasmTask.
func (r *WasmTaskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	if !r.Store.Serves(req.Namespace) {
		return ctrl.Result{}, nil
	}
	select {
	case <-r.Ready:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	obj := &v1.WasmTask{}
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone without the finalizer: stop what may still run.
			id := r.Store.ID(req.Namespace, req.Name)
			if err := r.Engine.Forget(ctx, id); err != nil {
				return ctrl.Result{}, err
			}
			if r.Gone != nil {
				r.Gone(id)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	s := &taskScope{obj: obj}
	defer func() {
		if err := r.patchConditions(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()

	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	if obj.Status.Phase.Terminal() {
		return ctrl.Result{}, nil
	}
	if !admitted(obj) {
		// The engine's first write starts from the cached copy, not a read.
		r.Store.Seed(obj)
		return r.reconcileAdmit(ctx, s)
	}
	if err := r.reconcileFinalizer(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if obj.Status.Held && !obj.Spec.Suspend {
		return ctrl.Result{}, r.reconcileRelease(ctx, s)
	}
	return ctrl.Result{}, nil
}

// id is obj's task id in the engine.
func (r *WasmTaskReconciler) id(obj *v1.WasmTask) string { return r.Store.ID(obj.Namespace, obj.Name) }

// reconcileFinalizer gives a task in flight the stop-task finalizer.
func (r *WasmTaskReconciler) reconcileFinalizer(ctx context.Context, s *taskScope) error {
	obj := s.obj
	ph := obj.Status.Phase
	if controllerutil.ContainsFinalizer(obj, TaskFinalizer) || (ph != v1.TaskScheduled && ph != v1.TaskRunning) {
		return nil
	}
	// A patch, not an update: the engine writes status all the time,
	// and a resourceVersion from the cache would mostly conflict.
	before := obj.DeepCopy()
	controllerutil.AddFinalizer(obj, TaskFinalizer)
	if err := r.Client.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(err)
	}
	// The patch moved the resourceVersion the engine's next write needs.
	r.Store.Rebase(obj)
	return nil
}

// reconcileAdmit puts a new WasmTask in the engine's hands. A group
// reference becomes the task's selector and candidate set (the group's
// selector and propletIds; with both, a proplet must satisfy both) now, so
// later changes to the group do not move a task that was already placed.
func (r *WasmTaskReconciler) reconcileAdmit(ctx context.Context, s *taskScope) (ctrl.Result, error) {
	obj := s.obj
	var (
		sel map[string]string
		ids []string
	)
	if ref := obj.Spec.PropletGroupRef; ref != nil {
		g := &v1.PropletGroup{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: ref.Name}, g)
		if apierrors.IsNotFound(err) {
			s.conds = append(s.conds, metav1.Condition{
				Type: ConditionGroupResolved, Status: metav1.ConditionFalse, Reason: "GroupNotFound",
				Message: fmt.Sprintf("PropletGroup %q does not exist", ref.Name),
			})
			// The group watch requeues the task when it appears.
			return ctrl.Result{}, nil
		}
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := orchestration.ValidatePropletIDs(g.Spec.PropletIDs); err != nil {
			// A fault of the group, not of the task: wait for the group
			// to be fixed (its watch requeues the task).
			s.conds = append(s.conds, metav1.Condition{
				Type: ConditionGroupResolved, Status: metav1.ConditionFalse, Reason: "GroupInvalid",
				Message: fmt.Sprintf("PropletGroup %q cannot be a task target: %v", ref.Name, err),
			})
			return ctrl.Result{}, nil
		}
		sel, ids = g.Spec.Selector, g.Spec.PropletIDs
		s.conds = append(s.conds, metav1.Condition{
			Type: ConditionGroupResolved, Status: metav1.ConditionTrue, Reason: "GroupFound",
			Message: fmt.Sprintf("scheduling on PropletGroup %q", ref.Name),
		})
	} else {
		sel = obj.Spec.Selector
	}
	spec := toTask(obj).Spec
	spec.Selector, spec.PropletIDs = sel, ids
	if err := orchestration.ValidateSpec(spec); err != nil {
		r.Recorder.Eventf(obj, nil, "Warning", "Invalid", "Admit", "%v", err)
		return ctrl.Result{}, r.fail(ctx, obj, err)
	}
	// Engine.Start admits a plain task in its own write. A held task, or
	// one whose selector and candidates come from a group, is admitted
	// here first.
	if obj.Spec.Suspend || obj.Spec.PropletGroupRef != nil {
		if _, err := r.Store.UpdateTask(ctx, r.id(obj), func(t *orchestration.Task) error {
			t.Spec.Selector = sel
			t.Spec.PropletIDs = ids
			return nil
		}); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, r.reconcileRelease(ctx, s)
}

// fail ends a task the engine cannot take; stopping it records why.
func (r *WasmTaskReconciler) fail(ctx context.Context, obj *v1.WasmTask, cause error) error {
	_, err := r.Store.UpdateTask(ctx, r.id(obj), func(t *orchestration.Task) error {
		t.Status.Phase = orchestration.PhaseFailed
		t.Status.Reason = "InvalidSpec"
		t.Status.Message = cause.Error()
		t.Status.FinishedAt = time.Now()
		t.Status.UpdatedAt = t.Status.FinishedAt
		return nil
	})
	return err
}

// reconcileRelease starts a held task once spec.suspend is false.
func (r *WasmTaskReconciler) reconcileRelease(ctx context.Context, s *taskScope) error {
	if s.obj.Spec.Suspend {
		return nil
	}
	err := r.Engine.Release(ctx, r.id(s.obj))
	if errors.Is(err, orchestration.ErrNoChange) || errors.Is(err, orchestration.ErrTerminal) || errors.Is(err, orchestration.ErrNotFound) {
		return nil
	}
	return err
}

// reconcileDelete stops the task on its proplet before the object goes.
func (r *WasmTaskReconciler) reconcileDelete(ctx context.Context, s *taskScope) error {
	if !controllerutil.ContainsFinalizer(s.obj, TaskFinalizer) {
		return nil
	}
	_, err := r.Engine.Stop(ctx, r.id(s.obj), "WasmTask deleted")
	switch {
	case err == nil:
		r.Recorder.Eventf(s.obj, nil, "Normal", "Stopped", "Delete", "stopped on deletion")
	case errors.Is(err, orchestration.ErrTerminal), errors.Is(err, orchestration.ErrNotFound):
	default:
		return err
	}
	return r.removeFinalizer(ctx, s)
}

func (r *WasmTaskReconciler) removeFinalizer(ctx context.Context, s *taskScope) error {
	if !controllerutil.ContainsFinalizer(s.obj, TaskFinalizer) {
		return nil
	}
	before := s.obj.DeepCopy()
	controllerutil.RemoveFinalizer(s.obj, TaskFinalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, s.obj, client.MergeFrom(before)))
}

// patchConditions writes the conditions this reconcile decided, once, as a
// merge patch of just those: the engine writes the rest of status through
// the store, with resourceVersion checks, so nothing here can undo it.
func (r *WasmTaskReconciler) patchConditions(ctx context.Context, s *taskScope) error {
	if len(s.conds) == 0 {
		return nil
	}
	cur := &v1.WasmTask{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(s.obj), cur); err != nil {
		return err
	}
	before := cur.DeepCopy()
	changed := false
	for _, c := range s.conds {
		c.ObservedGeneration = cur.Generation
		changed = meta.SetStatusCondition(&cur.Status.Conditions, c) || changed
	}
	if !changed {
		return nil
	}
	return r.Client.Status().Patch(ctx, cur, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// SetupWithManager watches WasmTasks (creation, spec changes and deletion:
// the engine's status writes need no reconcile), PropletGroups, so tasks
// waiting for a group are admitted when it appears, and Slow, the tasks
// in flight long enough to get the finalizer.
func (r *WasmTaskReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.WasmTask{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			deletingPredicate(),
		))).
		Watches(&v1.PropletGroup{}, enqueueWaitingTasks(mgr.GetClient())).
		WatchesRawSource(source.Channel(r.Slow, &handler.TypedEnqueueRequestForObject[*v1.WasmTask]{})).
		// Reconciles wait on the API server and the broker, not the CPU.
		WithOptions(controller.Options{MaxConcurrentReconciles: 16}).
		Named("wasmtask").
		Complete(r)
}

func deletingPredicate() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
	}
}

// enqueueWaitingTasks maps a PropletGroup to the WasmTasks that name it and
// are not admitted yet.
func enqueueWaitingTasks(c client.Client) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &v1.WasmTaskList{}
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var out []reconcile.Request
		for i := range list.Items {
			t := &list.Items[i]
			if ref := t.Spec.PropletGroupRef; ref != nil && ref.Name == o.GetName() && !admitted(t) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(t)})
			}
		}
		return out
	})
}
