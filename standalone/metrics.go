package standalone

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/orchestration"
)

// phaseCounter is implemented by stores that count tasks per phase from an
// index, so a scrape costs no scan.
type phaseCounter interface {
	CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error)
}

type metrics struct {
	reg        *prometheus.Registry
	dispatch   prometheus.Histogram
	finished   *prometheus.CounterVec
	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "propeller_dispatch_latency_seconds",
			Help:    "Time from publishing a command to a proplet until the broker acknowledged it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "propeller_tasks_finished_total",
			Help: "Tasks that reached a terminal phase, by phase and reason.",
		}, []string{"phase", "reason"}),
	}
	m.reg.MustRegister(m.dispatch, m.finished, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeDispatch(d time.Duration) { m.dispatch.Observe(d.Seconds()) }

func (m *metrics) observeTask(t orchestration.Task) {
	if t.Status.Phase.Terminal() {
		m.finished.WithLabelValues(string(t.Status.Phase), t.Status.Reason).Inc()
	}
}

// register adds the gauges read at scrape time from the engine, the store
// and the link.
func (m *metrics) register(e *orchestration.Engine, store any, l *link.Link) {
	tasks := prometheus.NewDesc("propeller_tasks", "Stored tasks by phase.", []string{"phase"}, nil)
	alive := prometheus.NewDesc("propeller_proplets_alive", "Proplets whose heartbeat is current.", nil, nil)
	known := prometheus.NewDesc("propeller_proplets", "Proplets known to the manager.", nil, nil)
	reconnects := prometheus.NewDesc("propeller_mqtt_reconnects_total", "Times the manager reconnected to the MQTT broker.", nil, nil)
	connected := prometheus.NewDesc("propeller_mqtt_connected", "1 while the manager is connected to the MQTT broker.", nil, nil)
	received := prometheus.NewDesc("propeller_mqtt_messages_received_total", "MQTT messages received from proplets.", nil, nil)
	dropped := prometheus.NewDesc("propeller_mqtt_messages_dropped_total", "MQTT messages dropped as invalid.", nil, nil)
	m.reg.MustRegister(collectorFunc{
		descs: []*prometheus.Desc{tasks, alive, known, reconnects, connected, received, dropped},
		collect: func(ch chan<- prometheus.Metric) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if pc, ok := store.(phaseCounter); ok {
				if counts, err := pc.CountByPhase(ctx); err == nil {
					for _, p := range orchestration.Phases {
						ch <- prometheus.MustNewConstMetric(tasks, prometheus.GaugeValue, float64(counts[p]), string(p))
					}
				}
			}
			if ps, err := e.Proplets(ctx); err == nil {
				n := 0
				for _, p := range ps {
					if p.Alive {
						n++
					}
				}
				ch <- prometheus.MustNewConstMetric(alive, prometheus.GaugeValue, float64(n))
				ch <- prometheus.MustNewConstMetric(known, prometheus.GaugeValue, float64(len(ps)))
			}
			st := l.Stats()
			ch <- prometheus.MustNewConstMetric(reconnects, prometheus.CounterValue, float64(st.Reconnects))
			c := 0.0
			if st.Connected {
				c = 1
			}
			ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, c)
			ch <- prometheus.MustNewConstMetric(received, prometheus.CounterValue, float64(st.Received))
			ch <- prometheus.MustNewConstMetric(dropped, prometheus.CounterValue, float64(st.Dropped))
		},
	})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// collectorFunc adapts a function to prometheus.Collector.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
