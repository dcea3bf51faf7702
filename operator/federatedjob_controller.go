package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// JobFinalizer keeps a FederatedJob until its running round is stopped.
const JobFinalizer = "propeller.absmach.io/stop-job"

// FederatedJobReconciler hands FederatedJobs to the FL coordinator, which
// runs rounds of WasmTasks through the engine, and mirrors the job record
// into the FederatedJob's status, its TrainingRounds (the coordinator's
// facts about each round) and ModelCheckpoints (spec and phase), all owned
// by the job. The TrainingRound controller summarises each round's tasks;
// the ModelCheckpoint controller pushes checkpoints to an OCI registry.
type FederatedJobReconciler struct {
	Client   client.Client
	Jobs     *FLStore
	FL       *fl.Coordinator
	Recorder events.EventRecorder
	Ready    <-chan struct{}
}

// Reconcile admits, mirrors or finalizes one FederatedJob.
func (r *FederatedJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	if req.Namespace != r.Jobs.ns {
		return ctrl.Result{}, r.reconcileForeign(ctx, req)
	}
	select {
	case <-r.Ready:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	obj := &v1.FederatedJob{}
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := obj.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, obj.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, obj)
	}
	job, err := r.Jobs.GetJob(ctx, obj.Name)
	switch {
	case errors.Is(err, orchestration.ErrNotFound):
		if obj.Status.Phase == v1.FLFailed {
			return ctrl.Result{}, nil // refused at admission; a spec edit does not revive it
		}
		if job, err = r.reconcileAdmit(ctx, obj); err != nil || job.ID == "" {
			return ctrl.Result{}, err
		}
	case err != nil:
		return ctrl.Result{}, err
	}
	r.reconcileStatus(obj, &job)
	if err := r.reconcileRounds(ctx, obj, &job); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileCheckpoints(ctx, obj, &job); err != nil {
		return ctrl.Result{}, err
	}
	if job.Status.Phase.Terminal() {
		return ctrl.Result{}, r.patchFinalizer(ctx, obj, false)
	}
	return ctrl.Result{}, nil
}

// reconcileForeign tells a FederatedJob outside the operator's namespace
// why nothing happens to it. (Only an operator serving all namespaces sees
// one: its job records and blob store live in its own namespace.)
func (r *FederatedJobReconciler) reconcileForeign(ctx context.Context, req ctrl.Request) error {
	obj := &v1.FederatedJob{}
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := obj.DeepCopy()
	changed := meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: "NamespaceNotServed",
		Message:            fmt.Sprintf("FederatedJobs run in namespace %q, where the operator keeps their records and models", r.Jobs.ns),
		ObservedGeneration: obj.Generation,
	})
	if !changed {
		return nil
	}
	return client.IgnoreNotFound(r.Client.Status().Patch(ctx, obj, client.MergeFrom(before)))
}

// jobSpec converts the object's spec: the CRD's JSON field names are
// fl.JobSpec's by design.
func jobSpec(obj *v1.FederatedJob) (fl.JobSpec, error) {
	var spec fl.JobSpec
	b, err := json.Marshal(obj.Spec)
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	return spec, err
}

func (r *FederatedJobReconciler) reconcileAdmit(ctx context.Context, obj *v1.FederatedJob) (fl.Job, error) {
	if err := r.patchFinalizer(ctx, obj, true); err != nil {
		return fl.Job{}, err
	}
	spec, err := jobSpec(obj)
	if err != nil {
		return fl.Job{}, err
	}
	job, err := r.FL.CreateNamed(ctx, obj.Name, spec)
	if errors.Is(err, orchestration.ErrInvalid) {
		obj.Status.Phase = v1.FLFailed
		obj.Status.ObservedGeneration = obj.Generation
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
			Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: "InvalidSpec",
			Message: err.Error(), ObservedGeneration: obj.Generation,
		})
		r.Recorder.Eventf(obj, nil, "Warning", "InvalidSpec", "Admit", "%v", err)
		return fl.Job{}, r.patchFinalizer(ctx, obj, false)
	}
	if errors.Is(err, fl.ErrModelUnavailable) {
		// The registry may come back or the model be pushed: the error
		// requeues with backoff, and the condition says what is awaited.
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
			Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: "ModelUnavailable",
			Message: err.Error(), ObservedGeneration: obj.Generation,
		})
		r.Recorder.Eventf(obj, nil, "Warning", "ModelUnavailable", "Admit", "%v", err)
		return fl.Job{}, err
	}
	if err != nil {
		return fl.Job{}, err
	}
	r.Recorder.Eventf(obj, nil, "Normal", "Started", "Admit", "round 1 of %d", spec.Rounds.Total)
	return job, nil
}

