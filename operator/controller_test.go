package operator_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/examples/fl/digits"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/test/ocitest"
)

const joinToken = "test-join-token"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// propellerBinary builds cmd/propeller once: proplets in these tests are
// real processes.
func propellerBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "propeller-operator-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "propeller")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/propeller")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build propeller: %w\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proplet struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	cache string // --cache-dir
}

// secret is the credential the proplet was issued when it enrolled with
// the join token, once it stored it.
func (p *proplet) secret(t testing.TB) string {
	t.Helper()
	var b []byte
	require.Eventually(t, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(p.cache, "state", "credential"))
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "the proplet did not enroll")
	return strings.TrimSpace(string(b))
}

// kill ends the proplet without a goodbye: the broker publishes its
// last-will.
func (p *proplet) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func startProplet(t testing.TB, mqttAddr, id string, extra ...string) *proplet {
	t.Helper()
	return startPropletWithToken(t, mqttAddr, id, joinToken, extra...)
}

func startPropletWithToken(t testing.TB, mqttAddr, id, token string, extra ...string) *proplet {
	t.Helper()
	cache := filepath.Join(t.TempDir(), "cache")
	args := append([]string{"proplet", "--broker", "mqtt://" + mqttAddr, "--id", id, "--token", token,
		"--cache-dir", cache, "--heartbeat-interval", "200ms", "--log-level", "debug"}, extra...)
	cmd := exec.Command(propellerBinary(t), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	p := &proplet{cmd: cmd, out: out, done: make(chan struct{}), cache: cache}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("proplet %s output:\n%s", id, out.String())
		}
	})
	return p
}

type operatorProc struct {
	mqttAddr string
	cancel   context.CancelFunc
	done     chan error
	ready    chan string
	stopped  bool
}

