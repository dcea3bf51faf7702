package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FLPhase is the phase of a FederatedJob or TrainingRound.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Stopped
type FLPhase string

// FL phases.
const (
	FLPending   FLPhase = "Pending"
	FLRunning   FLPhase = "Running"
	FLSucceeded FLPhase = "Succeeded"
	FLFailed    FLPhase = "Failed"
	FLStopped   FLPhase = "Stopped"
)

// Participant is a proplet taking part in training.
type Participant struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	PropletID string `json:"propletId"`
	// Hyperparams are merged over the job's for this participant only
	// (say, its data shard).
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Hyperparams *apiextensionsv1.JSON `json:"hyperparams,omitempty"`
}

// TargetMetric ends a job early once a round's aggregated metric reaches
// Value.
type TargetMetric struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +required
	Value float64 `json:"value"`
	// +optional
	// +kubebuilder:validation:Enum=max;min
	Mode string `json:"mode,omitempty"`
}

// Rounds says when a job is done.
type Rounds struct {
	// +required
	// +kubebuilder:validation:Minimum=1
	Total int32 `json:"total"`
	// +optional
	TargetMetric *TargetMetric `json:"targetMetric,omitempty"`
}

// Aggregator names the update aggregation (orchestration/fl/aggregate).
type Aggregator struct {
	// +required
	// +kubebuilder:validation:Enum=fedavg;fedavgm;fedadam;fedmedian;trimmedmean
	Algorithm string `json:"algorithm"`
	// Config tunes the algorithm; unknown keys are refused when the job
	// starts.
	// +optional
	Config map[string]float64 `json:"config,omitempty"`
}

// FailurePolicy decides what a round that failed (too few updates by its
// deadline) does to the job.
type FailurePolicy struct {
	// +optional
	// +kubebuilder:validation:Enum=retry;fail
	Action string `json:"action,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxRetries int32 `json:"maxRetries,omitempty"`
}

// FederatedJobSpec is one federated-learning experiment. Its JSON field
// names are those of orchestration/fl.JobSpec.
//
// +kubebuilder:validation:XValidation:rule="has(self.participants) || has(self.selector)",message="set participants or selector"
// +kubebuilder:validation:XValidation:rule="!has(self.participants) || !has(self.kOfN) || self.kOfN <= size(self.participants)",message="kOfN must not exceed the number of participants"
type FederatedJobSpec struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	ExperimentID string `json:"experimentId"`
	// ModelRef is the initial global model.
	// +required
	// +kubebuilder:validation:MinLength=1
	ModelRef string `json:"modelRef"`
	// TaskWasmImage is the training module every participant runs.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.startsWith('oci://') || self.startsWith('http://') || self.startsWith('https://') || self.matches('^blob://sha256:[a-f0-9]{64}$')",message="taskWasmImage must start with oci://, http://, https:// or be blob://sha256:<64 hex>"
	TaskWasmImage string `json:"taskWasmImage"`
	// Participants lists the clients; without it Selector picks Count
	// (or Fraction) of the live proplets matching it, rotating per round.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +listType=map
	// +listMapKey=propletId
	Participants []Participant `json:"participants,omitempty"`
	// +optional
	Selector map[string]string `json:"selector,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	Count int32 `json:"count,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Fraction float64 `json:"fraction,omitempty"`
	// KOfN updates close a round; default all participants.
	// +optional
	// +kubebuilder:validation:Minimum=1
	KOfN int32 `json:"kOfN,omitempty"`
	// MinUpdates is what a round needs at its deadline to close rather
	// than fail; default 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MinUpdates int32 `json:"minUpdates,omitempty"`
	// TimeoutSeconds is a round's deadline and each training task's timeout.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=300
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// +required
	Rounds Rounds `json:"rounds"`
	// +required
	Aggregator Aggregator `json:"aggregator"`
	// Hyperparams reach each training task as HYPERPARAMS (JSON).
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Hyperparams *apiextensionsv1.JSON `json:"hyperparams,omitempty"`
	// +optional
	OnRoundFailure *FailurePolicy `json:"onRoundFailure,omitempty"`
	// MemoryPages caps each training module's memory (64 KiB pages).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65536
	MemoryPages int64 `json:"memoryPages,omitempty"`
}

