package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TaskPhase mirrors the engine's task phase.
// +kubebuilder:validation:Enum=Pending;Scheduled;Running;Succeeded;Failed;Cancelled
type TaskPhase string

// Task phases.
const (
	TaskPending   TaskPhase = "Pending"
	TaskScheduled TaskPhase = "Scheduled"
	TaskRunning   TaskPhase = "Running"
	TaskSucceeded TaskPhase = "Succeeded"
	TaskFailed    TaskPhase = "Failed"
	TaskCancelled TaskPhase = "Cancelled"
)

// WasmResources are the module's resource requests and limits.
// requests.memory places the task only on a proplet that offers a task at
// least that much memory; limits.memory caps the module's linear memory
// (rounded up to 64 KiB pages) when memoryPages is unset. CPU is not used.
type WasmResources struct {
	Requests corev1.ResourceList `json:"requests,omitempty"`
	Limits   corev1.ResourceList `json:"limits,omitempty"`
}

// WasmTaskSpec is what to run and where. Apart from suspend it does not
// change once the task is admitted: the engine ran (or is running) exactly
// this spec.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.propletId) && has(self.selector))",message="set propletId or selector, not both"
// +kubebuilder:validation:XValidation:rule="!(has(self.propletId) && has(self.propletGroupRef))",message="set propletId or propletGroupRef, not both"
type WasmTaskSpec struct {
	// ImageURL is where the module comes from: oci://, http(s)://, or
	// blob://sha256:<hex> for a module uploaded to the manager.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('oci://') || self.startsWith('http://') || self.startsWith('https://') || self.matches('^blob://sha256:[a-f0-9]+$')",message="imageUrl must start with oci://, http://, https:// or be blob://sha256:<hex>"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="imageUrl is immutable"
	ImageURL string `json:"imageUrl"`
	// Digest pins the module bytes: sha256:<64 hex>. The schema checks the
	// form; the engine checks the length when it admits the task.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]+$`
	Digest string `json:"digest,omitempty"`
	// DisplayName is a free-form name; the object name is the task id.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DisplayName string `json:"displayName,omitempty"`
	// Function is the exported function to call; empty runs _start.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Function string `json:"function,omitempty"`
	// Inputs are the function's numeric arguments.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Inputs []float64 `json:"inputs,omitempty"`
	// CLIArgs are the WASI command-line arguments (at most 256 KiB
	// together, checked on admission).
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	CLIArgs []string `json:"cliArgs,omitempty"`
	// Env is the WASI environment. ROUND_ID plus MODEL_URI make the task a
	// federated-learning training task. Names up to 256 bytes, names and
	// values at most 256 KiB together (checked on admission).
	// +optional
	// +kubebuilder:validation:MaxProperties=1024
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '' && !k.contains('='))",message="env keys must be non-empty and contain no '='"
	Env map[string]string `json:"env,omitempty"`
	// Labels are the engine's task labels (any strings); metadata.labels
	// stay the user's.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Resources *WasmResources `json:"resources,omitempty"`
	// TimeoutSeconds bounds one attempt; 0 takes the manager's default.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=604800
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// MaxAttempts caps retries; 0 takes the manager's default.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// MemoryPages caps linear memory in 64 KiB pages.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65536
	MemoryPages int64 `json:"memoryPages,omitempty"`
	// PropletID pins the task to one proplet.
	// +optional
	PropletID string `json:"propletId,omitempty"`
	// PropletGroupRef restricts scheduling to a PropletGroup's proplets:
	// its selector and its propletIds (both, when it has both) are
	// resolved into status.selector and status.propletIds when the task
	// is admitted.
	// +optional
	PropletGroupRef *LocalObjectReference `json:"propletGroupRef,omitempty"`
	// Selector restricts scheduling to proplets carrying all these labels.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Selector map[string]string `json:"selector,omitempty"`
	// Suspend holds a task before it is scheduled; clearing it releases
	// the task. It cannot pause a task that already runs.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// WasmTaskStatus mirrors the engine's task status, plus conditions.
type WasmTaskStatus struct {
	// Phase is empty until the operator admitted the task.
	// +optional
	Phase TaskPhase `json:"phase,omitempty"`
	// Held is the engine's view of suspend: true while the task waits to
	// be released.
	// +optional
	Held bool `json:"held,omitempty"`
	// Selector is the placement selector the engine uses: spec.selector,
	// or the PropletGroup's selector, resolved when the task is admitted.
	// +optional
	Selector map[string]string `json:"selector,omitempty"`
	// PropletIDs is the candidate set the engine places on: the
	// PropletGroup's propletIds, resolved when the task is admitted, so a
	// later edit of the group does not move the task. Empty: any proplet
	// (that matches selector).
	// +optional
	// +listType=atomic
	PropletIDs []string `json:"propletIds,omitempty"`
	// PropletID is the proplet of the current attempt.
	// +optional
	PropletID string `json:"propletId,omitempty"`
	// Attempt counts dispatches.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Results []float64 `json:"results,omitempty"`
	// +optional
	Stdout string `json:"stdout,omitempty"`
	// +optional
	Stderr string `json:"stderr,omitempty"`
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// +optional
	CreatedAt *metav1.MicroTime `json:"createdAt,omitempty"`
	// +optional
	UpdatedAt *metav1.MicroTime `json:"updatedAt,omitempty"`
	// +optional
	ScheduledAt *metav1.MicroTime `json:"scheduledAt,omitempty"`
	// +optional
	StartedAt *metav1.MicroTime `json:"startedAt,omitempty"`
	// +optional
	FinishedAt *metav1.MicroTime `json:"finishedAt,omitempty"`
	// NotBefore delays the next attempt (retry backoff).
	// +optional
	NotBefore *metav1.MicroTime `json:"notBefore,omitempty"`
	// Deadline is when the engine gives up on the current attempt.
	// +optional
	Deadline *metav1.MicroTime `json:"deadline,omitempty"`

	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// WasmTask is one WebAssembly workload; its name is the engine's task id.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wt,categories=propeller
// +kubebuilder:selectablefield:JSONPath=`.status.phase`
// +kubebuilder:selectablefield:JSONPath=`.status.propletId`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Proplet",type=string,JSONPath=`.status.propletId`
// +kubebuilder:printcolumn:name="Attempt",type=integer,JSONPath=`.status.attempt`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.imageUrl`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WasmTask struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec WasmTaskSpec `json:"spec"`
	// +optional
	Status WasmTaskStatus `json:"status,omitempty"`
}

// WasmTaskList is a list of WasmTasks.
//
// +kubebuilder:object:root=true
type WasmTaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WasmTask `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WasmTask{}, &WasmTaskList{})
}

// Terminal reports whether no further transition can leave p.
func (p TaskPhase) Terminal() bool {
	return p == TaskSucceeded || p == TaskFailed || p == TaskCancelled
}