func (o *operatorProc) stop(t testing.TB) {
	t.Helper()
	if o.stopped {
		return
	}
	o.stopped = true
	o.cancel()
	select {
	case err := <-o.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("operator did not stop:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// startOperator runs operator.Run in-process against envtest, with an
// embedded broker on a random port.
func startOperator(t testing.TB, ns, mqttAddr string) *operatorProc {
	t.Helper()
	return startOperatorIn(t, ns, mqttAddr, t.TempDir())
}

func startOperatorIn(t testing.TB, ns, mqttAddr, dataDir string, opts ...func(*operator.Config)) *operatorProc {
	t.Helper()
	o := launchOperator(t, ns, mqttAddr, dataDir, false, opts...)
	o.waitReady(t)
	return o
}

// launchOperator starts operator.Run without waiting for it to lead.
func launchOperator(t testing.TB, ns, mqttAddr, dataDir string, leaderElection bool, opts ...func(*operator.Config)) *operatorProc {
	t.Helper()
	if mqttAddr == "" {
		mqttAddr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &operatorProc{cancel: cancel, done: make(chan error, 1), ready: make(chan string, 1)}
	cfg := operator.Config{
		Rest:           restCfg,
		Namespace:      ns,
		MQTTAddr:       mqttAddr,
		JoinToken:      joinToken,
		DataDir:        dataDir,
		MetricsAddr:    "0",
		HealthAddr:     "0",
		LeaderElection: leaderElection,
		Engine: orchestration.Config{
			HeartbeatTimeout: 5 * time.Second,
			TickInterval:     100 * time.Millisecond,
			BackoffBase:      100 * time.Millisecond,
		},
		Logger: slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Ready:  func(addr string) { o.ready <- addr },
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	go func() { o.done <- operator.Run(ctx, cfg) }()
	t.Cleanup(func() { o.stop(t) })
	return o
}

// waitReady waits until the operator leads and serves.
func (o *operatorProc) waitReady(t testing.TB) {
	t.Helper()
	select {
	case o.mqttAddr = <-o.ready:
	case err := <-o.done:
		o.stopped = true
		t.Fatalf("operator exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("operator did not become ready")
	}
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// serveModules serves example modules over HTTP, as a registry would.
func serveModules(t testing.TB, names ...string) string {
	t.Helper()
	mux := http.NewServeMux()
	// As a web server does: with Last-Modified, so proplets revalidate
	// (304) rather than download a module per task.
	built := time.Now()
	for _, n := range names {
		b := exampletest.Build(t, n)
		mux.HandleFunc("/"+n+".wasm", func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, n+".wasm", built, bytes.NewReader(b))
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func getTask(t testing.TB, ns, name string) *v1.WasmTask {
	t.Helper()
	wt := &v1.WasmTask{}
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, wt))
	return wt
}

func waitPhase(t testing.TB, ns, name string, phase v1.TaskPhase) *v1.WasmTask {
	t.Helper()
	var wt *v1.WasmTask
	require.Eventually(t, func() bool {
		wt = getTask(t, ns, name)
		return wt.Status.Phase == phase
	}, 60*time.Second, 50*time.Millisecond, "task %s never reached %s", name, phase)
	return wt
}

func newTask(ns, name, image string, mut func(*v1.WasmTaskSpec)) *v1.WasmTask {
	wt := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	wt.Spec.ImageURL = image
	if mut != nil {
		mut(&wt.Spec)
	}
	return wt
}

// TestWasmTaskLifecycle drives WasmTasks through a real operator, broker
// and proplet, as `kubectl apply` would.
func TestWasmTaskLifecycle(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith", "spin")
	op := startOperator(t, ns, "")
	startProplet(t, op.mqttAddr, "edge-1", "--labels", "arch=test", "--slots", "2")

	t.Run("runs to Succeeded with results", func(t *testing.T) {
		wt := newTask(ns, "add", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{1, 2}
		})
		require.NoError(t, k8s.Create(t.Context(), wt))
		got := waitPhase(t, ns, "add", v1.TaskSucceeded)
		require.Equal(t, []float64{3}, got.Status.Results)
		require.Equal(t, "edge-1", got.Status.PropletID)
		require.True(t, meta.IsStatusConditionTrue(got.Status.Conditions, v1.ConditionReady))
		// The outcome is an event on the object, naming the proplet.
		require.Eventually(t, func() bool {
			return slices.Contains(eventNotes(t, ns, "add"), "Succeeded: attempt 1: Succeeded on edge-1")
		}, 30*time.Second, 100*time.Millisecond)
		// A finished task has nothing to stop: no finalizer, deleted at once.
		require.NoError(t, k8s.Delete(t.Context(), wt))
		require.Eventually(t, func() bool {
			return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(wt), &v1.WasmTask{}))
		}, 30*time.Second, 50*time.Millisecond)
	})

	t.Run("pinned to a dead proplet says why", func(t *testing.T) {
		wt := newTask(ns, "pinned", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{1, 2}
			s.PropletID = "ghost"
		})
		require.NoError(t, k8s.Create(t.Context(), wt))
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "pinned")
			c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionScheduled)
			return got.Status.Phase == v1.TaskPending && c != nil && c.Status == metav1.ConditionFalse &&
				c.Reason == orchestration.ReasonUnschedulable && c.Message == "proplet ghost is not known"
		}, 30*time.Second, 50*time.Millisecond)
	})

	t.Run("suspended until released", func(t *testing.T) {
		wt := newTask(ns, "held", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{2, 5}
			s.Suspend = true
		})
		require.NoError(t, k8s.Create(t.Context(), wt))
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "held")
			return got.Status.Phase == v1.TaskPending && got.Status.Held
		}, 30*time.Second, 50*time.Millisecond)
		got := getTask(t, ns, "held")
		before := got.DeepCopy()
		got.Spec.Suspend = false
		require.NoError(t, k8s.Patch(t.Context(), got, client.MergeFrom(before)))
		got = waitPhase(t, ns, "held", v1.TaskSucceeded)
		require.Equal(t, []float64{7}, got.Status.Results)
	})

	t.Run("group selector places the task", func(t *testing.T) {
		g := &v1.PropletGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "testers"}}
		g.Spec.Selector = map[string]string{"arch": "test"}
		wt := newTask(ns, "grouped", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{4, 4}
			s.PropletGroupRef = &v1.LocalObjectReference{Name: "testers"}
		})
		// The task first, so it waits for its group.
		require.NoError(t, k8s.Create(t.Context(), wt))
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "grouped")
			return meta.IsStatusConditionFalse(got.Status.Conditions, operator.ConditionGroupResolved)
		}, 30*time.Second, 50*time.Millisecond)
		require.NoError(t, k8s.Create(t.Context(), g))
		got := waitPhase(t, ns, "grouped", v1.TaskSucceeded)
		require.Equal(t, map[string]string{"arch": "test"}, got.Status.Selector)
		require.Equal(t, []float64{8}, got.Status.Results)
	})

	// freesBothSlots shows the proplet got the stop: both its slots are
	// free again, so two endless tasks run at once on them. It deletes
	// them after.
	freesBothSlots := func(t *testing.T, prefix string) {
		t.Helper()
		var tasks []*v1.WasmTask
		for _, n := range []string{prefix + "-1", prefix + "-2"} {
			wt := newTask(ns, n, url+"/spin.wasm", nil)
			require.NoError(t, k8s.Create(t.Context(), wt))
			tasks = append(tasks, wt)
		}
		for _, wt := range tasks {
			waitPhase(t, ns, wt.Name, v1.TaskRunning)
		}
		for _, wt := range tasks {
			require.NoError(t, k8s.Delete(t.Context(), wt))
		}
		for _, wt := range tasks {
			require.Eventually(t, func() bool {
				return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(wt), &v1.WasmTask{}))
			}, 30*time.Second, 50*time.Millisecond)
		}
	}

	t.Run("delete stops a running task", func(t *testing.T) {
		wt := newTask(ns, "spin", url+"/spin.wasm", nil)
		require.NoError(t, k8s.Create(t.Context(), wt))
		// In flight for a while: the finalizer and a progress event.
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "spin")
			return got.Status.Phase == v1.TaskRunning && slices.Contains(got.Finalizers, operator.TaskFinalizer)
		}, 30*time.Second, 50*time.Millisecond)
		require.Eventually(t, func() bool {
			return slices.Contains(eventNotes(t, ns, "spin"), "Running: attempt 1: Running on edge-1")
		}, 30*time.Second, 100*time.Millisecond)
		require.NoError(t, k8s.Delete(t.Context(), wt))
		require.Eventually(t, func() bool {
			err := k8s.Get(t.Context(), client.ObjectKeyFromObject(wt), &v1.WasmTask{})
			return apierrors.IsNotFound(err)
		}, 30*time.Second, 50*time.Millisecond)
		require.Contains(t, eventNotes(t, ns, "spin"), "Stopped: stopped on deletion")
		freesBothSlots(t, "after")
	})

	t.Run("delete before the finalizer stops it too", func(t *testing.T) {
		wt := newTask(ns, "spin-early", url+"/spin.wasm", nil)
		require.NoError(t, k8s.Create(t.Context(), wt))
		// Delete it while it has no finalizer yet; the precondition makes
		// sure of that (a finalizer added meanwhile moves the version).
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "spin-early")
			if got.Status.Phase != v1.TaskScheduled && got.Status.Phase != v1.TaskRunning {
				return false
			}
			require.Empty(t, got.Finalizers, "in flight for under %s", "the hold")
			err := k8s.Delete(t.Context(), got, client.Preconditions{ResourceVersion: &got.ResourceVersion})
			require.True(t, err == nil || apierrors.IsConflict(err), "delete: %v", err)
			return err == nil
		}, 30*time.Second, 10*time.Millisecond)
		require.True(t, apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(wt), &v1.WasmTask{})))
		freesBothSlots(t, "early")
	})
}

