package operator

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// setOwner makes a federated-learning task owned by its FederatedJob, so
// deleting the job collects its tasks. (Its TrainingRound is written after
// the task exists, so the job is the owner the task can name at creation.)
func (s *Store) setOwner(ctx context.Context, obj *v1.WasmTask, t orchestration.Task) error {
	job := t.Spec.Labels[fl.LabelJob]
	if job == "" || checkID(job) != nil {
		return nil
	}
	fj := &v1.FederatedJob{}
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: job}, fj)
	if apierrors.IsNotFound(err) {
		return nil // a job run without its object (tests, REST): no owner
	}
	if err != nil {
		return fmt.Errorf("owner of task %s: %w", t.ID, mapErr(err))
	}
	obj.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: v1.GroupVersion.String(), Kind: "FederatedJob", Name: fj.Name, UID: fj.UID,
	}}
	return nil
}
