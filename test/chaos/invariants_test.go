package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet"
)

// Violation kinds; docs/reliability.md defines each.
const (
	vNotTerminal      = "not-terminal"
	vWrongResult      = "wrong-result"
	vTerminalChanged  = "terminal-changed"
	vAttemptsExceeded = "attempts-exceeded"
	vDuplicateTask    = "duplicate-task"
	vAttemptTwice     = "attempt-on-two-proplets"
	vRanAfterSuccess  = "ran-after-later-success"
	vBoltCheck        = "bolt-check"
)

// report collects violations by kind with a few examples each.
type report struct {
	counts   map[string]int
	examples map[string][]string
}

func newReport() *report {
	return &report{counts: map[string]int{}, examples: map[string][]string{}}
}

func (r *report) add(kind, format string, args ...any) {
	r.counts[kind]++
	if len(r.examples[kind]) < 5 {
		r.examples[kind] = append(r.examples[kind], fmt.Sprintf(format, args...))
	}
}

func (r *report) total() int {
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

// execution is one module run from a proplet's execution log.
type execution struct {
	life   *life
	task   string
	try    int
	start  time.Time
	end    time.Time // the end line, else the kill, else zero (still running)
	ended  bool      // an end line exists
	reason string
}

// readExecutions pairs each life's start and end lines.
func readExecutions(lives []*life) ([]*execution, error) {
	var out []*execution
	for _, l := range lives {
		f, err := os.Open(l.log)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		open := map[string]*execution{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec proplet.ExecRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("%s: %w", l.log, err)
			}
			k := fmt.Sprint(rec.Task, "/", rec.Attempt)
			switch rec.Event {
			case "start":
				e := &execution{life: l, task: rec.Task, try: rec.Attempt, start: rec.Time}
				if prev := open[k]; prev != nil {
					// The same attempt started again by the same process
					// before it ended: keep both.
					out = append(out, prev)
				}
				open[k] = e
			case "end":
				if e := open[k]; e != nil {
					e.end, e.ended, e.reason = rec.Time, true, rec.Reason
					out = append(out, e)
					delete(open, k)
				}
			}
		}
		_ = f.Close()
		for _, e := range open {
			e.end = l.killed
			out = append(out, e)
		}
	}
	return out, nil
}

func (e *execution) endOr(now time.Time) time.Time {
	if e.end.IsZero() {
		return now
	}
	return e.end
}

// figures are the counts a run prints besides violations.
type figures struct {
	executions int
	// stoppedLate counts superseded executions that the proplet stopped
	// only after a later attempt had already succeeded (the proplet was
	// frozen meanwhile); maxOverrun is the longest such tail.
	stoppedLate int
	maxOverrun  time.Duration
	// duplicates counts executions that ran on after a later attempt of
	// their task succeeded, or beside the same attempt elsewhere.
	duplicates int
	// exhausted counts tasks failed PropletLost after every attempt was
	// killed (checkTasks).
	exhausted int
}

// checkExecutions applies the invariants the proplets' logs evidence: no
// attempt ran on two proplets at once; no module ran after a later attempt
// of its task succeeded; no task used more than its attempts.
func checkExecutions(rep *report, execs []*execution, maxOf map[string]int, now time.Time) figures {
	fig := figures{executions: len(execs)}
	byTask := map[string][]*execution{}
	for _, e := range execs {
		byTask[e.task] = append(byTask[e.task], e)
	}
	for task, es := range byTask {
		sort.Slice(es, func(i, j int) bool { return es[i].start.Before(es[j].start) })
		attempts := map[int]bool{}
		for _, e := range es {
			attempts[e.try] = true
		}
		if max, ok := maxOf[task]; ok && len(attempts) > max {
			rep.add(vAttemptsExceeded, "task %s: %d attempts ran, max %d", task, len(attempts), max)
		}
		for i, a := range es {
			for _, b := range es[i+1:] {
				if a.try == b.try && a.life.proplet != b.life.proplet && b.start.Before(a.endOr(now)) {
					rep.add(vAttemptTwice, "task %s attempt %d on %s and %s at once", task, a.try, a.life.proplet, b.life.proplet)
					fig.duplicates++
				}
			}
		}
		for _, won := range es {
			if !won.ended || won.reason != "" {
				continue
			}
			for _, old := range es {
				if old.try >= won.try {
					continue
				}
				switch {
				case old.start.After(won.end):
					rep.add(vRanAfterSuccess, "task %s attempt %d started on %s at %s, after attempt %d succeeded at %s", task, old.try, old.life.proplet, old.start.Format(time.StampMilli), won.try, won.end.Format(time.StampMilli))
					fig.duplicates++
				case old.endOr(now).After(won.end) && old.ended && old.reason == wire.ReasonStopped:
					// Fenced, but a frozen process can act only once it
					// runs again: counted, not a violation.
					fig.stoppedLate++
					fig.maxOverrun = max(fig.maxOverrun, old.end.Sub(won.end))
				case old.endOr(now).After(won.end):
					how := "ran to its end"
					if !old.ended {
						how = "was still running when its proplet was killed"
					}
					rep.add(vRanAfterSuccess, "task %s attempt %d on %s %s at %s, after attempt %d succeeded on %s at %s", task, old.try, old.life.proplet, how, old.endOr(now).Format(time.StampMilli), won.try, won.life.proplet, won.end.Format(time.StampMilli))
					fig.duplicates++
				}
			}
		}
	}
	return fig
}

