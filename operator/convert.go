package operator

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// labelIndexPrefix marks the metadata labels the store derives from the
// task labels (spec.labels). Task labels are arbitrary strings, which
// Kubernetes label keys and values are not, so each pair is indexed under
// hashes and ListTasks can still filter on the API server; the store
// re-checks the real pair, so a hash collision cannot leak a task.
const labelIndexPrefix = "l.propeller.absmach.io/"

func hash32(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

func indexLabelKey(k string) string { return labelIndexPrefix + hash32(k) }

// setIndexLabels replaces the store's index labels on obj, keeping the
// user's own metadata.labels.
func setIndexLabels(obj *v1.WasmTask, taskLabels map[string]string) {
	var out map[string]string
	for k, v := range obj.Labels {
		if !strings.HasPrefix(k, labelIndexPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	for k, v := range taskLabels {
		if out == nil {
			out = map[string]string{}
		}
		out[indexLabelKey(k)] = hash32(v)
	}
	obj.Labels = out
}

func microTime(t time.Time) *metav1.MicroTime {
	if t.IsZero() {
		return nil
	}
	m := metav1.NewMicroTime(t.UTC())
	return &m
}

func fromMicro(m *metav1.MicroTime) time.Time {
	if m == nil || m.IsZero() {
		return time.Time{}
	}
	return m.UTC()
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// timeoutSeconds rounds up: an attempt never gets less time than asked.
func timeoutSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// applySpec writes the engine-owned spec fields of t into obj. Suspend,
// Selector and PropletIDs are not among them: the user owns spec.suspend,
// spec.selector and spec.propletGroupRef, the engine's view of them lives
// in status (held, selector, propletIds), written by applyStatus.
func applySpec(obj *v1.WasmTask, s orchestration.TaskSpec) {
	obj.Spec.DisplayName = s.Name
	obj.Spec.ImageURL = s.Image
	obj.Spec.Digest = s.Digest
	obj.Spec.Function = s.Function
	obj.Spec.Inputs = cloneSlice(s.Inputs)
	obj.Spec.CLIArgs = cloneSlice(s.CLIArgs)
	obj.Spec.Env = cloneMap(s.Env)
	obj.Spec.Labels = cloneMap(s.Labels)
	obj.Spec.PropletID = s.PropletID
	obj.Spec.TimeoutSeconds = timeoutSeconds(s.Timeout)
	obj.Spec.MaxAttempts = int32(s.MaxAttempts)
	// Written only when they differ from what the object already says,
	// so a user's resources block round-trips without a spec write.
	if memoryPages(obj.Spec) != s.MemoryPages {
		obj.Spec.MemoryPages = int64(s.MemoryPages)
	}
	if memoryRequest(obj.Spec) != s.MemoryBytes {
		setMemoryRequest(&obj.Spec, s.MemoryBytes)
	}
	setIndexLabels(obj, s.Labels)
}

// wasmPage is the WebAssembly page size; maxPages the 32-bit maximum.
const (
	wasmPage = 64 << 10
	maxPages = 65536
)

// memoryRequest is resources.requests.memory in bytes: where the task may
// be placed (orchestration.TaskSpec.MemoryBytes).
func memoryRequest(sp v1.WasmTaskSpec) int64 {
	if sp.Resources == nil {
		return 0
	}
	if q, ok := sp.Resources.Requests[corev1.ResourceMemory]; ok {
		return max(q.Value(), 0)
	}
	return 0
}

// memoryPages is the linear-memory cap: memoryPages, else
// resources.limits.memory in whole pages, rounded up.
func memoryPages(sp v1.WasmTaskSpec) uint32 {
	if sp.MemoryPages > 0 || sp.Resources == nil {
		return uint32(sp.MemoryPages)
	}
	q, ok := sp.Resources.Limits[corev1.ResourceMemory]
	if !ok || q.Value() <= 0 {
		return 0
	}
	return uint32(min((q.Value()+wasmPage-1)/wasmPage, maxPages))
}

func setMemoryRequest(sp *v1.WasmTaskSpec, b int64) {
	if b == 0 {
		if sp.Resources != nil {
			delete(sp.Resources.Requests, corev1.ResourceMemory)
		}
		return
	}
	if sp.Resources == nil {
		sp.Resources = &v1.WasmResources{}
	}
	if sp.Resources.Requests == nil {
		sp.Resources.Requests = corev1.ResourceList{}
	}
	sp.Resources.Requests[corev1.ResourceMemory] = *resource.NewQuantity(b, resource.BinarySI)
}

func applyStatus(obj *v1.WasmTask, t orchestration.Task) {
	st := &obj.Status
	s := t.Status
	st.Phase = v1.TaskPhase(s.Phase)
	st.Held = t.Spec.Suspend
	st.Selector = cloneMap(t.Spec.Selector)
	st.PropletIDs = cloneSlice(t.Spec.PropletIDs)
	st.PropletID = s.PropletID
	st.Attempt = int32(s.Attempt)
	st.Reason = s.Reason
	st.Message = s.Message
	st.Results = cloneSlice(s.Results)
	st.Stdout = s.Stdout
	st.Stderr = s.Stderr
	st.ExitCode = nil
	if s.ExitCode != nil {
		c := int32(*s.ExitCode)
		st.ExitCode = &c
	}
	st.CreatedAt = microTime(s.CreatedAt)
	st.UpdatedAt = microTime(s.UpdatedAt)
	st.ScheduledAt = microTime(s.ScheduledAt)
	st.StartedAt = microTime(s.StartedAt)
	st.FinishedAt = microTime(s.FinishedAt)
	st.NotBefore = microTime(s.NotBefore)
	st.Deadline = microTime(s.Deadline)
	st.ObservedGeneration = obj.Generation
	setTaskConditions(obj)
}

// conditionReason is what the API server accepts as a condition reason;
// proplets may report others, which then stay in status.reason only.
var conditionReason = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// setTaskConditions derives the conditions from the phase. They are written
// in the same status write as the phase, so a reader never sees the two
// disagree and a transition costs one write, not two.
func setTaskConditions(obj *v1.WasmTask) {
	st := &obj.Status
	gen := obj.Generation
	cond := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen,
		})
	}
	reason := st.Reason
	if !conditionReason.MatchString(reason) {
		reason = string(st.Phase)
	}
	switch st.Phase {
	case v1.TaskPending:
		cond(v1.ConditionScheduled, false, reason, st.Message)
		cond(v1.ConditionProgressing, !st.Held, reason, st.Message)
		cond(v1.ConditionReady, false, reason, st.Message)
	case v1.TaskScheduled, v1.TaskRunning:
		msg := "attempt on proplet " + st.PropletID
		cond(v1.ConditionScheduled, true, string(st.Phase), msg)
		cond(v1.ConditionProgressing, true, string(st.Phase), msg)
		cond(v1.ConditionReady, false, string(st.Phase), msg)
	case v1.TaskSucceeded:
		cond(v1.ConditionProgressing, false, reason, st.Message)
		cond(v1.ConditionReady, true, reason, st.Message)
	case v1.TaskFailed, v1.TaskCancelled:
		cond(v1.ConditionProgressing, false, reason, st.Message)
		cond(v1.ConditionReady, false, reason, st.Message)
	}
}

// newObject is the WasmTask a new engine task becomes.
func newObject(namespace string, t orchestration.Task) *v1.WasmTask {
	obj := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Name: t.ID, Namespace: namespace}}
	applySpec(obj, t.Spec)
	obj.Spec.Suspend = t.Spec.Suspend
	// The schema refuses a pin together with a selector; the engine's view
	// (status.selector) keeps both whatever the spec shows.
	if t.Spec.PropletID == "" {
		obj.Spec.Selector = cloneMap(t.Spec.Selector)
	}
	applyStatus(obj, t)
	return obj
}

