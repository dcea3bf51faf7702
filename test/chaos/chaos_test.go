package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/test/harness"
)

// ciFaults are the faults of the CI run. proplet-pause is left out: with
// attempt fencing on main its invariants hold, but after pauses the run
// took up to the 3-minute settle bound to drain (seed 12: 252 s in all),
// past CI's 2-minute budget. `make soak` and CHAOS_FAULTS=all include it.
var ciFaults = []string{faultManagerKill, faultPropletKill, faultBrokerKill}

type config struct {
	seed     uint64
	duration time.Duration
	faults   []string
}

func loadConfig(t *testing.T) config {
	// CI (make test) replays one sequence of choices; make soak picks a
	// new seed each run.
	c := config{seed: 12, duration: 60 * time.Second, faults: ciFaults}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "CHAOS_SEED")
		c.seed = s
	}
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "CHAOS_DURATION")
		c.duration = d
	}
	switch v := os.Getenv("CHAOS_FAULTS"); v {
	case "":
	case "all":
		c.faults = allFaults
	default:
		c.faults = strings.Split(v, ",")
		for _, f := range c.faults {
			require.Contains(t, allFaults, f, "CHAOS_FAULTS: known kinds are %v", allFaults)
		}
	}
	return c
}

// TestChaos runs the stream under faults, lets the system settle and
// checks every invariant. Nothing in it waits for a time to pass to
// decide pass or fail: the settle wait is a bound on recovery, the
// invariants are about what happened.
func TestChaos(t *testing.T) {
	cfg := loadConfig(t)
	t.Logf("chaos: seed %d (CHAOS_SEED=%d replays it), faults for %s: %v", cfg.seed, cfg.seed, cfg.duration, cfg.faults)
	rng := rand.New(rand.NewPCG(cfg.seed, 1))

	ids := []string{"chaos-a", "chaos-b", "chaos-c"}
	sys := harness.NewSystem(t).WithMosquitto(ids...)
	hb := 3 * time.Second
	sys.StartManager(managerArgs(hb)...)
	cl := &cluster{t: t, sys: sys, ids: ids, hbTimeout: hb, dir: t.TempDir(), cur: map[string]*life{}}
	for _, id := range ids {
		cl.startProplet(id)
	}
	sys.WaitAlive(ids...)

	// The stream's own client: the harness replaces sys.Client on every
	// manager restart, the token stays.
	tok, err := os.ReadFile(filepath.Join(sys.DataDir, standalone.APITokenFile))
	require.NoError(t, err)
	client, err := rest.NewClient("http://"+sys.HTTPAddr, strings.TrimSpace(string(tok)))
	require.NoError(t, err)
	cl.client = client

	st := &stream{run: fmt.Sprintf("chaos-%d", cfg.seed), kinds: kinds(t)}
	watch := &terminalWatch{first: map[string]rest.Task{}}
	st.backlog = func() int { return len(st.acknowledged()) - watch.seen() }
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for w := range 2 {
		r := rand.New(rand.NewPCG(cfg.seed, uint64(10+w)))
		wg.Add(1)
		go func() { defer wg.Done(); st.submit(ctx, client, r, w) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); watch.poll(ctx, client, st.run) }()

	// Warm up before the first reading, so RSS before is a working
	// process, not a fresh one.
	pause(ctx, 5*time.Second)
	rssBefore := rssOf(cl)

	faults := map[string]int{}
	deadline := time.Now().Add(cfg.duration)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(1500+rng.IntN(3000)) * time.Millisecond)
		f := cl.inject(rng, cfg.faults)
		faults[f]++
		t.Logf("fault %s", f)
	}
	stop()
	wg.Wait()

	// Recovery: every acknowledged task must end without more faults.
	subs := st.acknowledged()
	maxOf := map[string]int{}
	for _, s := range subs {
		maxOf[s.id] = s.max
	}
	settled := func() bool {
		n := 0
		err := listRun(context.Background(), client, st.run, []string{rest.PhasePending, rest.PhaseScheduled, rest.PhaseRunning}, func(rest.Task) { n++ })
		return err == nil && n == 0
	}
	settleStart := time.Now()
	for end := time.Now().Add(3 * time.Minute); !settled() && time.Now().Before(end); {
		time.Sleep(500 * time.Millisecond)
	}
	settledIn := time.Since(settleStart).Round(time.Second)
	t.Logf("settled in %s", settledIn)
	rssAfter := rssOf(cl)

	var all []rest.Task
	require.NoError(t, listRun(context.Background(), client, st.run, nil, func(t rest.Task) { all = append(all, t) }))
	rep := newReport()
	for _, id := range ids {
		cl.killProplet(id)
	}
	sys.Manager.Kill()
	checkBolt(rep, filepath.Join(sys.DataDir, "propeller.db"))
	execs, err := readExecutions(cl.lives)
	require.NoError(t, err)
	fig := checkExecutions(rep, execs, maxOf, time.Now().UTC())
	fig.exhausted = checkTasks(rep, subs, all, watch, execs)

	summary := summarize(cfg, st, subs, faults, rep, fig, rssBefore, rssAfter) + fmt.Sprintf("settled in %s after the last fault\n", settledIn)
	t.Log(summary)
	if p := os.Getenv("CHAOS_REPORT"); p != "" {
		require.NoError(t, os.WriteFile(p, []byte(summary), 0o644))
	}
	require.Zero(t, rep.total(), "violations (seed %d): %v", cfg.seed, rep.examples)
}

func rssOf(c *cluster) map[string]int {
	out := map[string]int{"manager": rssKiB(c.sys.Manager.Pid())}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, l := range c.cur {
		out[id] = rssKiB(l.proc.Pid())
	}
	return out
}

func summarize(cfg config, st *stream, subs []*submitted, faults map[string]int, rep *report, fig figures, before, after map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary: seed %d, faults for %s\n", cfg.seed, cfg.duration)
	perKind := map[string]int{}
	for _, s := range subs {
		perKind[s.kind]++
	}
	st.mu.Lock()
	fmt.Fprintf(&b, "tasks: %d submitted, %d acknowledged %v, %d acknowledged only on a retry\n", len(st.tasks), len(subs), sorted(perKind), st.retries)
	st.mu.Unlock()
	total := 0
	for _, n := range faults {
		total += n
	}
	fmt.Fprintf(&b, "faults: %d %v\n", total, sorted(faults))
	fmt.Fprintf(&b, "executions: %d; duplicate executions: %d; superseded executions stopped only after the later attempt succeeded: %d (longest tail %s)\n", fig.executions, fig.duplicates, fig.stoppedLate, fig.maxOverrun.Round(time.Millisecond))
	fmt.Fprintf(&b, "tasks that used every attempt, each lost to a kill (Failed PropletLost, allowed): %d\n", fig.exhausted)
	fmt.Fprintf(&b, "violations: %d %v\n", rep.total(), sorted(rep.counts))
	kinds := make([]string, 0, len(rep.examples))
	for k := range rep.examples {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		for _, e := range rep.examples[k] {
			fmt.Fprintf(&b, "  %s: %s\n", k, e)
		}
	}
	procs := make([]string, 0, len(before))
	for p := range before {
		procs = append(procs, p)
	}
	slices.Sort(procs)
	for _, p := range procs {
		fmt.Fprintf(&b, "rss %s: %d KiB after warm-up, %d KiB at the end (restarts replace processes)\n", p, before[p], after[p])
	}
	return b.String()
}

func sorted(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}
