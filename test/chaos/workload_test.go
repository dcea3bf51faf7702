package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
)

// kind is one sort of task in the stream and the outcome it must reach.
type kind struct {
	name   string
	weight int
	// build returns the request and a check of the terminal task: "" when
	// it is the right outcome, else what is wrong.
	build func(r *rand.Rand) (rest.TaskRequest, func(rest.Task) string)
}

// primes are π(n): what examples/cpu prints for n.
var primes = map[int]int{1_000_000: 78498, 2_000_000: 148933, 5_000_000: 348513, 10_000_000: 664579, 20_000_000: 1270607}

const (
	goodAttempts = 4
	badAttempts  = 2
)

// kinds are served to proplets inline (tiny WAT modules) or over HTTP
// from this test process, which no fault touches (the Go modules are
// megabytes; inlining them in every request would measure JSON).
func kinds(tb testing.TB) []kind {
	add, trap := exampletest.Build(tb, "add"), exampletest.Build(tb, "trap")
	arith, cpu := exampletest.Build(tb, "arith"), exampletest.Build(tb, "cpu")
	mux := http.NewServeMux()
	serve := func(name string, b []byte) (path, sum string) {
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(b) })
		return "/" + name, digest(b)
	}
	arithPath, arithDigest := serve("arith.wasm", arith)
	cpuPath, cpuDigest := serve("cpu.wasm", cpu)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	succeeded := func(check func(rest.Task) string) func(rest.Task) string {
		return func(t rest.Task) string {
			if t.Phase != rest.PhaseSucceeded {
				return fmt.Sprintf("phase %s (%s: %s), want Succeeded", t.Phase, t.Reason, t.Message)
			}
			return check(t)
		}
	}
	results := func(want float64) func(rest.Task) string {
		return succeeded(func(t rest.Task) string {
			if len(t.Results) != 1 || t.Results[0] != want {
				return fmt.Sprintf("results %v, want [%v]", t.Results, want)
			}
			return ""
		})
	}
	return []kind{
		{name: "add", weight: 5, build: func(r *rand.Rand) (rest.TaskRequest, func(rest.Task) string) {
			a, b := r.IntN(1000), r.IntN(1000)
			return rest.TaskRequest{File: add, Function: "add", Inputs: []float64{float64(a), float64(b)}, MaxAttempts: goodAttempts}, results(float64(a + b))
		}},
		{name: "fib", weight: 3, build: func(r *rand.Rand) (rest.TaskRequest, func(rest.Task) string) {
			n := 10 + r.IntN(60)
			return rest.TaskRequest{ImageURL: srv.URL + arithPath, Digest: arithDigest, Function: "fib", Inputs: []float64{float64(n)}, MaxAttempts: goodAttempts}, results(float64(fib(n)))
		}},
		{name: "primes", weight: 2, build: func(r *rand.Rand) (rest.TaskRequest, func(rest.Task) string) {
			// The longest run seconds: long enough to be frozen mid-run
			// by a pause and retried elsewhere meanwhile.
			ns := []int{1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000}
			n := ns[r.IntN(len(ns))]
			return rest.TaskRequest{ImageURL: srv.URL + cpuPath, Digest: cpuDigest, CLIArgs: []string{strconv.Itoa(n)}, MaxAttempts: goodAttempts}, succeeded(func(t rest.Task) string {
				if strings.TrimSpace(t.Stdout) != strconv.Itoa(primes[n]) {
					return fmt.Sprintf("stdout %q, want %d", t.Stdout, primes[n])
				}
				return ""
			})
		}},
		{name: "trap", weight: 1, build: func(*rand.Rand) (rest.TaskRequest, func(rest.Task) string) {
			return rest.TaskRequest{File: trap, Function: "divzero", Inputs: []float64{0}, MaxAttempts: badAttempts}, func(t rest.Task) string {
				if t.Phase != rest.PhaseFailed {
					return fmt.Sprintf("phase %s, want Failed", t.Phase)
				}
				return ""
			}
		}},
	}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func fib(n int) int64 {
	a, b := int64(0), int64(1)
	for ; n > 0; n-- {
		a, b = b, a+b
	}
	return a
}

// submitted is one task the stream asked for.
type submitted struct {
	key  string
	kind string
	id   string // empty until acknowledged
	max  int
	// good is set for a task that must succeed.
	good  bool
	check func(rest.Task) string
}

