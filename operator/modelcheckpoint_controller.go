package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration/fl"
)

// +kubebuilder:rbac:groups=propeller.absmach.io,resources=modelcheckpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=modelcheckpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// A failed push is retried after pushBackoffBase, doubling per failure up
// to pushBackoffMax, until it succeeds.
const (
	pushBackoffBase = time.Second
	pushBackoffMax  = 5 * time.Minute
)

// ModelCheckpointReconciler pushes each ModelCheckpoint's model to the
// OCI registry named by --checkpoint-registry until it is there. It owns
// status.ociRef and the Pushed condition; the FederatedJob controller
// writes the spec, phase and observedGeneration.
type ModelCheckpointReconciler struct {
	Client client.Client
	// Jobs reads the job record, for the checkpoint's algorithm.
	Jobs     *FLStore
	Recorder events.EventRecorder
	// Push is nil when no registry is configured: the controller then
	// does nothing.
	Push *checkpointPusher

	backoff workqueue.TypedRateLimiter[reconcile.Request]
}

// Reconcile pushes one checkpoint that is not pushed yet.
func (r *ModelCheckpointReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	if r.Push == nil {
		return ctrl.Result{}, nil
	}
	mc := &v1.ModelCheckpoint{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		r.backoff.Forget(req)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mc.DeletionTimestamp.IsZero() || mc.Spec.Digest == "" || pushed(mc) {
		r.backoff.Forget(req)
		return ctrl.Result{}, nil
	}
	before := mc.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, mc.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, mc, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()
	err := r.reconcilePush(ctx, mc)
	switch {
	case err == nil:
		r.backoff.Forget(req)
		return ctrl.Result{}, nil
	case ctx.Err() != nil:
		return ctrl.Result{}, ctx.Err() // shutting down: the next leader tries again
	}
	after := r.backoff.When(req)
	log.FromContext(ctx).Info("checkpoint push failed; retrying", "after", after, "err", err)
	return ctrl.Result{RequeueAfter: after}, nil
}

func pushed(mc *v1.ModelCheckpoint) bool {
	return mc.Status.OCIRef != "" && meta.IsStatusConditionTrue(mc.Status.Conditions, v1.ConditionPushed)
}

// reconcilePush pushes mc's model and records the outcome in mc.Status:
// Pushed=True with ociRef, or Pushed=False, PushFailed with the error (a
// Warning event when the condition turns False). A failed push never
// fails the round, whose model is in the blob store either way.
func (r *ModelCheckpointReconciler) reconcilePush(ctx context.Context, mc *v1.ModelCheckpoint) error {
	res, err := r.Push.push(ctx, mc.Spec.JobRef.Name, r.checkpoint(ctx, mc))
	if err != nil && ctx.Err() != nil {
		return err
	}
	cond := metav1.Condition{
		Type: v1.ConditionPushed, Status: metav1.ConditionTrue, Reason: ReasonPushed,
		Message: "pushed to " + res.Ref, ObservedGeneration: mc.Generation,
	}
	if err != nil {
		msg := fmt.Sprintf("push to %s failed: %v", r.Push.reg, err)
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonPushFailed, msg
		if !meta.IsStatusConditionFalse(mc.Status.Conditions, v1.ConditionPushed) {
			r.Recorder.Eventf(mc, nil, "Warning", ReasonPushFailed, "Push", "%s; retrying", msg)
		}
		meta.SetStatusCondition(&mc.Status.Conditions, cond)
		return errors.New(msg)
	}
	mc.Status.OCIRef = res.Ref
	meta.SetStatusCondition(&mc.Status.Conditions, cond)
	r.Recorder.Eventf(mc, nil, "Normal", ReasonPushed, "Push", "pushed to %s", res.Ref)
	return nil
}

// checkpoint is mc as the coordinator recorded it (the algorithm comes
// from the record); the spec alone when the record is gone.
func (r *ModelCheckpointReconciler) checkpoint(ctx context.Context, mc *v1.ModelCheckpoint) fl.Checkpoint {
	cp := fl.Checkpoint{Round: int(mc.Spec.Round), Digest: mc.Spec.Digest}
	if r.Jobs == nil {
		return cp
	}
	j, err := r.Jobs.GetJob(ctx, mc.Spec.JobRef.Name)
	if err != nil {
		return cp
	}
	for _, c := range j.Status.Checkpoints {
		if c.Round == cp.Round && c.Digest == cp.Digest {
			return c
		}
	}
	return cp
}

// SetupWithManager watches ModelCheckpoints. Status writes (its own, and
// the FederatedJob controller's phase) do not trigger it; retries are
// RequeueAfter with the per-checkpoint exponential backoff.
func (r *ModelCheckpointReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.backoff = workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](pushBackoffBase, pushBackoffMax)
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ModelCheckpoint{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Named("modelcheckpoint").
		Complete(r)
}