func (r *FederatedJobReconciler) reconcileStatus(obj *v1.FederatedJob, job *fl.Job) {
	st := &obj.Status
	st.ObservedGeneration = obj.Generation
	st.Phase = v1.FLPhase(job.Status.Phase)
	st.CurrentRound = int32(job.Status.CurrentRound)
	st.CompletedRounds = int32(len(job.Status.Checkpoints))
	st.Progress = fmt.Sprintf("%d/%d", len(job.Status.Checkpoints), job.Spec.Rounds.Total)
	if n := len(job.Status.Checkpoints); n > 0 {
		st.LatestCheckpoint = checkpointName(obj.Name, job.Status.Checkpoints[n-1].Round)
		st.LatestMetric = headlineMetric(job.Status.Checkpoints[n-1].Metrics)
	}
	st.RejectedUpdates = int64(job.Status.RejectedTotal)
	if n := len(job.Status.Rejected); n > 0 {
		rj := job.Status.Rejected[n-1]
		st.LastRejected = fmt.Sprintf("%s: round %s task %s from %s", rj.Reason, rj.RoundID, rj.TaskID, rj.PropletID)
	}
	reason := cmpOrString(job.Status.Reason, string(job.Status.Phase))
	if !conditionReason.MatchString(reason) {
		reason = string(job.Status.Phase)
	}
	running := job.Status.Phase == fl.JobRunning
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1.ConditionProgressing, Status: condStatus(running), Reason: reason,
		Message: fmt.Sprintf("round %d of %d", job.Status.CurrentRound, job.Spec.Rounds.Total), ObservedGeneration: obj.Generation,
	})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1.ConditionReady, Status: condStatus(job.Status.Phase == fl.JobSucceeded), Reason: reason,
		Message: job.Status.Message, ObservedGeneration: obj.Generation,
	})
}

// headlineMetric is "accuracy=0.9583": accuracy when reported, else the
// first metric by name.
func headlineMetric(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	name := "accuracy"
	if _, ok := m[name]; !ok {
		name = slices.Sorted(maps.Keys(m))[0]
	}
	return name + "=" + strconv.FormatFloat(m[name], 'f', 4, 64)
}

