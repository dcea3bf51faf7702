package proplet

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// ExecRecord is one line of the execution log: a module began ("start")
// or returned ("end") for one attempt. The log is evidence for the chaos
// suite (test/chaos), which checks from the proplets' own words that no
// attempt ran twice and no superseded attempt kept running.
type ExecRecord struct {
	Event   string    `json:"event"` // start or end
	Proplet string    `json:"proplet"`
	Task    string    `json:"task"`
	Attempt int       `json:"attempt"`
	Time    time.Time `json:"time"`
	// Reason is the failure reason of an end; empty when the module
	// succeeded.
	Reason string `json:"reason,omitempty"`
}

// execLog appends ExecRecords as JSON lines. Each line is written with one
// write(2) on an O_APPEND file, so a SIGKILL leaves whole lines only (a
// start without its end means the process died with the module running).
type execLog struct {
	mu      sync.Mutex
	f       *os.File
	proplet string
}

func openExecLog(path, proplet string) (*execLog, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("exec log: %w", err)
	}
	return &execLog{f: f, proplet: proplet}, nil
}

func (l *execLog) record(event, task string, attempt int, reason string) {
	if l == nil {
		return
	}
	b, _ := json.Marshal(ExecRecord{Event: event, Proplet: l.proplet, Task: task, Attempt: attempt, Time: time.Now().UTC(), Reason: reason})
	l.mu.Lock()
	defer l.mu.Unlock()
	// A failed write loses evidence, never a task: the log is opt-in
	// diagnostics, not state.
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *execLog) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
