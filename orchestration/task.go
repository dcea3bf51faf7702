// Package orchestration is Propeller's engine: the task lifecycle,
// scheduling, proplet liveness, retries and deadlines. It knows no framework:
// storage, transport and time come in through the ports declared in
// ports.go, so the standalone manager (bbolt + REST) and the Kubernetes
// operator (CRDs) drive the very same code.
package orchestration

import (
	"slices"
	"time"
)

// Phase is a task's lifecycle phase.
type Phase string

// Phases. A task moves Pending -> Scheduled -> Running and ends in exactly
// one of Succeeded, Failed or Cancelled. A retry moves it back to Pending
// with a higher attempt number.
const (
	PhasePending   Phase = "Pending"
	PhaseScheduled Phase = "Scheduled"
	PhaseRunning   Phase = "Running"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
	PhaseCancelled Phase = "Cancelled"
)

// Terminal reports whether no further transition can leave p.
func (p Phase) Terminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCancelled
}

// Phases lists every phase in lifecycle order.
var Phases = []Phase{PhasePending, PhaseScheduled, PhaseRunning, PhaseSucceeded, PhaseFailed, PhaseCancelled}

// Valid reports whether p is one of the known phases.
func (p Phase) Valid() bool { return slices.Contains(Phases, p) }

// Reasons recorded by the engine. Proplets add their own (see api/wire).
const (
	ReasonPropletLost      = "PropletLost"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonCancelled        = "Cancelled"
	ReasonUnschedulable    = "Unschedulable"
	ReasonSuspended        = "Suspended"
	ReasonDispatchFailed   = "DispatchFailed"
	ReasonBackoff          = "BackoffRetry"
	ReasonSucceeded        = "Succeeded"
	// ReasonNoCapacity is a proplet refusing a start because its slots
	// are busy (wire.ReasonNoCapacity). Nothing ran, so it uses no attempt.
	ReasonNoCapacity = "NoCapacity"
	// ReasonExpired is a proplet refusing a start that reached it after
	// its StartWindow (wire.ReasonExpired). Nothing ran either.
	ReasonExpired = "Expired"
	// ReasonSuperseded is the stop reason for an attempt a proplet still
	// runs after the engine gave up on it (lost, timed out, retried).
	ReasonSuperseded = "Superseded"
	// Proplet reasons the engine treats as deterministic: they fail the
	// task at once instead of using its remaining attempts (see fail).
	ReasonInvalidModule = "InvalidModule"
	ReasonInvalidTask   = "InvalidTask"
	ReasonMemoryLimit   = "MemoryLimit"
)

// TaskSpec is what a user asks for. It does not change after creation,
// except Suspend.
type TaskSpec struct {
	Name string `json:"name,omitempty"`
	// Image is where the module comes from: oci://..., http(s)://..., or
	// blob://sha256:<hex> for a module uploaded to the manager.
	Image string `json:"image,omitempty"`
	// Digest ("sha256:<hex>") pins the module bytes; optional for oci/http.
	Digest   string            `json:"digest,omitempty"`
	Function string            `json:"function,omitempty"`
	Inputs   []float64         `json:"inputs,omitempty"`
	CLIArgs  []string          `json:"cli_args,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	// Labels are the task's own labels, for listing and grouping.
	Labels map[string]string `json:"labels,omitempty"`
	// PropletID pins the task to one proplet.
	PropletID string `json:"proplet_id,omitempty"`
	// PropletIDs is a candidate set: the task, and each retry of it, runs
	// on one of these proplets. With Selector as well, a candidate must
	// also carry the selector's labels. Exclusive with PropletID; at most
	// MaxPropletIDs ids, none empty or repeated.
	PropletIDs []string `json:"proplet_ids,omitempty"`
	// Selector restricts scheduling to proplets carrying all these labels.
	Selector    map[string]string `json:"selector,omitempty"`
	Timeout     time.Duration     `json:"timeout,omitempty"`
	MaxAttempts int               `json:"max_attempts,omitempty"`
	// MemoryPages caps the module's linear memory (64 KiB pages); 0 takes
	// the proplet's default.
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	// MemoryBytes is memory the task asks for. A task is placed only on a
	// proplet that offers a task at least max(MemoryBytes, MemoryPages x
	// 64 KiB) (Proplet.MemoryBytes; one that does not say is assumed to).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Preopen gives the module a writable, empty /data directory of its
	// own for the attempt; without it the module sees no host files.
	Preopen bool `json:"preopen,omitempty"`
	Suspend bool `json:"suspend,omitempty"`
}

// TaskStatus is what the engine observed.
type TaskStatus struct {
	Phase     Phase  `json:"phase"`
	PropletID string `json:"proplet_id,omitempty"`
	// Attempt counts dispatches: 0 before the first one.
	Attempt int `json:"attempt"`
	// Reason is a CamelCase word; Message is for humans.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// LastFailure says why the latest retried attempt failed; it outlives
	// the retry, so a task that succeeded on attempt 2 still tells why
	// attempt 1 did not.
	LastFailure string    `json:"last_failure,omitempty"`
	Results     []float64 `json:"results,omitempty"`
	Stdout      string    `json:"stdout,omitempty"`
	Stderr      string    `json:"stderr,omitempty"`
	ExitCode    *int      `json:"exit_code,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// NotBefore delays the next attempt (retry backoff).
	NotBefore time.Time `json:"not_before,omitzero"`
	// Deadline is when the engine gives up on the current attempt.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Task is the unit of work: a spec and its status.
type Task struct {
	ID     string     `json:"id"`
	Spec   TaskSpec   `json:"spec"`
	Status TaskStatus `json:"status"`
}

// Proplet is a worker as the engine sees it.
type Proplet struct {
	ID          string            `json:"id"`
	Labels      map[string]string `json:"labels,omitempty"`
	Slots       int               `json:"slots"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Runtime     string            `json:"runtime,omitempty"`
	Version     string            `json:"version,omitempty"`
	// Instance changes whenever the proplet process restarts.
	Instance string    `json:"instance,omitempty"`
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Running lists the task ids the engine has placed on it (in-flight).
	Running []string `json:"running,omitempty"`
}

// Matches reports whether the proplet carries every label of sel.
func (p *Proplet) Matches(sel map[string]string) bool {
	for k, v := range sel {
		if p.Labels[k] != v {
			return false
		}
	}
	return true
}