// stream submits tasks at a steady pace, each under an Idempotency-Key that
// is retried until the manager acknowledges it: a create that died with the
// manager must be answered, after the restart, with the same task.
type stream struct {
	run   string
	kinds []kind
	mu    sync.Mutex
	tasks []*submitted
	// retries counts creates answered only after an error.
	retries int
	// backlog says how many acknowledged tasks are not terminal yet; the
	// stream holds off above maxBacklog, so it is steady rather than a
	// queue that outgrows the proplets and takes minutes to drain.
	backlog func() int
}

const maxBacklog = 16

func (s *stream) pick(r *rand.Rand) kind {
	total := 0
	for _, k := range s.kinds {
		total += k.weight
	}
	n := r.IntN(total)
	for _, k := range s.kinds {
		if n -= k.weight; n < 0 {
			return k
		}
	}
	return s.kinds[0]
}

// submit runs until ctx ends; every gap comes from r.
func (s *stream) submit(ctx context.Context, c *rest.Client, r *rand.Rand, worker int) {
	for i := 0; ctx.Err() == nil; i++ {
		for s.backlog() > maxBacklog && ctx.Err() == nil {
			pause(ctx, 100*time.Millisecond)
		}
		k := s.pick(r)
		req, check := k.build(r)
		key := fmt.Sprintf("%s-w%d-%d", s.run, worker, i)
		req.Name = k.name
		req.TimeoutSeconds = 120
		req.Labels = map[string]string{"run": s.run, "kind": k.name, "key": key}
		sub := &submitted{key: key, kind: k.name, max: req.MaxAttempts, good: req.MaxAttempts == goodAttempts, check: check}
		s.mu.Lock()
		s.tasks = append(s.tasks, sub)
		s.mu.Unlock()
		for try := 0; ; try++ {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			task, err := c.CreateTask(cctx, req, rest.WithIdempotencyKey(key))
			cancel()
			if err == nil {
				s.mu.Lock()
				sub.id = task.ID
				if try > 0 {
					s.retries++
				}
				s.mu.Unlock()
				break
			}
			if ctx.Err() != nil {
				break // never acknowledged: not counted, but still at most one task
			}
			pause(ctx, 200*time.Millisecond)
		}
		pause(ctx, time.Duration(50+r.IntN(150))*time.Millisecond)
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (s *stream) acknowledged() []*submitted {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*submitted
	for _, t := range s.tasks {
		if t.id != "" {
			out = append(out, t)
		}
	}
	return out
}

// terminalWatch remembers the first terminal state seen of every task and
// flags a task whose terminal state later changes.
type terminalWatch struct {
	mu      sync.Mutex
	first   map[string]rest.Task
	changed []string
}

func fingerprint(t rest.Task) string {
	return fmt.Sprint(t.Phase, t.Results, t.Stdout, t.Reason, t.Attempt)
}

func (w *terminalWatch) observe(t rest.Task) {
	if !rest.Terminal(t.Phase) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f, ok := w.first[t.ID]
	if !ok {
		w.first[t.ID] = t
		return
	}
	if fingerprint(f) != fingerprint(t) && !slices.Contains(w.changed, t.ID) {
		w.changed = append(w.changed, t.ID)
	}
}

// poll lists the run's terminal tasks every few seconds until ctx ends;
// errors (the manager is down) are skipped.
func (w *terminalWatch) poll(ctx context.Context, c *rest.Client, run string) {
	for ctx.Err() == nil {
		_ = listRun(ctx, c, run, []string{rest.PhaseSucceeded, rest.PhaseFailed, rest.PhaseCancelled}, w.observe)
		pause(ctx, time.Second)
	}
}

// seen counts the tasks seen terminal.
func (w *terminalWatch) seen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first)
}

// listRun calls f for every task of run in phases (all when nil).
func listRun(ctx context.Context, c *rest.Client, run string, phases []string, f func(rest.Task)) error {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for t, err := range c.Tasks(lctx, rest.TaskFilter{Phases: phases, Labels: map[string]string{"run": run}, Page: rest.Page{Limit: 500}}) {
		if err != nil {
			return err
		}
		f(t)
	}
	return nil
}
