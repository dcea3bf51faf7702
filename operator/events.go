package operator

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// transitions turns the engine's commits into Kubernetes events, one per
// phase change, so `kubectl describe wasmtask` tells the task's story. It
// is the engine's Observer: it runs under the task's lock and must not
// block, which the recorder (buffered, dropping when full) guarantees.
type transitions struct {
	rec events.EventRecorder
	ns  string

	mu sync.Mutex
	// last is the phase and reason last reported per in-flight task.
	last map[string]string
}

func newTransitions(rec events.EventRecorder, ns string) *transitions {
	return &transitions{rec: rec, ns: ns, last: map[string]string{}}
}

func (tr *transitions) observe(t orchestration.Task) {
	ph := t.Status.Phase
	key := string(ph) + "/" + t.Status.Reason
	tr.mu.Lock()
	prev, seen := tr.last[t.ID]
	if ph.Terminal() {
		delete(tr.last, t.ID) // the map holds in-flight tasks only
	} else {
		tr.last[t.ID] = key
	}
	tr.mu.Unlock()
	if seen && prev == key {
		return
	}
	// A plain Pending (queued, no reason) says nothing the controller's
	// Admitted event does not, and every event is one more API write per
	// task; Pending with a reason (Unschedulable, a retry's backoff) is
	// still reported.
	if ph == orchestration.PhasePending && t.Status.Reason == "" {
		return
	}
	ref := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Name: t.ID, Namespace: tr.ns}}
	ref.SetGroupVersionKind(v1.GroupVersion.WithKind("WasmTask"))
	typ := "Normal"
	if ph == orchestration.PhaseFailed || t.Status.Reason == orchestration.ReasonUnschedulable {
		typ = "Warning"
	}
	note := string(ph)
	if t.Status.PropletID != "" {
		note += " on " + t.Status.PropletID
	}
	if t.Status.Message != "" {
		note += ": " + t.Status.Message
	}
	reason := string(ph)
	if t.Status.Reason != "" && conditionReason.MatchString(t.Status.Reason) {
		reason = t.Status.Reason
	}
	tr.rec.Eventf(ref, nil, typ, reason, "Orchestrate", "attempt %d: %s", t.Status.Attempt, note)
}
