package host

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the host's own counters, served on GET /metrics.
type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	coldStarts  prometheus.Counter
	busy        prometheus.Counter
	restarts    prometheus.Counter
	inflight    prometheus.Gauge
	duration    prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_host_invocations_total", Help: "Invocations by outcome: success, or the error type.",
		}, []string{"outcome"}),
		coldStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_host_cold_starts_total", Help: "Invocations served by a freshly initialised handler process.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_host_busy_rejections_total", Help: "Invocations refused because every slot was taken.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_host_handler_exits_total", Help: "Handler processes that ended (crash, timeout, exit) and were replaced.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_host_inflight", Help: "Invocations in flight.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nimbus_host_invocation_duration_seconds", Help: "Invocation duration, excluding init.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
	}
	m.reg.MustRegister(m.invocations, m.coldStarts, m.busy, m.restarts, m.inflight, m.duration)
	return m
}

func (m *metrics) observe(r Result) {
	outcome := "success"
	if r.Err != nil {
		outcome = r.Err.ErrorType
	}
	m.invocations.WithLabelValues(outcome).Inc()
	m.duration.Observe(r.Duration.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