// eventNotes lists "reason: note" of the events about one object.
func eventNotes(t *testing.T, ns, name string) []string {
	t.Helper()
	list := &eventsv1.EventList{}
	require.NoError(t, k8s.List(t.Context(), list, client.InNamespace(ns)))
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}

// TestPropletGroupMembership follows proplets joining and leaving.
func TestPropletGroupMembership(t *testing.T) {
	ns := newNamespace(t)
	op := startOperator(t, ns, "")
	g := &v1.PropletGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "arm"}}
	g.Spec.Selector = map[string]string{"arch": "arm64"}
	g.Spec.MinMembers = 2
	require.NoError(t, k8s.Create(t.Context(), g))

	status := func() v1.PropletGroupStatus {
		got := &v1.PropletGroup{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(g), got))
		return got.Status
	}
	require.Eventually(t, func() bool { return status().Phase == v1.GroupEmpty }, 30*time.Second, 50*time.Millisecond)

	a := startProplet(t, op.mqttAddr, "arm-a", "--labels", "arch=arm64", "--slots", "3")
	startProplet(t, op.mqttAddr, "x86-a", "--labels", "arch=amd64")
	require.Eventually(t, func() bool {
		s := status()
		return s.Phase == v1.GroupDegraded && s.Alive == 1 && s.Capacity == 3
	}, 30*time.Second, 50*time.Millisecond)

	startProplet(t, op.mqttAddr, "arm-b", "--labels", "arch=arm64", "--slots", "1")
	require.Eventually(t, func() bool {
		s := status()
		return s.Phase == v1.GroupReady && s.Alive == 2 && s.Total == 2 && s.Capacity == 4 && s.Free == 4
	}, 30*time.Second, 50*time.Millisecond)

	a.kill()
	require.Eventually(t, func() bool {
		s := status()
		return s.Phase == v1.GroupDegraded && s.Alive == 1 && s.Total == 2 && s.Capacity == 1
	}, 30*time.Second, 50*time.Millisecond)

	// A task pinned to the proplet that just died says so.
	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "to-dead", "oci://registry.local/wasm/add:v1", func(s *v1.WasmTaskSpec) {
		s.PropletID = "arm-a"
	})))
	require.Eventually(t, func() bool {
		got := getTask(t, ns, "to-dead")
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionScheduled)
		return got.Status.Phase == v1.TaskPending && c != nil && c.Status == metav1.ConditionFalse &&
			c.Reason == orchestration.ReasonUnschedulable && c.Message == "proplet arm-a is not alive"
	}, 30*time.Second, 50*time.Millisecond)
}

