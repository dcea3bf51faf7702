// Package metrics holds the engine metrics both managers export: dispatch
// latency and finished tasks (observed as they happen), and gauges read at
// scrape time from the engine, the task store and the MQTT link currently
// attached.
//
// A Metrics is registered once per registry and outlives the engines it
// reads: a manager attaches its engine when it starts orchestrating and
// detaches it when it stops, so an in-process restart (the operator losing
// and regaining its lease, tests) reuses the same collectors on a global
// registry instead of registering them twice. While nothing is attached the
// gauges are simply absent; the counters and the histogram keep their
// values for the life of the process.
package metrics

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/orchestration"
)

// scrapeTimeout bounds what one scrape spends reading the store.
const scrapeTimeout = 5 * time.Second

// PhaseCounter is implemented by task stores that count tasks per phase
// cheaply (an index, an in-memory cache), so a scrape costs no scan of the
// stored tasks.
type PhaseCounter interface {
	CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error)
}

// PropletLister lists the proplets the manager knows and their liveness;
// *orchestration.Engine implements it.
type PropletLister interface {
	Proplets(ctx context.Context) ([]orchestration.Proplet, error)
}

// LinkStats reports the MQTT link's counters; *link.Link implements it.
type LinkStats interface {
	Stats() link.Stats
}

// Source is what the gauges read at scrape time. A nil field leaves its
// gauges out.
type Source struct {
	Proplets PropletLister
	Link     LinkStats
	// Tasks, when set, exports propeller_tasks{phase}.
	Tasks PhaseCounter
}

// Metrics is the set of engine metrics. Its methods are safe for
// concurrent use.
type Metrics struct {
	dispatch prometheus.Histogram
	finished *prometheus.CounterVec
	gauges   gauges
}

// New returns the engine metrics with nothing attached.
func New() *Metrics {
	return &Metrics{
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "propeller_dispatch_latency_seconds",
			Help:    "Time from publishing a command to a proplet until the broker acknowledged it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "propeller_tasks_finished_total",
			Help: "Tasks that reached a terminal phase, by phase and reason.",
		}, []string{"phase", "reason"}),
		gauges: newGauges(),
	}
}

// Collectors are the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dispatch, m.finished, &m.gauges}
}

// Register registers the collectors with reg. Registering the same Metrics
// again on the same registry is not an error, so a manager started several
// times in one process can call it on every start.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	return nil
}

// ObserveDispatch records one command's publish-to-acknowledgement latency;
// it is the link's link.Config.ObserveDispatch.
func (m *Metrics) ObserveDispatch(d time.Duration) { m.dispatch.Observe(d.Seconds()) }

// ObserveTask counts a task that reached a terminal phase; call it from the
// engine's Observer.
func (m *Metrics) ObserveTask(t orchestration.Task) {
	if t.Status.Phase.Terminal() {
		m.finished.WithLabelValues(string(t.Status.Phase), t.Status.Reason).Inc()
	}
}

// Attach makes the gauges read s until the returned detach is called. A
// later Attach replaces s; detaching a replaced source does nothing.
func (m *Metrics) Attach(s Source) (detach func()) {
	p := &s
	m.gauges.src.Store(p)
	return func() { m.gauges.src.CompareAndSwap(p, nil) }
}

// gauges is the collector of the values read at scrape time.
type gauges struct {
	src        atomic.Pointer[Source]
	tasks      *prometheus.Desc
	alive      *prometheus.Desc
	known      *prometheus.Desc
	reconnects *prometheus.Desc
	connected  *prometheus.Desc
	received   *prometheus.Desc
	dropped    *prometheus.Desc
}

func newGauges() gauges {
	return gauges{
		tasks:      prometheus.NewDesc("propeller_tasks", "Stored tasks by phase.", []string{"phase"}, nil),
		alive:      prometheus.NewDesc("propeller_proplets_alive", "Proplets whose heartbeat is current.", nil, nil),
		known:      prometheus.NewDesc("propeller_proplets", "Proplets known to the manager.", nil, nil),
		reconnects: prometheus.NewDesc("propeller_mqtt_reconnects_total", "Times the manager reconnected to the MQTT broker.", nil, nil),
		connected:  prometheus.NewDesc("propeller_mqtt_connected", "1 while the manager is connected to the MQTT broker.", nil, nil),
		received:   prometheus.NewDesc("propeller_mqtt_messages_received_total", "MQTT messages received from proplets.", nil, nil),
		dropped:    prometheus.NewDesc("propeller_mqtt_messages_dropped_total", "MQTT messages dropped as invalid.", nil, nil),
	}
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.tasks, g.alive, g.known, g.reconnects, g.connected, g.received, g.dropped} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	s := g.src.Load()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if s.Tasks != nil {
		if counts, err := s.Tasks.CountByPhase(ctx); err == nil {
			for _, p := range orchestration.Phases {
				ch <- prometheus.MustNewConstMetric(g.tasks, prometheus.GaugeValue, float64(counts[p]), string(p))
			}
		}
	}
	if s.Proplets != nil {
		if ps, err := s.Proplets.Proplets(ctx); err == nil {
			n := 0
			for _, p := range ps {
				if p.Alive {
					n++
				}
			}
			ch <- prometheus.MustNewConstMetric(g.alive, prometheus.GaugeValue, float64(n))
			ch <- prometheus.MustNewConstMetric(g.known, prometheus.GaugeValue, float64(len(ps)))
		}
	}
	if s.Link != nil {
		st := s.Link.Stats()
		ch <- prometheus.MustNewConstMetric(g.reconnects, prometheus.CounterValue, float64(st.Reconnects))
		c := 0.0
		if st.Connected {
			c = 1
		}
		ch <- prometheus.MustNewConstMetric(g.connected, prometheus.GaugeValue, c)
		ch <- prometheus.MustNewConstMetric(g.received, prometheus.CounterValue, float64(st.Received))
		ch <- prometheus.MustNewConstMetric(g.dropped, prometheus.CounterValue, float64(st.Dropped))
	}
}