// FederatedJobStatus tracks rounds and the latest model.
type FederatedJobStatus struct {
	// +optional
	Phase FLPhase `json:"phase,omitempty"`
	// CurrentRound is the round under way, from 1.
	// +optional
	CurrentRound int32 `json:"currentRound,omitempty"`
	// +optional
	CompletedRounds int32 `json:"completedRounds,omitempty"`
	// LatestCheckpoint names the newest ModelCheckpoint.
	// +optional
	LatestCheckpoint string `json:"latestCheckpoint,omitempty"`
	// Progress is "completed/total" rounds, for `kubectl get`.
	// +optional
	Progress string `json:"progress,omitempty"`
	// LatestMetric is the newest checkpoint's headline metric, say
	// "accuracy=0.9583" (accuracy when reported, else the first by name).
	// +optional
	LatestMetric string `json:"latestMetric,omitempty"`
	// RejectedUpdates counts updates the coordinator refused (late,
	// duplicate, unknown task, invalid); the job record keeps the latest.
	// +optional
	RejectedUpdates int64 `json:"rejectedUpdates,omitempty"`
	// LastRejected describes the newest refused update, say
	// "LateUpdate: round 1 task t-3 from p3".
	// +optional
	LastRejected string `json:"lastRejected,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FederatedJob trains a model over rounds of WasmTasks.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fj,categories=propeller
// +kubebuilder:printcolumn:name="Experiment",type=string,JSONPath=`.spec.experimentId`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Round",type=integer,JSONPath=`.status.currentRound`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.spec.rounds.total`
// +kubebuilder:printcolumn:name="Done",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Metric",type=string,JSONPath=`.status.latestMetric`
// +kubebuilder:printcolumn:name="Rejected",type=integer,JSONPath=`.status.rejectedUpdates`,priority=1
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.aggregator.algorithm`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FederatedJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec FederatedJobSpec `json:"spec"`
	// +optional
	Status FederatedJobStatus `json:"status,omitempty"`
}

// FederatedJobList is a list of FederatedJobs.
//
// +kubebuilder:object:root=true
type FederatedJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FederatedJob `json:"items"`
}

// TrainingRoundSpec is one round of a FederatedJob; the job writes it.
type TrainingRoundSpec struct {
	// +required
	JobRef LocalObjectReference `json:"jobRef"`
	// RoundID reaches each training task as ROUND_ID.
	// +required
	// +kubebuilder:validation:MinLength=1
	RoundID string `json:"roundId"`
	// +required
	// +kubebuilder:validation:Minimum=1
	Number int32 `json:"number"`
	// ModelURI reaches each training task as MODEL_URI.
	// +required
	// +kubebuilder:validation:MinLength=1
	ModelURI string `json:"modelUri"`
	// +required
	// +kubebuilder:validation:MinLength=1
	TaskWasmImage string `json:"taskWasmImage"`
	// +required
	// +kubebuilder:validation:MinItems=1
	// +listType=map
	// +listMapKey=propletId
	Participants []Participant `json:"participants"`
	// +required
	// +kubebuilder:validation:Minimum=1
	KOfN int32 `json:"kOfN"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Hyperparams *apiextensionsv1.JSON `json:"hyperparams,omitempty"`
}

// RoundParticipants counts a round's participants by the phase of their
// WasmTask.
type RoundParticipants struct {
	// Pending have no task yet, or a task not running yet (Pending,
	// Scheduled).
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Running int32 `json:"running,omitempty"`
	// +optional
	Succeeded int32 `json:"succeeded,omitempty"`
	// Failed counts Failed and Cancelled tasks.
	// +optional
	Failed int32 `json:"failed,omitempty"`
}

