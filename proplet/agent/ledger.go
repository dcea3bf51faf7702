package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/absmach/propeller/api/wire"
)

// ledger remembers which attempts this proplet accepted and finished, on
// disk, so that a start command repeated after a manager or proplet restart
// never runs a module twice. It is an append-only JSON-lines journal,
// rewritten compactly when it grows past twice its bound.
type ledger struct {
	path  string
	limit int
	sync  bool

	mu       sync.Mutex
	f        *os.File
	lines    int
	accepted map[wire.TaskRef]bool // accepted, not finished
	finished map[wire.TaskRef]bool
	order    []wire.TaskRef // finished, oldest first
}

type ledgerRec struct {
	T string `json:"t"`
	A int    `json:"a"`
	S string `json:"s"` // "a" accepted, "f" finished
}

func openLedger(dir string, limit int, doSync bool) (*ledger, error) {
	l := &ledger{
		path:     filepath.Join(dir, "attempts.jsonl"),
		limit:    limit,
		sync:     doSync,
		accepted: map[wire.TaskRef]bool{},
		finished: map[wire.TaskRef]bool{},
	}
	f, err := os.Open(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ledger: %w", err)
	default:
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r ledgerRec
			// A torn last line from a crash is skipped: its fsync never
			// returned, so nobody relied on it.
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			l.apply(wire.TaskRef{TaskID: r.T, Attempt: r.A}, r.S)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("ledger: read: %w", err)
		}
	}
	if err := l.rewrite(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *ledger) apply(ref wire.TaskRef, state string) {
	switch state {
	case "a":
		if !l.finished[ref] {
			l.accepted[ref] = true
		}
	case "f":
		delete(l.accepted, ref)
		if !l.finished[ref] {
			l.finished[ref] = true
			l.order = append(l.order, ref)
		}
		for len(l.order) > l.limit {
			delete(l.finished, l.order[0])
			l.order = l.order[1:]
		}
	}
}

// rewrite replaces the journal with the current state (tmp + rename).
func (l *ledger) rewrite() error {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	n := 0
	for _, ref := range l.order {
		_ = enc.Encode(ledgerRec{T: ref.TaskID, A: ref.Attempt, S: "f"})
		n++
	}
	for ref := range l.accepted {
		_ = enc.Encode(ledgerRec{T: ref.TaskID, A: ref.Attempt, S: "a"})
		n++
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err != nil {
		return fmt.Errorf("ledger: rewrite: %w", err)
	}
	l.f, err = os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	l.lines = n
	return nil
}

func (l *ledger) record(ref wire.TaskRef, state string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.apply(ref, state)
	if l.f == nil {
		return errors.New("ledger: closed")
	}
	b, _ := json.Marshal(ledgerRec{T: ref.TaskID, A: ref.Attempt, S: state})
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("ledger: append: %w", err)
	}
	if l.sync {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("ledger: sync: %w", err)
		}
	}
	l.lines++
	if l.lines > 2*l.limit+len(l.accepted)+16 {
		return l.rewrite()
	}
	return nil
}

// Accept records ref as started.
func (l *ledger) Accept(ref wire.TaskRef) error { return l.record(ref, "a") }

// Finish records ref as done, whatever its outcome.
func (l *ledger) Finish(ref wire.TaskRef) error { return l.record(ref, "f") }

// Seen reports whether ref was accepted or finished before.
func (l *ledger) Seen(ref wire.TaskRef) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted[ref] || l.finished[ref]
}

// Unfinished returns attempts accepted by an earlier process that never
// finished: that process died while they ran.
func (l *ledger) Unfinished() []wire.TaskRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	refs := make([]wire.TaskRef, 0, len(l.accepted))
	for ref := range l.accepted {
		refs = append(refs, ref)
	}
	return refs
}

func (l *ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
