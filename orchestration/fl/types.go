// Package fl is the federated-learning coordinator: it runs a
// FederatedJob as a sequence of rounds, each round one engine task per
// participant, aggregates the participants' updates into a new global
// model and checkpoints it. Like the engine it knows no framework: the
// engine, the job store and the blob store come in through the ports in
// ports.go, so both manager modes drive the same code.
package fl

import (
	"time"
)

// Env names the coordinator sets on every training task; the proplet's FL
// adapter reacts to ROUND_ID + MODEL_URI (see proplet/executor.go).
const (
	EnvRoundID     = "ROUND_ID"
	EnvModelURI    = "MODEL_URI"
	EnvHyperparams = "HYPERPARAMS"
	EnvJobID       = "FL_JOB_ID"
)

// Labels the coordinator puts on its tasks, so it finds them again after a
// restart and so users can list a job's tasks.
const (
	LabelJob     = "fl-job"
	LabelRound   = "fl-round"
	LabelProplet = "fl-proplet"
)

// Participant is one explicitly chosen client.
type Participant struct {
	PropletID string `json:"propletId"`
	// Hyperparams are merged over the job's for this participant only
	// (say, its data shard).
	Hyperparams map[string]any `json:"hyperparams,omitempty"`
}

// Rounds says when a job is done.
type Rounds struct {
	Total int `json:"total"`
	// TargetMetric, when set, ends the job early once a round's aggregated
	// metric reaches it.
	TargetMetric *TargetMetric `json:"targetMetric,omitempty"`
}

// TargetMetric is a goal on one aggregated client metric.
type TargetMetric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Mode is "max" (reach at least Value, the default) or "min".
	Mode string `json:"mode,omitempty"`
}

// AggregatorSpec picks the aggregation (orchestration/fl/aggregate).
type AggregatorSpec struct {
	Algorithm string             `json:"algorithm"`
	Config    map[string]float64 `json:"config,omitempty"`
}

// Round failure actions.
const (
	ActionRetry = "retry"
	ActionFail  = "fail"
)

// FailurePolicy decides what a failed round (too few updates by its
// deadline) does to the job.
type FailurePolicy struct {
	// Action is retry (the default) or fail.
	Action string `json:"action,omitempty"`
	// MaxRetries bounds retries of one round; default 2.
	MaxRetries int `json:"maxRetries,omitempty"`
}

// JobSpec is a FederatedJob as a user writes it; the JSON field names are
// the operator CRD's.
type JobSpec struct {
	ExperimentID string `json:"experimentId,omitempty"`
	// ModelRef is the initial global model, blob://sha256:<hex> in the
	// manager's blob store (safetensors, F32 tensors).
	ModelRef string `json:"modelRef"`
	// TaskWasmImage is the training module: oci://, http(s):// or
	// blob://sha256:<hex>.
	TaskWasmImage string `json:"taskWasmImage"`
	// Participants lists clients explicitly; otherwise Selector picks
	// Count (or Fraction) of the alive proplets matching it, rotating
	// from round to round.
	Participants []Participant     `json:"participants,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	Count        int               `json:"count,omitempty"`
	Fraction     float64           `json:"fraction,omitempty"`
	// KOfN closes a round once this many updates arrived; default all
	// participants.
	KOfN int `json:"kOfN,omitempty"`
	// MinUpdates is what a round needs at its deadline to close rather
	// than fail; default 1.
	MinUpdates int `json:"minUpdates,omitempty"`
	// TimeoutSeconds is a round's deadline, and each training task's
	// timeout; default 600.
	TimeoutSeconds float64        `json:"timeoutSeconds,omitempty"`
	Rounds         Rounds         `json:"rounds"`
	Aggregator     AggregatorSpec `json:"aggregator"`
	Hyperparams    map[string]any `json:"hyperparams,omitempty"`
	OnRoundFailure FailurePolicy  `json:"onRoundFailure,omitzero"`
	// MemoryPages caps each training module's memory (64 KiB pages).
	MemoryPages uint32 `json:"memoryPages,omitempty"`
}

// JobPhase is a job's lifecycle phase.
type JobPhase string

// Job phases. A job is Running from creation until it ends in one of the
// other three.
const (
	JobRunning   JobPhase = "Running"
	JobSucceeded JobPhase = "Succeeded"
	JobFailed    JobPhase = "Failed"
	JobStopped   JobPhase = "Stopped"
)

// Terminal reports whether the job is over.
func (p JobPhase) Terminal() bool { return p != JobRunning }

// RoundPhase is a round's lifecycle phase.
type RoundPhase string

// Round phases: Starting (participants chosen, tasks being submitted),
// Running, then Closed (aggregated, checkpointed) or Failed.
const (
	RoundStarting RoundPhase = "Starting"
	RoundRunning  RoundPhase = "Running"
	RoundClosed   RoundPhase = "Closed"
	RoundFailed   RoundPhase = "Failed"
)

// Participant states within a round.
const (
	PartPending   = "Pending"   // task not submitted yet
	PartSubmitted = "Submitted" // task submitted, not running yet
	PartRunning   = "Running"
	PartUpdated   = "Updated" // its update was accepted
	PartDone      = "Done"    // task ended without an accepted update
	PartFailed    = "Failed"  // task failed or was cancelled
	PartStopped   = "Stopped" // round ended before it finished
)

// ParticipantStatus is one participant's state in one round.
type ParticipantStatus struct {
	PropletID string `json:"propletId"`
	TaskID    string `json:"taskId,omitempty"`
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message,omitempty"`
	// EndedAt is when its task ended (Done or Failed).
	EndedAt time.Time `json:"endedAt,omitzero"`
}