// TestWasmTaskOnIDGroup: a WasmTask whose PropletGroup lists proplet ids
// runs on a listed proplet only (and, when the group also has a selector,
// on one carrying its labels), keeps the ids it was admitted with when the
// group changes later, and with no listed proplet alive waits Pending,
// Unschedulable, naming the ids.
func TestWasmTaskOnIDGroup(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith")
	op := startOperator(t, ns, "")
	a := startProplet(t, op.mqttAddr, "listed-a", "--labels", "zone=x", "--slots", "2")
	b := startProplet(t, op.mqttAddr, "listed-b", "--labels", "zone=y", "--slots", "2")
	// The roomiest proplet is not listed: without the candidate set,
	// round-robin and least-loaded would both use it.
	startProplet(t, op.mqttAddr, "unlisted", "--labels", "zone=y", "--slots", "8")

	group := func(name string, sel map[string]string, ids ...string) *v1.PropletGroup {
		g := &v1.PropletGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		g.Spec.Selector, g.Spec.PropletIDs = sel, ids
		require.NoError(t, k8s.Create(t.Context(), g))
		return g
	}
	groupStatus := func(g *v1.PropletGroup) v1.PropletGroupStatus {
		got := &v1.PropletGroup{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(g), got))
		return got.Status
	}
	members := func(g *v1.PropletGroup) []string {
		var out []string
		for _, m := range groupStatus(g).Members {
			out = append(out, m.ID)
		}
		slices.Sort(out)
		return out
	}
	everyone := group("everyone", nil, "listed-a", "listed-b", "unlisted")
	require.Eventually(t, func() bool { return groupStatus(everyone).Alive == 3 }, 30*time.Second, 50*time.Millisecond)
	listed := group("listed", nil, "listed-a", "ghost", "listed-b")
	both := group("listed-y", map[string]string{"zone": "y"}, "listed-a", "listed-b")
	require.Eventually(t, func() bool {
		return slices.Equal(members(listed), []string{"listed-a", "listed-b"}) && slices.Equal(members(both), []string{"listed-b"})
	}, 30*time.Second, 50*time.Millisecond, "a group with a selector and ids has the proplets that satisfy both")

	onGroup := func(name, g string, x float64, suspend bool) *v1.WasmTask {
		wt := newTask(ns, name, url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{x, 1}
			s.PropletGroupRef = &v1.LocalObjectReference{Name: g}
			s.Suspend = suspend
		})
		require.NoError(t, k8s.Create(t.Context(), wt))
		return wt
	}

	t.Run("runs on listed proplets only", func(t *testing.T) {
		const n = 6
		for i := range n {
			onGroup(fmt.Sprintf("ids-%d", i), "listed", float64(i), false)
		}
		used := map[string]int{}
		for i := range n {
			got := waitPhase(t, ns, fmt.Sprintf("ids-%d", i), v1.TaskSucceeded)
			require.Equal(t, []float64{float64(i + 1)}, got.Status.Results)
			require.Contains(t, []string{"listed-a", "listed-b"}, got.Status.PropletID)
			require.Equal(t, []string{"listed-a", "ghost", "listed-b"}, got.Status.PropletIDs)
			require.False(t, meta.IsStatusConditionFalse(got.Status.Conditions, operator.ConditionGroupResolved))
			used[got.Status.PropletID]++
		}
		require.Len(t, used, 2, "both listed proplets take work: %v", used)
	})

	t.Run("selector and ids both hold", func(t *testing.T) {
		for i := range 3 {
			onGroup(fmt.Sprintf("both-%d", i), "listed-y", float64(i), false)
		}
		for i := range 3 {
			got := waitPhase(t, ns, fmt.Sprintf("both-%d", i), v1.TaskSucceeded)
			require.Equal(t, "listed-b", got.Status.PropletID)
			require.Equal(t, map[string]string{"zone": "y"}, got.Status.Selector)
			require.Equal(t, []string{"listed-a", "listed-b"}, got.Status.PropletIDs)
		}
	})

	t.Run("admitted tasks keep their ids when the group changes", func(t *testing.T) {
		onGroup("kept", "listed", 41, true)
		require.Eventually(t, func() bool {
			got := getTask(t, ns, "kept")
			return got.Status.Held && slices.Equal(got.Status.PropletIDs, []string{"listed-a", "ghost", "listed-b"})
		}, 30*time.Second, 50*time.Millisecond)
		g := &v1.PropletGroup{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(listed), g))
		before := g.DeepCopy()
		g.Spec.PropletIDs = []string{"unlisted"}
		require.NoError(t, k8s.Patch(t.Context(), g, client.MergeFrom(before)))
		require.Eventually(t, func() bool { return slices.Equal(members(listed), []string{"unlisted"}) }, 30*time.Second, 50*time.Millisecond)

		got := getTask(t, ns, "kept")
		before2 := got.DeepCopy()
		got.Spec.Suspend = false
		require.NoError(t, k8s.Patch(t.Context(), got, client.MergeFrom(before2)))
		got = waitPhase(t, ns, "kept", v1.TaskSucceeded)
		require.Contains(t, []string{"listed-a", "listed-b"}, got.Status.PropletID)
		require.Equal(t, []float64{42}, got.Status.Results)
	})

	t.Run("no listed proplet alive", func(t *testing.T) {
		group("gone", nil, "ghost-2", "ghost-1")
		onGroup("to-ghosts", "gone", 1, false)
		a.kill()
		b.kill()
		require.Eventually(t, func() bool { return groupStatus(everyone).Alive == 1 }, 30*time.Second, 50*time.Millisecond)
		onGroup("to-dead", "listed-y", 1, false)
		for name, msg := range map[string]string{
			"to-ghosts": "none of the 2 candidate proplets [ghost-1 ghost-2] is alive",
			"to-dead":   "none of the 2 candidate proplets [listed-a listed-b] is alive",
		} {
			require.Eventually(t, func() bool {
				got := getTask(t, ns, name)
				c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionScheduled)
				return got.Status.Phase == v1.TaskPending && c != nil && c.Status == metav1.ConditionFalse &&
					c.Reason == orchestration.ReasonUnschedulable && c.Message == msg
			}, 30*time.Second, 50*time.Millisecond, "%s: want %q", name, msg)
		}
		// The live, idle, unlisted proplet never got either.
		time.Sleep(time.Second)
		for _, name := range []string{"to-ghosts", "to-dead"} {
			got := getTask(t, ns, name)
			require.Equal(t, v1.TaskPending, got.Status.Phase, name)
			require.Zero(t, got.Status.Attempt, name)
		}
	})
}

