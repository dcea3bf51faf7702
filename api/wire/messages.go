package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Version is the protocol version stamped on every message. A receiver
// rejects messages whose major version it does not know.
const Version = 1

// Proplet states carried by Status.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Status is published retained on {p}/proplets/{id}/status when a proplet
// connects; its last-will is the same message with State offline.
type Status struct {
	V        int               `json:"v"`
	ID       string            `json:"id"`
	State    string            `json:"state"`
	Instance string            `json:"instance,omitempty"` // changes on every proplet start
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Capacity          `json:"capacity"`
	Runtime  string            `json:"runtime,omitempty"`
	Version  string            `json:"version,omitempty"`
	Time     time.Time         `json:"time"`
}

// Capacity is what a proplet offers.
type Capacity struct {
	Slots       int   `json:"slots"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// Heartbeat is published every few seconds on {p}/proplets/{id}/heartbeat.
type Heartbeat struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Instance  string    `json:"instance,omitempty"`
	Running   []TaskRef `json:"running,omitempty"`
	FreeSlots int       `json:"free_slots"`
	Load      float64   `json:"load,omitempty"`
	Time      time.Time `json:"time"`
}

// TaskRef names one attempt of a task.
type TaskRef struct {
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
}

// Command types.
const (
	CommandStart = "start"
	CommandStop  = "stop"
)

// Command is sent by the manager on {p}/proplets/{id}/commands.
type Command struct {
	V     int        `json:"v"`
	Type  string     `json:"type"`
	Start *StartTask `json:"start,omitempty"`
	Stop  *StopTask  `json:"stop,omitempty"`
}

// StartTask asks a proplet to run one attempt of a task. Starting the same
// (task, attempt) twice is a no-op on the proplet: a repeated command after
// a manager restart never runs a module twice.
type StartTask struct {
	TaskID   string            `json:"task_id"`
	Attempt  int               `json:"attempt"`
	Name     string            `json:"name,omitempty"`
	Artifact Artifact          `json:"artifact"`
	Function string            `json:"function,omitempty"`
	Inputs   []float64         `json:"inputs,omitempty"`
	CLIArgs  []string          `json:"cli_args,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Stdin    []byte            `json:"stdin,omitempty"`
	// TimeoutMS bounds the attempt on the proplet; 0 means the proplet's
	// own default.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// MemoryPages caps the module's linear memory (64 KiB pages); 0 means
	// the proplet's default.
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	// Preopen gives the module a writable, empty /data directory private
	// to the attempt. Nothing is mounted otherwise.
	Preopen bool `json:"preopen,omitempty"`
	// Sent and NotAfter fence the start in time, both on the manager's
	// clock: a proplet refuses (ReasonExpired) a start it gets after
	// NotAfter, since the manager may have given the attempt up and run
	// it elsewhere meanwhile (a start queued in the broker while the
	// proplet was paused or cut off). The proplet judges the manager's
	// time from Sent, so its own clock may differ. Zero: no fence.
	Sent     time.Time `json:"sent,omitzero"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// Artifact says where a module's bytes come from. Exactly one of URI and
// Inline is set. Digest ("sha256:<hex>") is verified when present.
type Artifact struct {
	// URI is oci://..., http(s)://..., or relay://sha256:<hex> for a blob
	// the manager serves over MQTT.
	URI    string `json:"uri,omitempty"`
	Inline []byte `json:"inline,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Artifact URI schemes of Propeller's own, besides oci:// and http(s)://.
// Each is followed by a digest, sha256:<hex>.
const (
	// BlobScheme names bytes the manager holds in its blob store: an
	// uploaded module, an FL model or checkpoint. Users, the manager and
	// proplets (FL MODEL_URI) all write it.
	BlobScheme = "blob://"
	// RelayScheme is a blob a proplet pulls through the manager's artifact
	// relay over MQTT.
	RelayScheme = "relay://"
)

// StopTask asks a proplet to end an attempt promptly.
type StopTask struct {
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason,omitempty"`
}

// Event types, in the order a proplet emits them for one attempt.
const (
	EventAccepted  = "accepted"
	EventRunning   = "running"
	EventSucceeded = "succeeded"
	EventFailed    = "failed"
)

// Event reports progress of one attempt on {p}/proplets/{id}/events.
type Event struct {
	V        int       `json:"v"`
	TaskID   string    `json:"task_id"`
	Attempt  int       `json:"attempt"`
	Type     string    `json:"type"`
	Time     time.Time `json:"time"`
	Result   *Result   `json:"result,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Error    string    `json:"error,omitempty"`
	Metrics  *Metrics  `json:"metrics,omitempty"`
	Instance string    `json:"instance,omitempty"`
}

// Result is what a finished module produced. Stdout and Stderr are bounded
// tails.
type Result struct {
	Results  []float64 `json:"results,omitempty"`
	Stdout   string    `json:"stdout,omitempty"`
	Stderr   string    `json:"stderr,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
}

// Metrics about one attempt.
type Metrics struct {
	FetchMS   int64 `json:"fetch_ms,omitempty"`
	CompileMS int64 `json:"compile_ms,omitempty"`
	RunMS     int64 `json:"run_ms,omitempty"`
	CacheHit  bool  `json:"cache_hit,omitempty"`
}

// Failure reasons a proplet reports.
const (
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonStopped          = "Stopped"
	ReasonTrap             = "Trap"
	ReasonExitCode         = "NonZeroExit"
	ReasonMemoryLimit      = "MemoryLimit"
	ReasonArtifact         = "ArtifactError"
	ReasonInvalidModule    = "InvalidModule"
	ReasonInvalidTask      = "InvalidTask"
	ReasonNoCapacity       = "NoCapacity"
	// ReasonExpired refuses a start that arrived after its NotAfter;
	// nothing ran.
	ReasonExpired = "Expired"
)

// FLUpdate is a federated-learning client's contribution for one round,
// published on {p}/proplets/{id}/fl/updates.
type FLUpdate struct {
	V          int                `json:"v"`
	JobID      string             `json:"job_id,omitempty"`
	RoundID    string             `json:"round_id"`
	TaskID     string             `json:"task_id"`
	Attempt    int                `json:"attempt"`
	NumSamples int64              `json:"num_samples"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	// Tensor is the model update in the project's tensor format
	// (safetensors), base64 in JSON.
	Tensor []byte    `json:"tensor,omitempty"`
	Time   time.Time `json:"time"`
}

// ArtifactRequest asks the manager to stream a blob it holds.
type ArtifactRequest struct {
	V      int    `json:"v"`
	Digest string `json:"digest"`
}

// ArtifactChunk is one piece of a relayed blob. Chunks of one digest are
// numbered 0..Total-1; Error set means the manager cannot serve it.
type ArtifactChunk struct {
	V      int    `json:"v"`
	Digest string `json:"digest"`
	Index  int    `json:"index"`
	Total  int    `json:"total"`
	Size   int64  `json:"size"`
	Data   []byte `json:"data,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Credential is a proplet's own secret, issued when it logged in with the
// join token for an id that had none (see KindCredential). The proplet
// stores it and logs in with it from then on.
type Credential struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// message is implemented by every protocol message: it exposes the
// version field Encode stamps and Decode checks.
type message interface {
	version() *int
}

func (m *Status) version() *int          { return &m.V }
func (m *Heartbeat) version() *int       { return &m.V }
func (m *Command) version() *int         { return &m.V }
func (m *Event) version() *int           { return &m.V }
func (m *FLUpdate) version() *int        { return &m.V }
func (m *ArtifactRequest) version() *int { return &m.V }
func (m *ArtifactChunk) version() *int   { return &m.V }
func (m *Credential) version() *int      { return &m.V }

// Encode marshals a message (a pointer to one of this package's message
// types), stamping the protocol version.
func Encode(msg any) ([]byte, error) {
	m, ok := msg.(message)
	if !ok {
		return nil, fmt.Errorf("wire: cannot encode %T", msg)
	}
	*m.version() = Version
	return json.Marshal(msg)
}

// Decode unmarshals a message and checks its protocol version.
func Decode(data []byte, msg any) error {
	m, ok := msg.(message)
	if !ok {
		return fmt.Errorf("wire: cannot decode into %T", msg)
	}
	if err := json.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("wire: decode %T: %w", msg, err)
	}
	if v := *m.version(); v != Version {
		return fmt.Errorf("wire: unsupported protocol version %d", v)
	}
	return nil
}
