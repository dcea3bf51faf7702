package operator

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// TestParticipantsWithoutTask: a participant whose task was never created
// is pending while its round is open and failed once the round ended.
func TestParticipantsWithoutTask(t *testing.T) {
	tr := &v1.TrainingRound{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job-r1-a0", UID: "round-uid"}}
	tr.Spec.Participants = []v1.Participant{{PropletID: "p1"}, {PropletID: "p2"}, {PropletID: "p3"}}
	done := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t1", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: v1.GroupVersion.String(), Kind: "TrainingRound", Name: tr.Name, UID: tr.UID, Controller: ptr.To(true),
	}}}}
	done.Status.Phase = v1.TaskSucceeded
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(done).
		WithIndex(&v1.WasmTask{}, roundOwnerIndex, roundOwner).Build()
	r := &TrainingRoundReconciler{Client: c}

	tr.Status.Phase = v1.FLRunning
	require.NoError(t, r.reconcileParticipants(t.Context(), tr))
	require.Equal(t, v1.RoundParticipants{Pending: 2, Succeeded: 1}, tr.Status.Participants)

	tr.Status.Phase = v1.FLSucceeded
	require.NoError(t, r.reconcileParticipants(t.Context(), tr))
	require.Equal(t, v1.RoundParticipants{Failed: 2, Succeeded: 1}, tr.Status.Participants)
}