// TestOperatorRestartLosesNothing stops the operator with work in flight
// and starts a new one: every task still ends Succeeded, once.
func TestOperatorRestartLosesNothing(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith")
	op := startOperator(t, ns, "")
	const n = 10
	for i := range n {
		require.NoError(t, k8s.Create(t.Context(), newTask(ns, fmt.Sprintf("r-%02d", i), url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{float64(i), 1}
		})))
	}
	addr := op.mqttAddr
	op.stop(t)
	// No proplet yet: the tasks are admitted or not, none ran.
	op = startOperator(t, ns, addr)
	startProplet(t, op.mqttAddr, "edge-r", "--slots", "4")
	for i := range n {
		got := waitPhase(t, ns, fmt.Sprintf("r-%02d", i), v1.TaskSucceeded)
		require.Equal(t, []float64{float64(i + 1)}, got.Status.Results)
		require.EqualValues(t, 1, got.Status.Attempt)
	}
}

// TestFederatedJobAdmission hands FederatedJobs to the FL coordinator: the
// README's example is accepted by the API server, and refused by the
// coordinator (its modelRef is not in the manager's blob store) with a
// clear condition instead of hanging.
func TestFederatedJobAdmission(t *testing.T) {
	ns := newNamespace(t)
	startOperator(t, ns, "")
	b, err := os.ReadFile(filepath.Join("..", "deploy", "examples", "federatedjob.yaml"))
	require.NoError(t, err)
	fj := &v1.FederatedJob{}
	require.NoError(t, yaml.Unmarshal(b, fj))
	fj.Namespace = ns
	require.NoError(t, k8s.Create(t.Context(), fj))
	// Its model is in a registry named "registry", which does not resolve
	// here: the job waits for it, saying so, and retries with backoff.
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), got))
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		return got.Status.Phase != v1.FLFailed && c != nil && c.Reason == "ModelUnavailable" &&
			strings.Contains(c.Message, "modelRef oci://registry/model:v1: initial model unavailable")
	}, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, k8s.Delete(t.Context(), fj))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), &v1.FederatedJob{}))
	}, 30*time.Second, 50*time.Millisecond, "a job still waiting for its model is deleted")

	// An artifact that is not a model is refused for good.
	reg, err := ocipush.ParseRegistry("oci://" + ocitest.Serve(t, ocitest.Handler()) + "/models/junk")
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "v1", []byte("not a model"), ocipush.Options{})
	require.NoError(t, err)
	junk := fj.DeepCopy()
	junk.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "junk"}
	junk.Spec.ModelRef = reg.String() + ":v1"
	require.NoError(t, k8s.Create(t.Context(), junk))
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(junk), got))
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		return got.Status.Phase == v1.FLFailed && c != nil && c.Reason == "InvalidSpec" &&
			strings.Contains(c.Message, "not a safetensors model") &&
			!slices.Contains(got.Finalizers, operator.JobFinalizer)
	}, 30*time.Second, 50*time.Millisecond)
}

