package orchestration

import "time"

// EventType is what a proplet reports about one attempt.
type EventType string

// Event types, mirroring api/wire's.
const (
	EventAccepted  EventType = "accepted"
	EventRunning   EventType = "running"
	EventSucceeded EventType = "succeeded"
	EventFailed    EventType = "failed"
)

// TaskEvent is a proplet's report about attempt Attempt of task TaskID.
// Recording is idempotent: an event for another attempt than the current
// one, or one that would move a task backwards, changes nothing.
type TaskEvent struct {
	TaskID    string
	Attempt   int
	PropletID string
	Type      EventType
	Time      time.Time
	Results   []float64
	Stdout    string
	Stderr    string
	ExitCode  *int
	Reason    string
	Error     string
}

// Heartbeat is a proplet's periodic liveness report.
type Heartbeat struct {
	PropletID string
	Instance  string
	Running   []AttemptRef
	FreeSlots int
}

// AttemptRef names one attempt of a task.
type AttemptRef struct {
	TaskID  string
	Attempt int
}
