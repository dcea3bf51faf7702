package operator_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration"
)

// startOperatorWithMetrics is startOperatorIn with the metrics server on
// metricsAddr.
func startOperatorWithMetrics(t testing.TB, ns, mqttAddr, metricsAddr string) *operatorProc {
	t.Helper()
	return startOperatorIn(t, ns, mqttAddr, t.TempDir(), func(c *operator.Config) { c.MetricsAddr = metricsAddr })
}

// scrape reads the Prometheus text exposition at addr into the sum of the
// samples per series prefix asked for: a prefix is a metric name, or a name
// with the start of its label set (`name{phase="Succeeded"`), which sums the
// series that match it.
func scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	series := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "sample line %q", line)
		series[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return series
}

// sum adds the samples whose series starts with prefix; found says whether
// any did.
func sum(series map[string]float64, prefix string) (total float64, found bool) {
	for k, v := range series {
		name := k
		if j := strings.IndexByte(k, '{'); j >= 0 {
			name = k[:j]
		}
		if k == prefix || name == prefix || (strings.Contains(prefix, "{") && strings.HasPrefix(k, prefix)) {
			total += v
			found = true
		}
	}
	return total, found
}

// waitMetrics scrapes addr until check holds, and returns the last scrape.
func waitMetrics(t testing.TB, addr string, check func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	var last map[string]float64
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		last = scrape(t, addr)
		return check(last)
	}, 30*time.Second, 100*time.Millisecond, "metrics never matched; last scrape: %v", last)
	return last
}

// TestOperatorEngineMetrics: the leader serves the engine metrics
// (manager/metrics, as the standalone manager does) on controller-runtime's
// metrics server, next to controller-runtime's own, and an in-process
// restart registers them again without error and reads the new engine.
func TestOperatorEngineMetrics(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith")
	metricsAddr := freeAddr(t)
	op := startOperatorWithMetrics(t, ns, "", metricsAddr)
	startProplet(t, op.mqttAddr, "edge-m", "--slots", "2")

	add := func(name string, a, b float64) {
		t.Helper()
		require.NoError(t, k8s.Create(t.Context(), newTask(ns, name, url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{a, b}
		})))
		got := waitPhase(t, ns, name, v1.TaskSucceeded)
		require.Equal(t, []float64{a + b}, got.Status.Results)
	}
	// finished counts the process's Succeeded tasks: the counter belongs to
	// the process, not to one engine.
	finished := func(m map[string]float64) float64 {
		v, _ := sum(m, `propeller_tasks_finished_total{phase="Succeeded"`)
		return v
	}
	value := func(m map[string]float64, series string) float64 {
		v, ok := m[series]
		if !ok {
			return -1
		}
		return v
	}

	add("m-1", 1, 2)
	m := waitMetrics(t, metricsAddr, func(m map[string]float64) bool {
		return value(m, "propeller_proplets_alive") == 1 && finished(m) >= 1 &&
			value(m, `propeller_tasks{phase="Succeeded"}`) == 1
	})
	before := finished(m)
	require.EqualValues(t, 1, value(m, "propeller_proplets"))
	require.EqualValues(t, 1, value(m, "propeller_mqtt_connected"))
	_, ok := sum(m, "propeller_mqtt_messages_received_total")
	require.True(t, ok, "propeller_mqtt_messages_received_total missing")
	_, ok = sum(m, "propeller_mqtt_reconnects_total")
	require.True(t, ok, "propeller_mqtt_reconnects_total missing")
	n, ok := sum(m, "propeller_dispatch_latency_seconds_count")
	require.True(t, ok, "propeller_dispatch_latency_seconds missing")
	require.GreaterOrEqual(t, n, 1.0, "the start command's PUBACK was observed")
	for _, p := range orchestration.Phases {
		_, ok := m[`propeller_tasks{phase="`+string(p)+`"}`]
		require.True(t, ok, "propeller_tasks for %s missing", p)
	}
	// controller-runtime's own metrics are still served.
	n, ok = sum(m, `controller_runtime_reconcile_total{controller="wasmtask"`)
	require.True(t, ok, "controller-runtime metrics missing")
	require.Positive(t, n)
	_, ok = sum(m, "workqueue_adds_total")
	require.True(t, ok, "workqueue metrics missing")

	// An in-process restart: Run registers the same collectors on the same
	// global registry again, and the gauges follow the new engine.
	mqttAddr := op.mqttAddr
	op.stop(t)
	metricsAddr = freeAddr(t)
	startOperatorWithMetrics(t, ns, mqttAddr, metricsAddr)
	add("m-2", 2, 3)
	m = waitMetrics(t, metricsAddr, func(m map[string]float64) bool {
		return value(m, "propeller_proplets_alive") == 1 && finished(m) >= before+1 &&
			value(m, `propeller_tasks{phase="Succeeded"}`) == 2 && value(m, "propeller_mqtt_connected") == 1
	})
	_, ok = sum(m, `controller_runtime_reconcile_total{controller="wasmtask"`)
	require.True(t, ok, "controller-runtime metrics missing after restart")
}