// TrainingRoundStatus tracks the round's tasks and updates. Two
// controllers write it, each its own fields: the FederatedJob controller
// mirrors the FL coordinator's round record (phase, tasks, updates,
// metrics, checkpoint, reason, message, times); the TrainingRound
// controller summarises the round's WasmTasks (participants) and owns
// observedGeneration and conditions.
type TrainingRoundStatus struct {
	// Phase is the coordinator's: Pending (choosing, submitting), Running,
	// Succeeded (closed and aggregated), Failed.
	// +optional
	Phase FLPhase `json:"phase,omitempty"`
	// Tasks names the round's WasmTasks.
	// +optional
	Tasks []string `json:"tasks,omitempty"`
	// UpdatesReceived counts the updates the coordinator accepted.
	// +optional
	UpdatesReceived int32 `json:"updatesReceived,omitempty"`
	// UpdatesRejected counts the updates for this round it refused (late,
	// duplicate, invalid), among those the job record keeps.
	// +optional
	UpdatesRejected int32 `json:"updatesRejected,omitempty"`
	// Metrics are the participants' metrics averaged over the accepted
	// updates, weighted by samples, as decimal strings.
	// +optional
	Metrics map[string]string `json:"metrics,omitempty"`
	// Metric is the headline of Metrics, say "accuracy=0.9583".
	// +optional
	Metric string `json:"metric,omitempty"`
	// Reason and Message say why the round failed or was stopped.
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Checkpoint string `json:"checkpoint,omitempty"`
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// Participants counts the participants by their task's phase.
	// +optional
	Participants RoundParticipants `json:"participants,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrainingRound is one FL round; it owns the round's WasmTasks.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tr,categories=propeller
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobRef.name`
// +kubebuilder:printcolumn:name="Round",type=integer,JSONPath=`.spec.number`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Updates",type=integer,JSONPath=`.status.updatesReceived`
// +kubebuilder:printcolumn:name="K",type=integer,JSONPath=`.spec.kOfN`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.participants.running`,priority=1
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.participants.failed`,priority=1
// +kubebuilder:printcolumn:name="Metric",type=string,JSONPath=`.status.metric`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrainingRound struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TrainingRoundSpec `json:"spec"`
	// +optional
	Status TrainingRoundStatus `json:"status,omitempty"`
}

// TrainingRoundList is a list of TrainingRounds.
//
// +kubebuilder:object:root=true
type TrainingRoundList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrainingRound `json:"items"`
}

// ModelCheckpointSpec is an aggregated model written when a round closes.
type ModelCheckpointSpec struct {
	// +required
	JobRef LocalObjectReference `json:"jobRef"`
	// +required
	// +kubebuilder:validation:Minimum=0
	Round int32 `json:"round"`
	// ModelURI is where the model bytes are; the next round's MODEL_URI.
	// +required
	// +kubebuilder:validation:MinLength=1
	ModelURI string `json:"modelUri"`
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]{64}$`
	Digest string `json:"digest,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Format of the tensors, for example safetensors.
	// +optional
	Format string `json:"format,omitempty"`
	// Metrics of the aggregated model, as decimal strings.
	// +optional
	Metrics map[string]string `json:"metrics,omitempty"`
}

// CheckpointPhase says whether the model bytes are usable.
// +kubebuilder:validation:Enum=Pending;Available;Failed
type CheckpointPhase string

// Checkpoint phases.
const (
	CheckpointPending   CheckpointPhase = "Pending"
	CheckpointAvailable CheckpointPhase = "Available"
	CheckpointFailed    CheckpointPhase = "Failed"
)

// ModelCheckpointStatus says whether the model is usable.
type ModelCheckpointStatus struct {
	// +optional
	Phase CheckpointPhase `json:"phase,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// OCIRef is where the operator pushed a copy of the model when a
	// checkpoint registry is configured:
	// oci://host/repo:<job>-round-<n>@sha256:<manifest>. The Pushed
	// condition says why it is empty.
	// +optional
	OCIRef string `json:"ociRef,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModelCheckpoint is one aggregated model of a FederatedJob.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mc,categories=propeller
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobRef.name`
// +kubebuilder:printcolumn:name="Round",type=integer,JSONPath=`.spec.round`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.spec.digest`,priority=1
// +kubebuilder:printcolumn:name="OCI",type=string,JSONPath=`.status.ociRef`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelCheckpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ModelCheckpointSpec `json:"spec"`
	// +optional
	Status ModelCheckpointStatus `json:"status,omitempty"`
}

// ModelCheckpointList is a list of ModelCheckpoints.
//
// +kubebuilder:object:root=true
type ModelCheckpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelCheckpoint `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FederatedJob{}, &FederatedJobList{},
		&TrainingRound{}, &TrainingRoundList{},
		&ModelCheckpoint{}, &ModelCheckpointList{})
}