// checkTasks applies the invariants the REST API evidences: every
// acknowledged task is terminal with the right outcome, and stayed in the
// first terminal state it was seen in; at most one task per idempotency
// key; no task past its max attempts.
//
// A task that should succeed may instead fail PropletLost having used every
// attempt, when each attempt was lost to a kill: that is the promise of
// maxAttempts, counted in exhausted. It is a wrong result when an attempt
// of it ran to its end on a proplet (the proplet was healthy and its work
// was thrown away: issue 12 defect 1).
func checkTasks(rep *report, subs []*submitted, all []rest.Task, w *terminalWatch, execs []*execution) (exhausted int) {
	ended := map[string][]*execution{}
	for _, e := range execs {
		if e.ended && e.reason == "" {
			ended[e.task] = append(ended[e.task], e)
		}
	}
	byID := map[string]rest.Task{}
	perKey := map[string][]string{}
	for _, t := range all {
		byID[t.ID] = t
		perKey[t.Labels["key"]] = append(perKey[t.Labels["key"]], t.ID)
	}
	for key, ids := range perKey {
		if len(ids) > 1 {
			rep.add(vDuplicateTask, "key %s made tasks %s", key, strings.Join(ids, ", "))
		}
	}
	for _, s := range subs {
		t, ok := byID[s.id]
		switch {
		case !ok:
			rep.add(vNotTerminal, "task %s (%s) acknowledged but gone", s.id, s.kind)
			continue
		case !rest.Terminal(t.Phase):
			rep.add(vNotTerminal, "task %s (%s) still %s", s.id, s.kind, t.Phase)
			continue
		}
		if msg := s.check(t); msg != "" {
			switch {
			case s.good && t.Phase == rest.PhaseFailed && t.Reason == "PropletLost" && t.Attempt == s.max && len(ended[t.ID]) == 0:
				exhausted++
			case len(ended[t.ID]) > 0 && t.Reason == "PropletLost":
				e := ended[t.ID][len(ended[t.ID])-1]
				rep.add(vWrongResult, "task %s (%s): %s, though attempt %d succeeded on %s at %s", s.id, s.kind, msg, e.try, e.life.proplet, e.end.Format(time.StampMilli))
			default:
				rep.add(vWrongResult, "task %s (%s): %s", s.id, s.kind, msg)
			}
		}
		if t.Attempt > s.max {
			rep.add(vAttemptsExceeded, "task %s (%s): attempt %d, max %d", s.id, s.kind, t.Attempt, s.max)
		}
		w.observe(t)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range w.changed {
		rep.add(vTerminalChanged, "task %s: first %s, later %s", id, fingerprint(w.first[id]), fingerprint(byID[id]))
	}
	return exhausted
}

// checkBolt runs bbolt's consistency check over the manager's file.
func checkBolt(rep *report, path string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		rep.add(vBoltCheck, "open %s: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			rep.add(vBoltCheck, "%v", err)
		}
		return nil
	})
	if err != nil {
		rep.add(vBoltCheck, "%v", err)
	}
}
