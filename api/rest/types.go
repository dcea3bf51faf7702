package rest

import "time"

// Task phases, in lifecycle order. Succeeded, Failed and Cancelled are
// final.
const (
	PhasePending   = "Pending"
	PhaseScheduled = "Scheduled"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	PhaseCancelled = "Cancelled"
)

// Terminal reports whether a task phase is final.
func Terminal(phase string) bool {
	return phase == PhaseSucceeded || phase == PhaseFailed || phase == PhaseCancelled
}

// TaskRequest is the body of POST /v1/tasks and one element of
// POST /v1/tasks:batch.
//
// The module is File (inline bytes, base64 in JSON) or ImageURL (oci://,
// http(s)://). With neither, Suspend must be true: the module comes later
// by PUT /v1/tasks/{id}/wasm, then POST /v1/tasks/{id}/start.
type TaskRequest struct {
	Name     string            `json:"name,omitempty"`
	File     []byte            `json:"file,omitempty"`
	ImageURL string            `json:"imageUrl,omitempty"`
	Digest   string            `json:"digest,omitempty"`
	Function string            `json:"function,omitempty"`
	Inputs   []float64         `json:"inputs,omitempty"`
	CLIArgs  []string          `json:"cliArgs,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// TimeoutSeconds is one attempt's deadline; 0 is the manager's default.
	TimeoutSeconds float64 `json:"timeoutSeconds,omitempty"`
	MaxAttempts    int     `json:"maxAttempts,omitempty"`
	// MemoryPages caps the module's linear memory (64 KiB pages).
	MemoryPages uint32 `json:"memoryPages,omitempty"`
	// MemoryBytes is what the task asks for: it is placed only on a
	// proplet offering a task at least this much.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// Preopen gives the module a writable, empty /data for the attempt.
	Preopen bool `json:"preopen,omitempty"`
	// PropletID pins the task to one proplet; PropletIDs to one of several.
	PropletID  string            `json:"propletId,omitempty"`
	PropletIDs []string          `json:"propletIds,omitempty"`
	Selector   map[string]string `json:"selector,omitempty"`
	// Suspend creates the task without scheduling it.
	Suspend bool `json:"suspend,omitempty"`
}

// TaskBatchRequest is the body of POST /v1/tasks:batch: 1 to 1000 tasks,
// created all or none.
type TaskBatchRequest struct {
	Tasks []TaskRequest `json:"tasks"`
}

// TaskBatch is the answer of POST /v1/tasks:batch, in request order.
type TaskBatch struct {
	Items []Task `json:"items"`
}

// Task is a task's spec and status.
type Task struct {
	ID             string            `json:"id"`
	Name           string            `json:"name,omitempty"`
	Phase          string            `json:"phase"`
	ImageURL       string            `json:"imageUrl,omitempty"`
	Digest         string            `json:"digest,omitempty"`
	Function       string            `json:"function,omitempty"`
	Inputs         []float64         `json:"inputs,omitempty"`
	CLIArgs        []string          `json:"cliArgs,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	TimeoutSeconds float64           `json:"timeoutSeconds,omitempty"`
	MaxAttempts    int               `json:"maxAttempts,omitempty"`
	MemoryPages    uint32            `json:"memoryPages,omitempty"`
	MemoryBytes    int64             `json:"memoryBytes,omitempty"`
	Selector       map[string]string `json:"selector,omitempty"`
	Suspend        bool              `json:"suspend,omitempty"`
	Preopen        bool              `json:"preopen,omitempty"`
	// PropletID is the proplet the task is placed on, else the one it is
	// pinned to.
	PropletID  string    `json:"propletId,omitempty"`
	PropletIDs []string  `json:"propletIds,omitempty"`
	Attempt    int       `json:"attempt"`
	Results    []float64 `json:"results,omitempty"`
	// Stdout and Stderr are the tails of the last attempt's output.
	Stdout   string `json:"stdout,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
	// Reason is a machine-readable word (Unschedulable, PropletLost,
	// Timeout...), Message the human explanation.
	Reason      string     `json:"reason,omitempty"`
	Message     string     `json:"message,omitempty"`
	LastFailure string     `json:"lastFailure,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	ScheduledAt *time.Time `json:"scheduledAt,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
}

// List is one page of a list: Continue, when not empty, fetches the next.
type List[T any] struct {
	Items    []T    `json:"items"`
	Continue string `json:"continue"`
}

// The pages of each list route.
type (
	TaskList         = List[Task]
	PropletList      = List[Proplet]
	FederatedJobList = List[FederatedJob]
	CheckpointList   = List[Checkpoint]
)

// Page selects one page of a list.
type Page struct {
	// Limit is the page size: 0 is the server's default (100); the server
	// caps it at 1000.
	Limit int
	// Continue is the previous page's token; empty is the first page.
	Continue string
}

// TaskFilter selects the tasks of GET /v1/tasks.
type TaskFilter struct {
	// Phases keeps tasks in any of these phases.
	Phases    []string
	PropletID string
	// Labels keeps tasks carrying all these labels.
	Labels map[string]string
	// Name keeps tasks with exactly this name.
	Name string
	// IDPrefix keeps tasks whose id starts with it.
	IDPrefix string
	Page
}

// Proplet is a worker the manager knows.
type Proplet struct {
	ID          string            `json:"id"`
	Alive       bool              `json:"alive"`
	Labels      map[string]string `json:"labels,omitempty"`
	Slots       int               `json:"slots"`
	MemoryBytes int64             `json:"memoryBytes,omitempty"`
	Runtime     string            `json:"runtime,omitempty"`
	Version     string            `json:"version,omitempty"`
	LastSeen    *time.Time        `json:"lastSeen,omitempty"`
	// Running lists the ids of the tasks it runs.
	Running []string `json:"running"`
}

// PropletCredential says that a proplet has its own MQTT secret, and
// since when. The secret itself is shown once, in IssuedCredential.
type PropletCredential struct {
	PropletID string    `json:"propletId"`
	CreatedAt time.Time `json:"createdAt"`
}

// IssuedCredential is the answer of POST /v1/proplets/{id}/credentials:
// the only time the secret is ever shown.
type IssuedCredential struct {
	PropletID string    `json:"propletId"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"createdAt"`
}
