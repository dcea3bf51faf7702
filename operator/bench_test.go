package operator_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
)

// BenchmarkWasmTasks measures WasmTasks per second from create to
// Succeeded through the API server, the operator, the broker and one
// proplet, plus the percentiles of create-to-finish latency (client clock
// at create, status.finishedAt at the end; same host, same clock) and of
// the WasmTask controller's reconcile time (controller-runtime's
// histogram, bucket-interpolated, over the timed part only).
func BenchmarkWasmTasks(b *testing.B) {
	ns, url := benchSystem(b, 64)
	ctx := b.Context()

	recBefore := reconcileBuckets(b, "wasmtask")
	reqBefore := apiRequests(b)
	cpuBefore := processCPU(b)
	b.ResetTimer()
	start := time.Now()
	names := make(chan string)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created = map[string]time.Time{}
	)
	for range 16 {
		wg.Go(func() {
			for n := range names {
				wt := newTask(ns, n, url+"/arith.wasm", func(s *v1.WasmTaskSpec) { s.Function = "add"; s.Inputs = []float64{2, 3} })
				at := time.Now()
				if err := k8s.Create(ctx, wt); err != nil {
					b.Error(err)
				}
				mu.Lock()
				created[n] = at
				mu.Unlock()
			}
		})
	}
	for i := range b.N {
		names <- fmt.Sprintf("b-%06d", i)
	}
	close(names)
	wg.Wait()
	done := waitSucceeded(b, ns, b.N+1)
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU(b) // before reading metrics, which costs CPU here
	rec := reconcileBuckets(b, "wasmtask")
	reqs := apiRequests(b)
	for k, n := range reqBefore {
		reqs[k] -= n
	}
	for i := range rec {
		rec[i].count -= recBefore[i].count
	}

	var lat []time.Duration
	for _, t := range done {
		if t.Name != "warm" {
			lat = append(lat, t.Status.FinishedAt.Sub(created[t.Name]))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(quantile(rec, 0.5)*1000, "reconcile-p50-ms")
	b.ReportMetric(quantile(rec, 0.99)*1000, "reconcile-p99-ms")
	for name, d := range cpu {
		b.ReportMetric((d-cpuBefore[name]).Seconds()*1000/float64(b.N), name+"-cpu-ms/task")
	}
	var writes, total float64
	for k, n := range reqs {
		total += n
		if k.verb != "GET" && k.verb != "LIST" && k.verb != "WATCH" {
			writes += n
		}
		if n > 0 {
			b.Logf("N=%d api %s %s: %.2f per task", b.N, k.verb, k.what, n/float64(b.N))
		}
	}
	b.ReportMetric(writes/float64(b.N), "api-writes/task")
	b.ReportMetric(total/float64(b.N), "api-requests/task")
}

// apiKey is one kind of API request: verb, resource[/subresource] and
// the response code when it is not a success.
type apiKey struct{ verb, what string }

// apiRequests reads the API server's apiserver_request_total, summed over
// response codes, so a run can say what each task cost the server.
func apiRequests(b *testing.B) map[apiKey]float64 {
	b.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	require.NoError(b, err)
	raw, err := dc.RESTClient().Get().AbsPath("/metrics").DoRaw(b.Context())
	require.NoError(b, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	require.NoError(b, err)
	out := map[apiKey]float64{}
	for _, m := range mfs["apiserver_request_total"].GetMetric() {
		var k apiKey
		var res, sub, code string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "verb":
				k.verb = l.GetValue()
			case "resource":
				res = l.GetValue()
			case "subresource":
				sub = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		k.what = res
		if sub != "" {
			k.what += "/" + sub
		}
		if code != "" && code[0] != '2' {
			k.what += " " + code
		}
		out[k] += m.GetCounter().GetValue()
	}
	require.NotEmpty(b, out, "no apiserver_request_total in /metrics")
	return out
}

// benchSystem starts an operator and one proplet with slots slots in a new
// namespace, serves the arith module, and runs one task ("warm") so the
// proplet's module and compilation caches are warm. It returns the
// namespace and the module server's URL.
func benchSystem(b *testing.B, slots int) (ns, url string) {
	b.Helper()
	ns = newNamespace(b)
	url = serveModules(b, "arith")
	op := startOperator(b, ns, "")
	startProplet(b, op.mqttAddr, "bench", "--slots", strconv.Itoa(slots), "--log-level", "info")
	warm := newTask(ns, "warm", url+"/arith.wasm", func(s *v1.WasmTaskSpec) { s.Function = "add"; s.Inputs = []float64{1, 1} })
	require.NoError(b, k8s.Create(b.Context(), warm))
	waitPhase(b, ns, "warm", v1.TaskSucceeded)
	return ns, url
}

// BenchmarkWasmTaskPaced creates WasmTasks at 20/s, well under capacity,
// and reports create-to-finished latency: what a user waits for one task
// when the operator is not saturated (BenchmarkWasmTasks measures
// capacity, where the burst's queueing dominates latency).
func BenchmarkWasmTaskPaced(b *testing.B) {
	ns, url := benchSystem(b, 8)
	ctx := b.Context()

	b.ResetTimer()
	created := make(map[string]time.Time, b.N)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		n := fmt.Sprintf("p-%06d", i)
		created[n] = time.Now()
		require.NoError(b, k8s.Create(ctx, newTask(ns, n, url+"/arith.wasm", func(s *v1.WasmTaskSpec) { s.Function = "add"; s.Inputs = []float64{2, 3} })))
	}
	done := waitSucceeded(b, ns, b.N+1)
	b.StopTimer()
	var lat []time.Duration
	for _, t := range done {
		if at, ok := created[t.Name]; ok {
			lat = append(lat, t.Status.FinishedAt.Sub(at))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// waitSucceeded lists, then watches, the namespace's Succeeded WasmTasks
// until n are. A watch, not a polling list: a list of every finished task
// several times a second costs the API server more than the operator's
// own writes, and it would be measuring itself.
func waitSucceeded(b *testing.B, ns string, n int) []v1.WasmTask {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	wc, err := client.NewWithWatch(restCfg, client.Options{Scheme: operator.Scheme()})
	require.NoError(b, err)
	sel := client.MatchingFields{"status.phase": string(v1.TaskSucceeded)}
	done := map[string]v1.WasmTask{}
	for len(done) < n {
		list := &v1.WasmTaskList{}
		require.NoError(b, wc.List(ctx, list, client.InNamespace(ns), sel))
		for _, t := range list.Items {
			done[t.Name] = t
		}
		if len(done) >= n {
			break
		}
		w, err := wc.Watch(ctx, &v1.WasmTaskList{}, client.InNamespace(ns), sel,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		require.NoError(b, err)
		for ev := range w.ResultChan() {
			if t, ok := ev.Object.(*v1.WasmTask); ok && t.Status.Phase == v1.TaskSucceeded {
				done[t.Name] = *t
				if len(done) >= n {
					break
				}
			}
		}
		w.Stop()
		require.NoError(b, ctx.Err(), "%d of %d tasks succeeded", len(done), n)
	}
	return slices.Collect(maps.Values(done))
}

// bucket is one cumulative histogram bucket: count observations <= le.
type bucket struct {
	le    float64
	count float64
}

// reconcileBuckets reads controller_runtime_reconcile_time_seconds for one
// controller from controller-runtime's registry (the operator runs in this
// process).
func reconcileBuckets(b *testing.B, controller string) []bucket {
	b.Helper()
	mfs, err := metrics.Registry.Gather()
	require.NoError(b, err)
	var out []bucket
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_time_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					h := m.GetHistogram()
					for _, bk := range h.GetBucket() {
						out = append(out, bucket{le: bk.GetUpperBound(), count: float64(bk.GetCumulativeCount())})
					}
					out = append(out, bucket{le: math.Inf(1), count: float64(h.GetSampleCount())})
				}
			}
		}
	}
	require.NotEmpty(b, out, "no reconcile histogram for %s", controller)
	return out
}

// quantile interpolates linearly inside the bucket that holds q, as
// Prometheus' histogram_quantile does.
func quantile(bs []bucket, q float64) float64 {
	total := bs[len(bs)-1].count
	if total == 0 {
		return 0
	}
	rank := q * total
	lo, below := 0.0, 0.0
	for _, bk := range bs {
		if bk.count >= rank {
			if math.IsInf(bk.le, 1) {
				return lo
			}
			if bk.count == below {
				return bk.le
			}
			return lo + (bk.le-lo)*(rank-below)/(bk.count-below)
		}
		lo, below = bk.le, bk.count
	}
	return lo
}

// processCPU is the CPU used so far by this process (the operator, the
// broker and the benchmark's client: "operator") and by each child it
// started (kube-apiserver, etcd, the proplet), by command name, so a run
// says where each task's CPU goes.
func processCPU(b *testing.B) map[string]time.Duration {
	b.Helper()
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	out := map[string]time.Duration{"operator": time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	entries, err := os.ReadDir("/proc")
	require.NoError(b, err)
	self := os.Getpid()
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // not a process, or gone
		}
		// pid (comm) state ppid ... utime stime: fields 14 and 15, counted
		// after the parenthesised command, which may hold spaces.
		stat := string(raw)
		open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(stat[end+1:])
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		name := stat[open+1 : end]
		if strings.HasPrefix(name, "propeller") {
			name = "proplet"
		}
		// USER_HZ is 100 on Linux.
		out[name] += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}
