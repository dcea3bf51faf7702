package rest

import "time"

// Federated job phases. A job is Running from creation until it ends in
// one of the other three.
const (
	JobRunning   = "Running"
	JobSucceeded = "Succeeded"
	JobFailed    = "Failed"
	JobStopped   = "Stopped"
)

// JobTerminal reports whether a federated job phase is final.
func JobTerminal(phase string) bool { return phase != JobRunning }

// Round phases.
const (
	RoundStarting = "Starting"
	RoundRunning  = "Running"
	RoundClosed   = "Closed"
	RoundFailed   = "Failed"
)

// FederatedJobRequest is the body of POST /v1/federated-jobs: the
// FederatedJob spec, plus optional inline bytes for the initial model and
// the training module, which the manager stores and references from the
// spec.
type FederatedJobRequest struct {
	FederatedJobSpec
	// InitialModel is a safetensors file (base64); it sets modelRef.
	InitialModel []byte `json:"initialModel,omitempty"`
	// TaskWasm is the training module (base64); it sets taskWasmImage.
	TaskWasm []byte `json:"taskWasm,omitempty"`
}

// FederatedJobSpec is a FederatedJob as a user writes it, with the field
// names of the custom resource's spec.
type FederatedJobSpec struct {
	ExperimentID string `json:"experimentId,omitempty"`
	// ModelRef is the initial global model: blob://sha256:<hex> in the
	// manager's blob store, or oci://host/repo[:tag][@digest].
	ModelRef string `json:"modelRef"`
	// TaskWasmImage is the training module: oci://, http(s):// or
	// blob://sha256:<hex>.
	TaskWasmImage string `json:"taskWasmImage"`
	// Participants lists clients explicitly; otherwise Selector picks
	// Count (or Fraction) of the alive proplets matching it.
	Participants []Participant     `json:"participants,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	Count        int               `json:"count,omitempty"`
	Fraction     float64           `json:"fraction,omitempty"`
	// KOfN closes a round once this many updates arrived; default all.
	KOfN int `json:"kOfN,omitempty"`
	// MinUpdates is what a round needs at its deadline; default 1.
	MinUpdates int `json:"minUpdates,omitempty"`
	// TimeoutSeconds is a round's deadline; default 600.
	TimeoutSeconds float64        `json:"timeoutSeconds,omitempty"`
	Rounds         Rounds         `json:"rounds"`
	Aggregator     Aggregator     `json:"aggregator"`
	Hyperparams    map[string]any `json:"hyperparams,omitempty"`
	OnRoundFailure FailurePolicy  `json:"onRoundFailure,omitzero"`
	// MemoryPages caps each training module's memory (64 KiB pages).
	MemoryPages uint32 `json:"memoryPages,omitempty"`
}

// Participant is one explicitly chosen client.
type Participant struct {
	PropletID string `json:"propletId"`
	// Hyperparams are merged over the job's for this participant only.
	Hyperparams map[string]any `json:"hyperparams,omitempty"`
}

// Rounds says when a job is done.
type Rounds struct {
	Total int `json:"total"`
	// TargetMetric ends the job early once a round reaches it.
	TargetMetric *TargetMetric `json:"targetMetric,omitempty"`
}

// TargetMetric is a goal on one aggregated client metric.
type TargetMetric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Mode is "max" (reach at least Value, the default) or "min".
	Mode string `json:"mode,omitempty"`
}

// Aggregator picks the aggregation algorithm (fedavg, ...).
type Aggregator struct {
	Algorithm string             `json:"algorithm"`
	Config    map[string]float64 `json:"config,omitempty"`
}

// FailurePolicy decides what a failed round does to the job.
type FailurePolicy struct {
	// Action is retry (the default) or fail.
	Action     string `json:"action,omitempty"`
	MaxRetries int    `json:"maxRetries,omitempty"`
}

// FederatedJob is a job's spec and status.
type FederatedJob struct {
	ID     string             `json:"id"`
	Spec   FederatedJobSpec   `json:"spec"`
	Status FederatedJobStatus `json:"status"`
}

// Current returns the round in progress (the last one), or nil before
// the first.
func (j *FederatedJob) Current() *Round {
	if len(j.Status.Rounds) == 0 {
		return nil
	}
	return &j.Status.Rounds[len(j.Status.Rounds)-1]
}

// FederatedJobStatus is what the coordinator observed and decided.
type FederatedJobStatus struct {
	Phase   string `json:"phase"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
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

// Round is one attempt at one round.
type Round struct {
	Number int `json:"number"`
	// Attempt is 0 for the first try, then 1, 2... after failures.
	Attempt      int                 `json:"attempt"`
	ID           string              `json:"id"`
	Phase        string              `json:"phase"`
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

// ParticipantStatus is one participant's state in one round.
type ParticipantStatus struct {
	PropletID string    `json:"propletId"`
	TaskID    string    `json:"taskId,omitempty"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Message   string    `json:"message,omitempty"`
	EndedAt   time.Time `json:"endedAt,omitzero"`
}

// AcceptedUpdate is an update counted in a round.
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

// Rejection is an update that was not counted.
type Rejection struct {
	RoundID   string    `json:"roundId"`
	TaskID    string    `json:"taskId"`
	PropletID string    `json:"propletId"`
	Attempt   int       `json:"attempt"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message,omitempty"`
	At        time.Time `json:"at"`
}

// Checkpoint is the global model after one closed round; fetch its bytes
// with Client.Model(Digest).
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
