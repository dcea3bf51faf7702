package orchestration

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Deps are the engine's ports. Store and Dispatcher are required.
type Deps struct {
	Store      Store
	Dispatcher Dispatcher
	// Clock defaults to the wall clock.
	Clock Clock
	// NewID defaults to NewTimeIDGen(Clock).
	NewID IDGen
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told about every task change the engine
	// commits, in commit order per task. It runs on the engine's goroutine
	// with the task's lock held: it must be quick and must not call back
	// into the engine for the same task.
	Observer func(Task)
	// Link, when set, is the manager's connection to the broker: liveness
	// is suspended while it is down (see BrokerLink). Nil means always up.
	Link BrokerLink
	// Random returns a number in [0, 1) that spreads retry delays (see
	// Engine.jitter). It defaults to math/rand/v2; tests inject their own.
	Random func() float64
}

// ErrTerminal is returned when an operation needs a task that has not
// finished yet.
var ErrTerminal = errors.New("task already finished")

// Engine owns the lifecycle of every task. All methods are safe for
// concurrent use.
//
// # Notes
//
//   - Only in-flight work lives in memory: pending ids with their placement
//     constraints, and dispatched attempts with their deadline. Finished
//     tasks are only in the store.
//   - Every decision about one task is taken under that task's lock (a
//     striped mutex), and written to the store before it is acted on, so a
//     crash between the two leaves a state Recover can finish.
type Engine struct {
	cfg     Config
	store   Store
	disp    Dispatcher
	clock   Clock
	newID   IDGen
	log     *slog.Logger
	observe func(Task)
	random  func() float64
	link    BrokerLink

	seed  maphash.Seed
	locks [256]sync.Mutex

	mu       sync.Mutex
	proplets map[string]*propletState
	order    []string // proplet ids, sorted: the walk every ranker takes
	rank     ranker
	flights  map[string]*flight // Scheduled/Running tasks
	pending  map[string]*waiting
	queue    []string // FIFO of pending ids; may hold stale ids
	seq      uint64
	linkSeen linkSeen

	idem idemState
}

// propletState is a proplet as the engine tracks it. Proplet.Alive is its
// only liveness record; Proplet.Running stays empty, since assigned is the
// truth and snapshotLocked derives Running from it.
type propletState struct {
	Proplet
	// assigned are the in-flight task ids placed here; len is the busy
	// slot count.
	assigned map[string]struct{}
}

type flight struct {
	propletID string
	attempt   int
	deadline  time.Time
	// placed is when the attempt's start went out (or, recovered, when
	// the engine started); missed counts heartbeats in a row from the
	// proplet that did not list it since ReconcileGrace passed, and asked
	// the starts sent again because of that (see reconcileLocked).
	placed time.Time
	missed int
	asked  int
	// redispatch marks an attempt recovered after a restart. Its start
	// command may never have left, or its result may have been lost with
	// the broker (an embedded broker dies with the manager after it
	// acknowledged the result to the proplet). So the start is sent again,
	// same attempt, once the proplet is alive: a proplet runs an attempt
	// it never saw, ignores one still running, and re-sends the result of
	// one it finished.
	redispatch bool
}

// New builds an engine. Call Recover before serving, then Run.
func New(cfg Config, deps Deps) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Dispatcher == nil {
		return nil, errors.New("orchestration: store and dispatcher are required")
	}
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.NewID == nil {
		deps.NewID = NewTimeIDGen(deps.Clock)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Observer == nil {
		deps.Observer = func(Task) {}
	}
	if deps.Random == nil {
		deps.Random = rand.Float64
	}
	return &Engine{
		cfg:      cfg,
		store:    deps.Store,
		disp:     deps.Dispatcher,
		clock:    deps.Clock,
		newID:    deps.NewID,
		log:      deps.Logger,
		observe:  deps.Observer,
		random:   deps.Random,
		link:     deps.Link,
		seed:     maphash.MakeSeed(),
		rank:     newRanker(cfg.Policy),
		proplets: make(map[string]*propletState),
		flights:  make(map[string]*flight),
		pending:  make(map[string]*waiting),
	}, nil
}

// jitter spreads a retry delay d uniformly over (d/2, d] ("equal
// jitter"): tasks that failed together, say with their proplet, come back
// spread out instead of in one burst, and none waits less than half its
// backoff.
func (e *Engine) jitter(d time.Duration) time.Duration {
	r := min(max(e.random(), 0), 1)
	return d - time.Duration(r*float64(d/2))
}

// Config returns the effective configuration, defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) lock(id string) func() {
	m := &e.locks[maphash.String(e.seed, id)%uint64(len(e.locks))]
	m.Lock()
	return m.Unlock
}

// Run ticks until ctx ends. It returns ctx.Err().
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// Get returns a task from the store.
func (e *Engine) Get(ctx context.Context, id string) (Task, error) {
	return e.store.GetTask(ctx, id)
}

// List returns a page of tasks from the store.
func (e *Engine) List(ctx context.Context, f TaskFilter) (TaskPage, error) {
	return e.store.ListTasks(ctx, f)
}

// update writes through the store, stamps UpdatedAt and tells the
// observer. Callers hold the task's lock.
func (e *Engine) update(ctx context.Context, id string, fn UpdateFunc) (Task, error) {
	now := e.clock.Now()
	// Stores treat ErrNoChange as success; the engine needs to know.
	var unchanged bool
	t, err := e.store.UpdateTask(ctx, id, func(t *Task) error {
		unchanged = false
		err := fn(t)
		if errors.Is(err, ErrNoChange) {
			unchanged = true
		}
		if err != nil {
			return err
		}
		t.Status.UpdatedAt = now
		return nil
	})
	if err == nil && unchanged {
		err = ErrNoChange
	}
	if err != nil {
		// Callers answer with the task as it stands.
		if errors.Is(err, ErrNoChange) || errors.Is(err, ErrTerminal) {
			if cur, gerr := e.store.GetTask(ctx, id); gerr == nil {
				t = cur
			}
		}
		return t, err
	}
	e.observe(t)
	return t, nil
}
