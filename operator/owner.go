package operator

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// Owner references run down the chain FederatedJob -> TrainingRound ->
// WasmTask (and FederatedJob -> ModelCheckpoint), so deleting the job
// collects everything.
//
// The coordinator persists a round (its record in fljob-<job>) before it
// submits the round's tasks, but no TrainingRound object exists yet at
// that moment. setOwner therefore creates-or-gets the round object when
// the first of its tasks is created (from the task's fl-job and fl-round
// labels and the job record), and the task is created owned by it. The
// FederatedJob controller ensures the same object (for a round whose
// tasks were all refused), and either may come first.

// setOwner makes a federated-learning task owned (controller reference)
// by its TrainingRound, creating the round object if it does not exist
// yet. A task whose job has no FederatedJob object (a job run without
// one: tests, REST) gets no owner.
func (s *Store) setOwner(ctx context.Context, obj *v1.WasmTask, t orchestration.Task) error {
	job, rid := t.Spec.Labels[fl.LabelJob], t.Spec.Labels[fl.LabelRound]
	if job == "" || checkID(job) != nil {
		return nil
	}
	var owner client.Object
	if name, ok := roundObjectName(job, rid); ok {
		tr := &v1.TrainingRound{}
		err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, tr)
		switch {
		case err == nil:
			owner = tr
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("owner of task %s: %w", t.ID, mapErr(err))
		}
	}
	if owner == nil {
		fj := &v1.FederatedJob{}
		err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: job}, fj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("owner of task %s: %w", t.ID, mapErr(err))
		}
		owner = fj // the round is not in the record (should not happen)
		if tr, err := s.ensureRound(ctx, fj, rid); err != nil {
			return fmt.Errorf("owner of task %s: %w", t.ID, err)
		} else if tr != nil {
			owner = tr
		}
	}
	obj.OwnerReferences = nil
	return controllerutil.SetControllerReference(owner, obj, s.c.Scheme())
}

// ensureRound creates (or gets) the TrainingRound of round rid from the
// job record; nil when the record has no such round.
func (s *Store) ensureRound(ctx context.Context, fj *v1.FederatedJob, rid string) (*v1.TrainingRound, error) {
	j, err := NewFLStore(s.c, s.ns).GetJob(ctx, fj.Name)
	if err != nil {
		return nil, err
	}
	for i := range j.Status.Rounds {
		if rd := &j.Status.Rounds[i]; rd.ID == rid {
			return ensureTrainingRound(ctx, s.c, s.c, fj, &j, rd)
		}
	}
	return nil, nil
}

// ensureTrainingRound creates round rd's TrainingRound, owned by fj,
// unless it exists; live reads the API server when the create finds one
// (c may be a cache that has not seen it yet).
func ensureTrainingRound(ctx context.Context, c client.Client, live client.Reader, fj *v1.FederatedJob, j *fl.Job, rd *fl.Round) (*v1.TrainingRound, error) {
	tr := newTrainingRound(fj, j, rd)
	if err := controllerutil.SetControllerReference(fj, tr, c.Scheme()); err != nil {
		return nil, err
	}
	err := c.Create(ctx, tr)
	if apierrors.IsAlreadyExists(err) {
		err = live.Get(ctx, client.ObjectKeyFromObject(tr), tr)
	}
	if err != nil {
		return nil, fmt.Errorf("training round %s: %w", tr.Name, mapErr(err))
	}
	return tr, nil
}

// newTrainingRound is round rd's object, spec from the job record.
func newTrainingRound(fj *v1.FederatedJob, j *fl.Job, rd *fl.Round) *v1.TrainingRound {
	tr := &v1.TrainingRound{ObjectMeta: metav1.ObjectMeta{Name: roundName(fj.Name, rd), Namespace: fj.Namespace}}
	tr.Spec = v1.TrainingRoundSpec{
		JobRef: v1.LocalObjectReference{Name: fj.Name}, RoundID: rd.ID, Number: int32(rd.Number),
		ModelURI: rd.ModelURI, TaskWasmImage: j.Spec.TaskWasmImage,
		KOfN: int32(max(rd.KOfN, 1)), TimeoutSeconds: int64(j.Spec.TimeoutSeconds),
		Hyperparams: fj.Spec.Hyperparams,
	}
	for _, p := range rd.Participants {
		tr.Spec.Participants = append(tr.Spec.Participants, v1.Participant{PropletID: p.PropletID})
	}
	return tr
}

// roundObjectName is the TrainingRound name of the coordinator's round
// id ("<n>" for a first attempt, "<n>.<attempt>" for a retry), as
// roundName spells it.
func roundObjectName(job, rid string) (string, bool) {
	n, a, found := strings.Cut(rid, ".")
	number, err := strconv.Atoi(n)
	if err != nil || number < 1 {
		return "", false
	}
	attempt := 0
	if found {
		if attempt, err = strconv.Atoi(a); err != nil || attempt < 0 {
			return "", false
		}
	}
	return roundName(job, &fl.Round{Number: number, Attempt: attempt}), true
}
