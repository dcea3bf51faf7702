package operator

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
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
// that moment. RoundOwners therefore creates-or-gets the round object when
// the first of its tasks is created (from the task's fl-job and fl-round
// labels and the job record), and the task is created owned by it. The
// FederatedJob controller ensures the same object (for a round whose
// tasks were all refused), and either may come first.

// RoundOwners is the store's Owners for federated learning: a task of an
// FL round (labels fl-job and fl-round) is owned by its TrainingRound, a
// task of a job that has no FederatedJob object (a job run without one:
// tests, REST) by nothing.
type RoundOwners struct {
	c  client.Client
	ns string
}

// NewRoundOwners resolves the owners of tasks in namespace ns, where the
// FederatedJobs, their records and their rounds live. c should read from
// the API server: a round object just created must be found.
func NewRoundOwners(c client.Client, ns string) *RoundOwners { return &RoundOwners{c: c, ns: ns} }

// Owner returns the TrainingRound of t's round as its controller, creating
// the round object if it does not exist yet.
func (o *RoundOwners) Owner(ctx context.Context, t orchestration.Task) (*metav1.OwnerReference, error) {
	job, rid := t.Spec.Labels[fl.LabelJob], t.Spec.Labels[fl.LabelRound]
	if job == "" || checkID(job) != nil {
		return nil, nil
	}
	var owner client.Object
	if name, ok := roundObjectName(job, rid); ok {
		tr := &v1.TrainingRound{}
		err := o.c.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: name}, tr)
		switch {
		case err == nil:
			owner = tr
		case !apierrors.IsNotFound(err):
			return nil, mapErr(err)
		}
	}
	if owner == nil {
		fj := &v1.FederatedJob{}
		err := o.c.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: job}, fj)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, mapErr(err)
		}
		owner = fj // the round is not in the record (should not happen)
		if tr, err := o.ensureRound(ctx, fj, rid); err != nil {
			return nil, err
		} else if tr != nil {
			owner = tr
		}
	}
	gvk, err := apiutil.GVKForObject(owner, o.c.Scheme())
	if err != nil {
		return nil, err
	}
	return metav1.NewControllerRef(owner, gvk), nil
}

// ensureRound creates (or gets) the TrainingRound of round rid from the
// job record; nil when the record has no such round.
func (o *RoundOwners) ensureRound(ctx context.Context, fj *v1.FederatedJob, rid string) (*v1.TrainingRound, error) {
	j, err := NewFLStore(o.c, o.ns).GetJob(ctx, fj.Name)
	if err != nil {
		return nil, err
	}
	for i := range j.Status.Rounds {
		if rd := &j.Status.Rounds[i]; rd.ID == rid {
			return ensureTrainingRound(ctx, o.c, o.c, fj, &j, rd)
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