func condStatus(ok bool) metav1.ConditionStatus {
	if ok {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

func cmpOrString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func roundName(job string, r *fl.Round) string {
	return fmt.Sprintf("%s-r%d-a%d", job, r.Number, r.Attempt)
}

func checkpointName(job string, round int) string { return fmt.Sprintf("%s-ckpt-%d", job, round) }

// reconcileRounds ensures one TrainingRound per round attempt the
// coordinator started (usually created already, with the round's first
// task, by RoundOwners) and mirrors the coordinator's facts about
// the round into the fields of its status this controller owns: phase,
// tasks, updatesReceived, updatesRejected, metrics, metric, reason,
// message, checkpoint, startedAt, completedAt. The TrainingRound
// controller owns the rest (participants, observedGeneration,
// conditions); each patch carries only its own fields.
func (r *FederatedJobReconciler) reconcileRounds(ctx context.Context, obj *v1.FederatedJob, job *fl.Job) error {
	rejected := map[string]int32{}
	for _, rj := range job.Status.Rejected {
		rejected[rj.RoundID]++
	}
	for i := range job.Status.Rounds {
		rd := &job.Status.Rounds[i]
		if len(rd.Participants) == 0 {
			continue // still choosing
		}
		tr := &v1.TrainingRound{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: roundName(obj.Name, rd)}, tr)
		if apierrors.IsNotFound(err) {
			tr, err = ensureTrainingRound(ctx, r.Client, r.Jobs.c, obj, job, rd)
		}
		if err != nil {
			return fmt.Errorf("training round %s: %w", roundName(obj.Name, rd), err)
		}
		before := tr.DeepCopy()
		mirrorRound(&tr.Status, obj.Name, rd, rejected[rd.ID])
		if !equality.Semantic.DeepEqual(before.Status, tr.Status) {
			if err := r.Client.Status().Patch(ctx, tr, client.MergeFrom(before)); err != nil {
				return fmt.Errorf("training round %s status: %w", tr.Name, err)
			}
		}
	}
	return nil
}

// mirrorRound writes the coordinator's round record into the status
// fields the FederatedJob controller owns. Rejections are counted among
// those the record keeps; the count never goes down.
func mirrorRound(st *v1.TrainingRoundStatus, job string, rd *fl.Round, rejected int32) {
	st.Phase = roundPhase(rd.Phase)
	st.UpdatesReceived = int32(len(rd.Updates))
	st.UpdatesRejected = max(st.UpdatesRejected, rejected)
	st.Tasks = nil
	for _, p := range rd.Participants {
		if p.TaskID != "" {
			st.Tasks = append(st.Tasks, p.TaskID)
		}
	}
	st.Metrics, st.Metric = nil, headlineMetric(rd.Metrics)
	if len(rd.Metrics) > 0 {
		st.Metrics = map[string]string{}
		for k, v := range rd.Metrics {
			st.Metrics[k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	st.Reason, st.Message = rd.Reason, rd.Message
	if rd.Checkpoint != "" {
		st.Checkpoint = checkpointName(job, rd.Number)
	}
	if !rd.StartedAt.IsZero() {
		t := metav1.NewTime(rd.StartedAt)
		st.StartedAt = &t
	}
	if !rd.ClosedAt.IsZero() {
		t := metav1.NewTime(rd.ClosedAt)
		st.CompletedAt = &t
	}
}

func roundPhase(p fl.RoundPhase) v1.FLPhase {
	switch p {
	case fl.RoundStarting:
		return v1.FLPending
	case fl.RoundRunning:
		return v1.FLRunning
	case fl.RoundFailed:
		return v1.FLFailed
	}
	return v1.FLSucceeded
}

// reconcileCheckpoints writes one ModelCheckpoint per closed round.
func (r *FederatedJobReconciler) reconcileCheckpoints(ctx context.Context, obj *v1.FederatedJob, job *fl.Job) error {
	for _, cp := range job.Status.Checkpoints {
		mc := &v1.ModelCheckpoint{ObjectMeta: metav1.ObjectMeta{Name: checkpointName(obj.Name, cp.Round), Namespace: obj.Namespace}}
		_, err := controllerutil.CreateOrUpdate(ctx, r.Client, mc, func() error {
			mc.Spec = v1.ModelCheckpointSpec{
				JobRef: v1.LocalObjectReference{Name: obj.Name}, Round: int32(cp.Round),
				ModelURI: wire.BlobScheme + cp.Digest, Digest: cp.Digest, SizeBytes: cp.Size, Format: "safetensors",
			}
			if len(cp.Metrics) > 0 {
				mc.Spec.Metrics = map[string]string{}
				for k, v := range cp.Metrics {
					mc.Spec.Metrics[k] = strconv.FormatFloat(v, 'g', -1, 64)
				}
			}
			return controllerutil.SetControllerReference(obj, mc, r.Client.Scheme())
		})
		if err != nil {
			return fmt.Errorf("model checkpoint %s: %w", mc.Name, err)
		}
		// The OCI push (ociRef, the Pushed condition) is the
		// ModelCheckpoint controller's; this one owns phase and
		// observedGeneration.
		before := mc.DeepCopy()
		mc.Status.Phase = v1.CheckpointAvailable
		mc.Status.ObservedGeneration = mc.Generation
		if !equality.Semantic.DeepEqual(before.Status, mc.Status) {
			if err := r.Client.Status().Patch(ctx, mc, client.MergeFrom(before)); err != nil {
				return fmt.Errorf("model checkpoint %s status: %w", mc.Name, err)
			}
		}
	}
	return nil
}

func (r *FederatedJobReconciler) reconcileDelete(ctx context.Context, obj *v1.FederatedJob) error {
	if !controllerutil.ContainsFinalizer(obj, JobFinalizer) {
		return nil
	}
	_, err := r.FL.Stop(ctx, obj.Name, "FederatedJob deleted")
	if err != nil && !errors.Is(err, orchestration.ErrTerminal) && !errors.Is(err, orchestration.ErrNotFound) {
		return err
	}
	return r.patchFinalizer(ctx, obj, false)
}

func (r *FederatedJobReconciler) patchFinalizer(ctx context.Context, obj *v1.FederatedJob, add bool) error {
	if controllerutil.ContainsFinalizer(obj, JobFinalizer) == add {
		return nil
	}
	before := obj.DeepCopy()
	if add {
		controllerutil.AddFinalizer(obj, JobFinalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, JobFinalizer)
	}
	// The patch response carries the old status; keep the one decided here.
	status := *obj.Status.DeepCopy()
	err := client.IgnoreNotFound(r.Client.Patch(ctx, obj, client.MergeFrom(before)))
	obj.Status = status
	return err
}

// SetupWithManager watches FederatedJobs and the coordinator's job
// records, which change as rounds progress.
func (r *FederatedJobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.FederatedJob{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, deletingPredicate()))).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			id := o.GetLabels()[flJobLabel]
			if id == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: id}}}
		})).
		Named("federatedjob").
		Complete(r)
}