// TestFederatedJobTrains runs a real federated job: the digits example on
// two proplets, two rounds of FedAvg. The job's TrainingRounds and
// ModelCheckpoints appear, owned by the job, and each round owns its
// WasmTasks and counts them succeeded.
func TestFederatedJobTrains(t *testing.T) {
	ns := newNamespace(t)
	dataDir := t.TempDir()
	bs, err := blobs.Open(filepath.Join(dataDir, "blobs"))
	require.NoError(t, err)
	var zero digits.Model
	model, err := zero.Encode(nil)
	require.NoError(t, err)
	// The initial model comes from an OCI registry, as in the README.
	reg, err := ocipush.ParseRegistry("oci://" + ocitest.Serve(t, ocitest.Handler()) + "/models/digits")
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "v1", model, ocipush.Options{})
	require.NoError(t, err)
	wasmDigest, err := bs.PutBytes(exampletest.Build(t, "fl"))
	require.NoError(t, err)

	op := startOperatorIn(t, ns, "", dataDir)
	startProplet(t, op.mqttAddr, "p1")
	startProplet(t, op.mqttAddr, "p2")

	fj := &v1.FederatedJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "digits"}}
	fj.Spec = v1.FederatedJobSpec{
		ExperimentID:  "digits-1",
		ModelRef:      reg.String() + ":v1",
		TaskWasmImage: wire.BlobScheme + wasmDigest,
		Participants:  []v1.Participant{{PropletID: "p1"}, {PropletID: "p2"}},
		KOfN:          2,
		// Generous: the proplets share two CPUs with everything else.
		TimeoutSeconds: 240,
		Rounds:         v1.Rounds{Total: 2},
		Aggregator:     v1.Aggregator{Algorithm: "fedavg"},
		Hyperparams:    &apiextensionsv1.JSON{Raw: []byte(`{"lr":0.5,"epochs":1,"batch_size":16}`)},
	}
	require.NoError(t, k8s.Create(t.Context(), fj))
	require.Eventually(t, func() bool {
		got := &v1.FederatedJob{}
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), got))
		return got.Status.Phase == v1.FLSucceeded
	}, 5*time.Minute, 200*time.Millisecond)

	got := &v1.FederatedJob{}
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(fj), got))
	require.EqualValues(t, 2, got.Status.CompletedRounds)
	require.Equal(t, "digits-ckpt-2", got.Status.LatestCheckpoint)

	// Owner references: FederatedJob -> TrainingRound -> WasmTask, and
	// FederatedJob -> ModelCheckpoint.
	rounds := &v1.TrainingRoundList{}
	require.NoError(t, k8s.List(t.Context(), rounds, client.InNamespace(ns)))
	require.Len(t, rounds.Items, 2)
	byName := map[string]*v1.TrainingRound{}
	for i := range rounds.Items {
		r := &rounds.Items[i]
		byName[r.Name] = r
		requireOwnedBy(t, r, got, "FederatedJob")
		require.Equal(t, v1.FLSucceeded, r.Status.Phase, r.Name)
		require.EqualValues(t, 2, r.Status.UpdatesReceived, r.Name)
		require.Len(t, r.Status.Tasks, 2, r.Name)
		require.Contains(t, r.Status.Metric, "accuracy=", r.Name)
	}
	require.Eventually(t, func() bool {
		require.NoError(t, k8s.List(t.Context(), rounds, client.InNamespace(ns)))
		for _, r := range rounds.Items {
			if r.Status.Participants != (v1.RoundParticipants{Succeeded: 2}) || !meta.IsStatusConditionTrue(r.Status.Conditions, v1.ConditionReady) {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "rounds do not summarise two succeeded tasks")
	tasks := &v1.WasmTaskList{}
	require.NoError(t, k8s.List(t.Context(), tasks, client.InNamespace(ns)))
	require.Len(t, tasks.Items, 4, "two participants, two rounds")
	for _, wt := range tasks.Items {
		ref := metav1.GetControllerOf(&wt)
		require.NotNil(t, ref, wt.Name)
		r := byName[ref.Name]
		require.NotNil(t, r, "task %s owned by %s", wt.Name, ref.Name)
		requireOwnedBy(t, &wt, r, "TrainingRound")
		require.Equal(t, v1.TaskSucceeded, wt.Status.Phase, wt.Name)
		require.NotEmpty(t, wt.Spec.Env["ROUND_ID"], wt.Name)
		require.NotEmpty(t, wt.Spec.Env["MODEL_URI"], wt.Name)
	}
	cps := &v1.ModelCheckpointList{}
	require.NoError(t, k8s.List(t.Context(), cps, client.InNamespace(ns)))
	require.Len(t, cps.Items, 2)
	for _, c := range cps.Items {
		requireOwnedBy(t, &c, got, "FederatedJob")
		require.Equal(t, v1.CheckpointAvailable, c.Status.Phase)
		require.True(t, strings.HasPrefix(c.Spec.Digest, "sha256:"))
	}
}

// TestLeaderElection: of two replicas only the leader orchestrates, and the
// standby takes over as soon as the leader stops (it releases the lease).
func TestLeaderElection(t *testing.T) {
	ns := newNamespace(t)
	first := launchOperator(t, ns, "127.0.0.1:0", t.TempDir(), true)
	first.waitReady(t)
	second := launchOperator(t, ns, "127.0.0.1:0", t.TempDir(), true)
	// The standby holds no broker and no engine while the leader lives:
	// it must not report ready; a few lease renewals are enough to see it.
	select {
	case <-second.ready:
		t.Fatal("standby orchestrates while the leader lives")
	case <-time.After(5 * time.Second):
	}
	first.stop(t)
	second.waitReady(t)

	url := serveModules(t, "arith")
	startProplet(t, second.mqttAddr, "edge-le")
	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "after-failover", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{20, 22}
	})))
	got := waitPhase(t, ns, "after-failover", v1.TaskSucceeded)
	require.Equal(t, []float64{42}, got.Status.Results)
}
