package operator

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// +kubebuilder:rbac:groups=propeller.absmach.io,resources=trainingrounds,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=trainingrounds/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=wasmtasks,verbs=get;list;watch

// roundOwnerIndex indexes cached WasmTasks by the name of the
// TrainingRound that is their controller.
const roundOwnerIndex = ".metadata.controller.trainingRound"

// TrainingRoundReconciler summarises a round's WasmTasks (the tasks it
// owns, read from the cache) in the round's status and computes its
// conditions. It owns status.participants, observedGeneration and
// conditions; the FederatedJob controller writes the coordinator's facts
// (phase, updates, metrics, checkpoint, times), which the conditions
// summarise too.
type TrainingRoundReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// Reconcile recomputes one TrainingRound's task summary and conditions.
func (r *TrainingRoundReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	tr := &v1.TrainingRound{}
	if err := r.Client.Get(ctx, req.NamespacedName, tr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tr.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, tr.Status) {
			return
		}
		err := r.Client.Status().Patch(ctx, tr, client.MergeFrom(before))
		if err != nil {
			if !apierrors.IsNotFound(err) {
				retErr = errors.Join(retErr, err)
			}
			return
		}
		r.recordTransitions(before, tr)
	}()
	if err := r.reconcileParticipants(ctx, tr); err != nil {
		return ctrl.Result{}, err
	}
	tr.Status.ObservedGeneration = tr.Generation
	setRoundConditions(tr)
	return ctrl.Result{}, nil
}

// roundOwner indexes a WasmTask by the TrainingRound that controls it.
func roundOwner(o client.Object) []string {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "TrainingRound" || ref.APIVersion != v1.GroupVersion.String() {
		return nil
	}
	return []string{ref.Name}
}

// reconcileParticipants counts the round's participants by their task's
// phase; a participant without a task is pending while the round is open
// and failed once it ended (it never contributed).
func (r *TrainingRoundReconciler) reconcileParticipants(ctx context.Context, tr *v1.TrainingRound) error {
	tasks := &v1.WasmTaskList{}
	if err := r.Client.List(ctx, tasks, client.InNamespace(tr.Namespace), client.MatchingFields{roundOwnerIndex: tr.Name}); err != nil {
		return fmt.Errorf("tasks of training round %s: %w", tr.Name, err)
	}
	var c v1.RoundParticipants
	for i := range tasks.Items {
		switch tasks.Items[i].Status.Phase {
		case v1.TaskRunning:
			c.Running++
		case v1.TaskSucceeded:
			c.Succeeded++
		case v1.TaskFailed, v1.TaskCancelled:
			c.Failed++
		default:
			c.Pending++
		}
	}
	missing := max(0, int32(len(tr.Spec.Participants)-len(tasks.Items)))
	if _, ended := roundState(tr); ended {
		c.Failed += missing
	} else {
		c.Pending += missing
	}
	tr.Status.Participants = c
	return nil
}

// roundState is what the conditions and events say about a round: one
// reason per coordinator phase.
func roundState(tr *v1.TrainingRound) (reason string, terminal bool) {
	switch tr.Status.Phase {
	case v1.FLRunning:
		return "Running", false
	case v1.FLSucceeded:
		return "Closed", true
	case v1.FLFailed:
		return cmpOrString(validReason(tr.Status.Reason), "Failed"), true
	case v1.FLStopped:
		return "Stopped", true
	}
	return "Starting", false
}

func validReason(s string) string {
	if conditionReason.MatchString(s) {
		return s
	}
	return ""
}

// setRoundConditions is the one place a round's conditions are computed,
// from the coordinator's phase and the task summary:
// Progressing (True while the round starts or runs) and Ready (True once
// it closed and its checkpoint was written).
func setRoundConditions(tr *v1.TrainingRound) {
	st := &tr.Status
	reason, terminal := roundState(tr)
	p := st.Participants
	tasks := fmt.Sprintf("%d of %d participants pending, %d running, %d succeeded, %d failed; %d of %d updates accepted",
		p.Pending, len(tr.Spec.Participants), p.Running, p.Succeeded, p.Failed, st.UpdatesReceived, tr.Spec.KOfN)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1.ConditionProgressing, Status: condStatus(!terminal), Reason: reason,
		Message: tasks, ObservedGeneration: tr.Generation,
	})
	ready := metav1.Condition{
		Type: v1.ConditionReady, Status: condStatus(st.Phase == v1.FLSucceeded), Reason: reason,
		Message: cmpOrString(st.Message, tasks), ObservedGeneration: tr.Generation,
	}
	if st.Phase == v1.FLSucceeded {
		ready.Message = fmt.Sprintf("closed with %d updates; checkpoint %s", st.UpdatesReceived, st.Checkpoint)
		if st.Metric != "" {
			ready.Message += ", " + st.Metric
		}
	}
	meta.SetStatusCondition(&st.Conditions, ready)
}

// recordTransitions records an event when the round changes state
// (Running, Closed, Failed...) and when more of its participants' tasks
// have failed.
func (r *TrainingRoundReconciler) recordTransitions(before, tr *v1.TrainingRound) {
	if r.Recorder == nil {
		return
	}
	reason, _ := roundState(tr)
	if old := meta.FindStatusCondition(before.Status.Conditions, v1.ConditionProgressing); old == nil || old.Reason != reason {
		typ := "Normal"
		if tr.Status.Phase == v1.FLFailed {
			typ = "Warning"
		}
		if reason != "Starting" || old != nil {
			c := meta.FindStatusCondition(tr.Status.Conditions, v1.ConditionReady)
			r.Recorder.Eventf(tr, nil, typ, reason, "Round", "round %d: %s", tr.Spec.Number, c.Message)
		}
	}
	if n := tr.Status.Participants.Failed; n > before.Status.Participants.Failed {
		r.Recorder.Eventf(tr, nil, "Warning", "ParticipantFailed", "Round", "%d of %d participants' tasks failed", n, len(tr.Spec.Participants))
	}
}

// SetupWithManager watches TrainingRounds and the WasmTasks they own,
// indexed by owner so a round lists its tasks from the cache.
func (r *TrainingRoundReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1.WasmTask{}, roundOwnerIndex, roundOwner)
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.TrainingRound{}).
		Owns(&v1.WasmTask{}).
		Named("traininground").
		Complete(r)
}
