package bolt

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("bolt: store closed")

// groupCommit runs writes in shared transactions. One goroutine commits;
// whatever queued up while it was committing becomes the next transaction.
//
// This replaces bbolt's DB.Batch, which starts each batch with a timer:
// a lone writer then waits the whole delay before its fsync, and when all
// writers sit in the running batch the next one still waits the delay.
// Without a timer a lone write costs one commit, and batches grow with load
// by themselves (measured in bench_test.go: BenchmarkCreate, BenchmarkUpdate).
//
// Like DB.Batch, a write whose fn fails is taken out and re-run alone, and
// the others are re-run together, so a fn may run more than once.
type groupCommit struct {
	db  *bbolt.DB
	max int
	ops chan *commitOp
	// commits counts committed write transactions (Stats).
	commits atomic.Uint64

	// mu lets stop wait for every submitted write: writers hold it shared
	// from submission until their result arrives.
	mu     sync.RWMutex
	closed bool
	done   chan struct{}
}

type commitOp struct {
	fn  func(*bbolt.Tx) error
	res chan error
}

// errSolo tells a submitter to re-run its fn in a transaction of its own.
var errSolo = errors.New("re-run alone")

func startGroupCommit(db *bbolt.DB, max int) *groupCommit {
	g := &groupCommit{db: db, max: max, ops: make(chan *commitOp, max), done: make(chan struct{})}
	go g.loop()
	return g
}

func (g *groupCommit) do(fn func(*bbolt.Tx) error) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	op := &commitOp{fn: fn, res: make(chan error, 1)}
	g.ops <- op
	err := <-op.res
	if errors.Is(err, errSolo) {
		// In the caller's goroutine, so a panicking fn panics its caller.
		err = g.db.Update(fn)
		if err == nil {
			g.commits.Add(1)
		}
	}
	return err
}

func (g *groupCommit) stop() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.ops)
	}
	g.mu.Unlock()
	<-g.done
}

func (g *groupCommit) loop() {
	defer close(g.done)
	batch := make([]*commitOp, 0, g.max)
	for op := range g.ops {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < g.max {
			select {
			case op, ok := <-g.ops:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		g.commit(batch)
		clear(batch)
	}
}

func (g *groupCommit) commit(batch []*commitOp) {
	for len(batch) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i, op := range batch {
				if err := safeCall(op.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			batch[failed].res <- errSolo
			batch = append(batch[:failed], batch[failed+1:]...)
			continue
		}
		if err == nil {
			g.commits.Add(1)
		}
		for _, op := range batch {
			op.res <- err
		}
		return
	}
}

// safeCall keeps a panicking fn from killing the committer; the fn is then
// re-run alone by its caller, where the panic surfaces.
func safeCall(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(tx)
}
