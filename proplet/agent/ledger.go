package agent

import (
	"strconv"
	"strings"
	"sync"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/outbox"
)

// Ledger states, stored as outbox marks.
const (
	markAccepted = 'a'
	markFinished = 'f'
)

// ledger remembers which attempts this proplet accepted and finished, so
// that a start command repeated after a manager or proplet restart does not
// run a module again once its start was acknowledged (see Agent.execute).
// Its records are marks in the outbox's log: an acceptance shares fsyncs
// with everything else committed at the same time, and a finish is
// committed in the same batch as the attempt's final event, which the log
// orders before it, so no crash can leave an attempt finished without its
// result on disk. An attempt that ends quickly is never marked accepted:
// its finish is its first and only record.
//
// It also keeps, in memory and up to a byte budget, the final reports of
// the attempts this process finished. The outbox forgets a report once the
// broker acknowledged it, but a broker can lose what it acknowledged (an
// embedded broker dies with its manager); the manager then repeats the
// start command, and the report is sent again instead of being lost.
type ledger struct {
	ob    *outbox.Outbox
	limit int

	mu       sync.Mutex
	accepted map[wire.TaskRef]bool // accepted, not finished
	finished map[wire.TaskRef]bool
	order    []wire.TaskRef // finished, oldest first

	results     map[wire.TaskRef][]outbox.Message
	resultOrder []wire.TaskRef // oldest first; may name forgotten results
	resultBytes int64
	resultLimit int64
}

func ledgerKey(ref wire.TaskRef) string {
	return strconv.Itoa(ref.Attempt) + "\x00" + ref.TaskID
}

func parseLedgerKey(k string) (wire.TaskRef, bool) {
	a, id, ok := strings.Cut(k, "\x00")
	if !ok {
		return wire.TaskRef{}, false
	}
	n, err := strconv.Atoi(a)
	return wire.TaskRef{TaskID: id, Attempt: n}, err == nil
}

func openLedger(ob *outbox.Outbox, limit int, resultBytes int64) *ledger {
	l := &ledger{
		ob:          ob,
		limit:       limit,
		accepted:    map[wire.TaskRef]bool{},
		finished:    map[wire.TaskRef]bool{},
		results:     map[wire.TaskRef][]outbox.Message{},
		resultLimit: resultBytes,
	}
	for _, m := range ob.Marks() {
		ref, ok := parseLedgerKey(m.Key)
		if !ok {
			continue
		}
		switch m.Value {
		case markAccepted:
			l.accepted[ref] = true
		case markFinished:
			l.finished[ref] = true
			l.order = append(l.order, ref)
		}
	}
	// Marks come oldest first, so a lowered limit forgets the oldest.
	if n := len(l.order) - limit; n > 0 {
		for _, ref := range l.order[:n] {
			delete(l.finished, ref)
		}
		l.order = l.order[n:]
	}
	return l
}

// Accept queues the record of ref as started; done yields once that is
// durable. Records are written in the order they are queued.
func (l *ledger) Accept(ref wire.TaskRef) (done <-chan error) {
	l.mu.Lock()
	if !l.finished[ref] {
		l.accepted[ref] = true
	}
	l.mu.Unlock()
	_, ch := l.ob.Submit(outbox.Batch{Marks: []outbox.Mark{{Key: ledgerKey(ref), Value: markAccepted}}})
	return ch
}

// Finish queues msgs (the attempt's final reports) and the record of ref as
// done, whatever its outcome, as one commit; done yields once that is
// durable. msgs are visible to the sender at once (outbox.Submit).
func (l *ledger) Finish(ref wire.TaskRef, msgs ...outbox.Message) ([]outbox.Appended, <-chan error) {
	marks := []outbox.Mark{{Key: ledgerKey(ref), Value: markFinished}}
	l.mu.Lock()
	delete(l.accepted, ref)
	if !l.finished[ref] {
		l.finished[ref] = true
		l.order = append(l.order, ref)
	}
	for len(l.order) > l.limit {
		old := l.order[0]
		l.order = l.order[1:]
		delete(l.finished, old)
		l.forgetResultLocked(old)
		// Forgetting rides along with this commit instead of costing a
		// write of its own.
		marks = append(marks, outbox.Mark{Key: ledgerKey(old)})
	}
	l.keepResultLocked(ref, msgs)
	l.mu.Unlock()
	res, ch := l.ob.Submit(outbox.Batch{Messages: msgs, Marks: marks})
	return res, ch
}

func (l *ledger) keepResultLocked(ref wire.TaskRef, msgs []outbox.Message) {
	l.forgetResultLocked(ref)
	var size int64
	for _, m := range msgs {
		size += int64(len(m.Payload))
	}
	if len(msgs) == 0 || size > l.resultLimit {
		return
	}
	l.results[ref] = msgs
	l.resultOrder = append(l.resultOrder, ref)
	l.resultBytes += size
	for l.resultBytes > l.resultLimit {
		old := l.resultOrder[0]
		l.resultOrder = l.resultOrder[1:]
		l.forgetResultLocked(old)
	}
	// Forgotten refs linger in resultOrder; compact once they dominate.
	if len(l.resultOrder) > 2*len(l.results)+64 {
		live := l.resultOrder[:0]
		for _, r := range l.resultOrder {
			if _, ok := l.results[r]; ok {
				live = append(live, r)
			}
		}
		l.resultOrder = live
	}
}

func (l *ledger) forgetResultLocked(ref wire.TaskRef) {
	for _, m := range l.results[ref] {
		l.resultBytes -= int64(len(m.Payload))
	}
	delete(l.results, ref)
}

// Result returns the final reports of ref if this process finished it and
// still remembers them.
func (l *ledger) Result(ref wire.TaskRef) []outbox.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results[ref]
}

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
