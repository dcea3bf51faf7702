package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/manager/metrics"
	"github.com/absmach/propeller/orchestration"
)

type fakeSource struct{ alive, dead int }

func (f fakeSource) Proplets(context.Context) ([]orchestration.Proplet, error) {
	var ps []orchestration.Proplet
	for range f.alive {
		ps = append(ps, orchestration.Proplet{Alive: true})
	}
	for range f.dead {
		ps = append(ps, orchestration.Proplet{})
	}
	return ps, nil
}

func (f fakeSource) Stats() link.Stats {
	return link.Stats{Connected: true, Reconnects: 2, Received: 7}
}

func (f fakeSource) CountByPhase(context.Context) (map[orchestration.Phase]int, error) {
	return map[orchestration.Phase]int{orchestration.PhaseSucceeded: 3}, nil
}

// TestRegisterTwiceAndAttach: registering the same Metrics again is not an
// error (in-process restarts), the gauges follow the attached source, and
// detaching a replaced source leaves the new one in place.
func TestRegisterTwiceAndAttach(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New()
	require.NoError(t, m.Register(reg))
	require.NoError(t, m.Register(reg))
	require.Error(t, metrics.New().Register(reg), "another Metrics with the same names")

	m.ObserveDispatch(3 * time.Millisecond)
	m.ObserveTask(orchestration.Task{Status: orchestration.TaskStatus{Phase: orchestration.PhaseSucceeded}})
	m.ObserveTask(orchestration.Task{Status: orchestration.TaskStatus{Phase: orchestration.PhaseRunning}})
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP propeller_tasks_finished_total Tasks that reached a terminal phase, by phase and reason.
# TYPE propeller_tasks_finished_total counter
propeller_tasks_finished_total{phase="Succeeded",reason=""} 1
`), "propeller_tasks_finished_total", "propeller_proplets_alive"))

	first := m.Attach(metrics.Source{Proplets: fakeSource{alive: 1, dead: 1}, Link: fakeSource{}, Tasks: fakeSource{}})
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP propeller_proplets_alive Proplets whose heartbeat is current.
# TYPE propeller_proplets_alive gauge
propeller_proplets_alive 1
# HELP propeller_proplets Proplets known to the manager.
# TYPE propeller_proplets gauge
propeller_proplets 2
# HELP propeller_mqtt_reconnects_total Times the manager reconnected to the MQTT broker.
# TYPE propeller_mqtt_reconnects_total counter
propeller_mqtt_reconnects_total 2
`), "propeller_proplets_alive", "propeller_proplets", "propeller_mqtt_reconnects_total"))
	n, err := testutil.GatherAndCount(reg, "propeller_tasks")
	require.NoError(t, err)
	require.Equal(t, len(orchestration.Phases), n)

	second := m.Attach(metrics.Source{Proplets: fakeSource{alive: 4}})
	first()
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP propeller_proplets_alive Proplets whose heartbeat is current.
# TYPE propeller_proplets_alive gauge
propeller_proplets_alive 4
`), "propeller_proplets_alive"))
	n, err = testutil.GatherAndCount(reg, "propeller_tasks", "propeller_mqtt_connected")
	require.NoError(t, err)
	require.Zero(t, n, "no store or link attached")

	second()
	n, err = testutil.GatherAndCount(reg, "propeller_proplets_alive")
	require.NoError(t, err)
	require.Zero(t, n, "nothing attached")
}
