package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/test/harness"
)

// Fault kinds.
const (
	faultManagerKill = "manager-kill"
	faultPropletKill = "proplet-kill"
	faultBrokerKill  = "broker-kill"
	faultPause       = "proplet-pause"
)

var allFaults = []string{faultManagerKill, faultPropletKill, faultBrokerKill, faultPause}

// cluster is the system under test plus what the invariants need to know
// about its processes: each proplet incarnation's execution log and when
// it was killed (a start without an end ran until then).
type cluster struct {
	t         testing.TB
	sys       *harness.System
	ids       []string
	hbTimeout time.Duration
	client    *rest.Client
	dir       string

	mu    sync.Mutex
	lives []*life
	cur   map[string]*life
}

// life is one proplet process from start to kill.
type life struct {
	proplet string
	log     string
	proc    *harness.Proc
	killed  time.Time // zero while it runs
}

func (c *cluster) startProplet(id string) {
	c.mu.Lock()
	n := len(c.lives)
	c.mu.Unlock()
	l := &life{proplet: id, log: filepath.Join(c.dir, fmt.Sprintf("exec-%s-%d.jsonl", id, n))}
	l.proc = c.sys.StartProplet(id, "--exec-log", l.log, "--slots", "3", "--log-level", "info")
	c.mu.Lock()
	c.lives = append(c.lives, l)
	c.cur[id] = l
	c.mu.Unlock()
}

func (c *cluster) killProplet(id string) {
	c.mu.Lock()
	l := c.cur[id]
	c.mu.Unlock()
	l.proc.Kill()
	c.mu.Lock()
	l.killed = time.Now().UTC()
	c.mu.Unlock()
}

// inject applies one fault chosen by r and returns its kind. Each fault
// ends with the system whole again (restarted, resumed), so faults never
// pile up into a state no real deployment recovers from alone.
func (c *cluster) inject(r *rand.Rand, kinds []string) string {
	f := kinds[r.IntN(len(kinds))]
	switch f {
	case faultManagerKill:
		c.sys.Manager.Kill()
		c.sys.StartManager(managerArgs(c.hbTimeout)...)
	case faultPropletKill:
		id := c.ids[r.IntN(len(c.ids))]
		c.killProplet(id)
		c.startProplet(id)
	case faultBrokerKill:
		c.sys.RestartBroker()
	case faultPause:
		id := c.busiest(r)
		c.mu.Lock()
		p := c.cur[id].proc
		c.mu.Unlock()
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			c.t.Fatalf("SIGSTOP %s: %v", id, err)
		}
		// Past the deadline: the manager must declare it lost and retry
		// its attempts elsewhere while it is frozen mid-run.
		time.Sleep(c.hbTimeout + time.Duration(500+r.IntN(3000))*time.Millisecond)
		if err := p.Signal(syscall.SIGCONT); err != nil {
			c.t.Fatalf("SIGCONT %s: %v", id, err)
		}
	}
	return f
}

// busiest picks, by r, a proplet the manager says runs tasks, so a pause
// freezes modules mid-run; any proplet when none does or the manager does
// not answer.
func (c *cluster) busiest(r *rand.Rand) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var busy []string
	for p, err := range c.client.Proplets(ctx) {
		if err != nil {
			break
		}
		if len(p.Running) > 0 && slices.Contains(c.ids, p.ID) {
			busy = append(busy, p.ID)
		}
	}
	slices.Sort(busy)
	if len(busy) == 0 {
		return c.ids[r.IntN(len(c.ids))]
	}
	return busy[r.IntN(len(busy))]
}

func managerArgs(hb time.Duration) []string {
	return []string{"--heartbeat-timeout", hb.String(), "--log-level", "info"}
}

// rssKiB reads a process's resident set from /proc (Linux); 0 elsewhere.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}
