package standalone

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/absmach/propeller/manager/metrics"
)

// metricsHandler serves the engine metrics (manager/metrics) with the Go
// runtime and process collectors on a registry of the manager's own.
func metricsHandler(m *metrics.Metrics) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