// AcceptedUpdate is an update counted in a round; the tensors are a blob.
type AcceptedUpdate struct {
	TaskID     string             `json:"taskId"`
	PropletID  string             `json:"propletId"`
	Attempt    int                `json:"attempt"`
	NumSamples int64              `json:"numSamples"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Digest     string             `json:"digest"`
	Size       int64              `json:"size"`
	ReceivedAt time.Time          `json:"receivedAt"`
}

// Round is one attempt at one round.
type Round struct {
	Number int `json:"number"`
	// Attempt is 0 for the first try, then 1, 2... after failures.
	Attempt      int                 `json:"attempt"`
	ID           string              `json:"id"`
	Phase        RoundPhase          `json:"phase"`
	ModelURI     string              `json:"modelUri"`
	KOfN         int                 `json:"kOfN"`
	MinUpdates   int                 `json:"minUpdates"`
	Participants []ParticipantStatus `json:"participants"`
	Updates      []AcceptedUpdate    `json:"updates,omitempty"`
	TotalSamples int64               `json:"totalSamples,omitempty"`
	// Metrics are the clients' metrics averaged, weighted by samples.
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Checkpoint string             `json:"checkpoint,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Message    string             `json:"message,omitempty"`
	StartedAt  time.Time          `json:"startedAt"`
	Deadline   time.Time          `json:"deadline"`
	ClosedAt   time.Time          `json:"closedAt,omitzero"`
}

// Rejection reasons.
const (
	RejectLate      = "LateUpdate"
	RejectDuplicate = "DuplicateUpdate"
	RejectUnknown   = "UnknownTask"
	RejectInvalid   = "InvalidUpdate"
)

// Rejection is an update that was not counted, kept so users see it.
type Rejection struct {
	RoundID   string    `json:"roundId"`
	TaskID    string    `json:"taskId"`
	PropletID string    `json:"propletId"`
	Attempt   int       `json:"attempt"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message,omitempty"`
	At        time.Time `json:"at"`
}

// Checkpoint is the global model after one closed round.
type Checkpoint struct {
	Round        int                `json:"round"`
	Digest       string             `json:"digest"`
	Size         int64              `json:"size"`
	Algorithm    string             `json:"algorithm"`
	Participants []string           `json:"participants"`
	TotalSamples int64              `json:"totalSamples"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	CreatedAt    time.Time          `json:"createdAt"`
}

// JobStatus is what the coordinator observed and decided.
type JobStatus struct {
	Phase   JobPhase `json:"phase"`
	Reason  string   `json:"reason,omitempty"`
	Message string   `json:"message,omitempty"`
	// CurrentRound is the number of the round in progress (or the last).
	CurrentRound int `json:"currentRound"`
	// ModelDigest is the current global model; StateDigest the server
	// optimizer's state, if it keeps any.
	ModelDigest string       `json:"modelDigest"`
	StateDigest string       `json:"stateDigest,omitempty"`
	Rounds      []Round      `json:"rounds,omitempty"`
	Checkpoints []Checkpoint `json:"checkpoints,omitempty"`
	// Rejected keeps the latest rejected updates; RejectedTotal counts all.
	Rejected      []Rejection `json:"rejected,omitempty"`
	RejectedTotal int         `json:"rejectedTotal"`
	CreatedAt     time.Time   `json:"createdAt"`
	UpdatedAt     time.Time   `json:"updatedAt"`
	FinishedAt    time.Time   `json:"finishedAt,omitzero"`
}

// Job is a FederatedJob: its spec and status, persisted as one record so
// that accepting an update and counting it is one atomic write.
type Job struct {
	ID     string    `json:"id"`
	Spec   JobSpec   `json:"spec"`
	Status JobStatus `json:"status"`
}

// Current returns the round in progress (the last one), or nil.
func (j *Job) Current() *Round {
	if len(j.Status.Rounds) == 0 {
		return nil
	}
	return &j.Status.Rounds[len(j.Status.Rounds)-1]
}

// Update is a client's contribution as it arrives from a proplet.
type Update struct {
	JobID      string
	RoundID    string
	TaskID     string
	PropletID  string
	Attempt    int
	NumSamples int64
	Metrics    map[string]float64
	// Tensor is the client's local model, safetensors.
	Tensor []byte
	Time   time.Time
}