// admitted reports whether the engine has seen the object. A WasmTask
// created with kubectl has no status until the controller admits it.
func admitted(obj *v1.WasmTask) bool { return obj.Status.Phase != "" }

// toTask is the engine's view of obj. Every call returns fresh maps and
// slices, so callers may mutate the result freely.
//
// A WasmTask the engine has not admitted yet reads as a suspended Pending
// task: the controller releases it with Engine.Start, which is how a
// kubectl-created object enters the engine's queue without a second id.
func toTask(obj *v1.WasmTask) orchestration.Task {
	sp := obj.Spec
	t := orchestration.Task{
		ID: obj.Name,
		Spec: orchestration.TaskSpec{
			Name:        sp.DisplayName,
			Image:       sp.ImageURL,
			Digest:      sp.Digest,
			Function:    sp.Function,
			Inputs:      cloneSlice(sp.Inputs),
			CLIArgs:     cloneSlice(sp.CLIArgs),
			Env:         cloneMap(sp.Env),
			Labels:      cloneMap(sp.Labels),
			PropletID:   sp.PropletID,
			Timeout:     specTimeout(sp.TimeoutSeconds),
			MaxAttempts: int(sp.MaxAttempts),
			MemoryPages: memoryPages(sp),
			MemoryBytes: memoryRequest(sp),
		},
	}
	if !admitted(obj) {
		created := obj.CreationTimestamp.UTC()
		t.Spec.Suspend = true
		t.Spec.Selector = cloneMap(sp.Selector)
		t.Status = orchestration.TaskStatus{
			Phase:     orchestration.PhasePending,
			Reason:    orchestration.ReasonSuspended,
			CreatedAt: created,
			UpdatedAt: created,
		}
		return t
	}
	st := obj.Status
	t.Spec.Suspend = st.Held
	t.Spec.Selector = cloneMap(st.Selector)
	t.Spec.PropletIDs = cloneSlice(st.PropletIDs)
	t.Status = orchestration.TaskStatus{
		Phase:       orchestration.Phase(st.Phase),
		PropletID:   st.PropletID,
		Attempt:     int(st.Attempt),
		Reason:      st.Reason,
		Message:     st.Message,
		Results:     cloneSlice(st.Results),
		Stdout:      st.Stdout,
		Stderr:      st.Stderr,
		CreatedAt:   fromMicro(st.CreatedAt),
		UpdatedAt:   fromMicro(st.UpdatedAt),
		ScheduledAt: fromMicro(st.ScheduledAt),
		StartedAt:   fromMicro(st.StartedAt),
		FinishedAt:  fromMicro(st.FinishedAt),
		NotBefore:   fromMicro(st.NotBefore),
		Deadline:    fromMicro(st.Deadline),
	}
	if st.ExitCode != nil {
		c := int(*st.ExitCode)
		t.Status.ExitCode = &c
	}
	return t
}

// specTimeout converts timeoutSeconds without overflowing: a value past
// orchestration.MaxTimeout (which the CRD schema refuses, but an object
// stored before it may carry) becomes one ValidateSpec refuses, instead of
// wrapping into an arbitrary duration.
func specTimeout(sec int64) time.Duration {
	if sec < 0 || sec > int64(orchestration.MaxTimeout/time.Second) {
		return orchestration.MaxTimeout + time.Second
	}
	return time.Duration(sec) * time.Second
}
