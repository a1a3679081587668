package gateway

import (
	"cmp"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	errors      *prometheus.CounterVec
	throttles   *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
	poolIdle    *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	inflight    *prometheus.GaugeVec
	instances   *prometheus.GaugeVec
	gbSeconds   *prometheus.CounterVec
	// refusedInstances counts registrations that Nomad did not place.
	refusedInstances *prometheus.CounterVec
	// Asynchronous invocations (events.go).
	queued      *prometheus.GaugeVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	eventAge    prometheus.Histogram
	// Event sources (sources.go).
	sourceRecords *prometheus.CounterVec
}

func newMetrics() *metrics {
	fn := []string{"function"}
	m := &metrics{
		reg:         prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_invocations_total", Help: "Invocations by function and HTTP status."}, []string{"function", "status"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_errors_total", Help: "Invocations that ended in an error, by error type."}, []string{"function", "error_type"}),
		throttles:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_throttles_total", Help: "Invocations refused with 429."}, fn),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_cold_starts_total",
			Help: "Invocations whose instance started its handler for them (not those that queued for a busy instance), by where the instance came from: a warm pool's (pool) or the function's own job (nomad).",
		}, []string{"function", "path"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nimbus_invocation_duration_seconds", Help: "Handler duration as the host measured it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, fn),
		inflight:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nimbus_inflight", Help: "Invocations in flight."}, fn),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nimbus_instances", Help: "Instances registered in Consul."}, fn),
		gbSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_billed_gb_seconds_total", Help: "Billed duration × memory size, in GB-seconds."}, fn),
		poolIdle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_warm_pool_idle", Help: "Warm pool instances confirmed with Nomad and waiting for a function.",
		}, []string{"pool"}),
		refusedInstances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_refused_instances_total",
			Help: "Consul registrations under a function's service name that Nomad did not place; they get no traffic.",
		}, fn),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_async_queued", Help: "Asynchronous invocations stored and not yet done (waiting or running), as the function's JetStream consumer last reported.",
		}, fn),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_async_retries_total", Help: "Asynchronous invocations scheduled to run again after a failed or throttled run.",
		}, fn),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_async_dead_letters_total", Help: "Asynchronous invocations stored as dead letters (nimbus.dead.<function>), by Lambda's condition: RetriesExhausted or EventAgeExceeded.",
		}, []string{"function", "condition"}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nimbus_async_event_age_seconds", Help: "How long asynchronous invocations waited in the queue before each delivery.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		sourceRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_event_source_records_total", Help: "Records of event sources settled by this gateway, by outcome: succeeded, retried or failed (their retries spent: on_failure or the dead letters).",
		}, []string{"source", "outcome"}),
	}
	m.reg.MustRegister(m.invocations, m.errors, m.throttles, m.coldStarts, m.duration, m.inflight, m.instances, m.gbSeconds, m.refusedInstances, m.poolIdle,
		m.queued, m.retries, m.deadLetters, m.eventAge, m.sourceRecords)
	return m
}

// forget drops every series of a deleted function, so that functions can
// come and go without the metrics growing.
func (m *metrics) forget(name string) {
	byFunction := prometheus.Labels{"function": name}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.invocations, m.errors, m.throttles, m.coldStarts, m.duration, m.inflight, m.instances, m.gbSeconds, m.refusedInstances, m.queued, m.retries, m.deadLetters} {
		v.DeletePartialMatch(byFunction)
	}
}

func (m *metrics) observe(name string, o outcome) {
	m.invocations.WithLabelValues(name, strconv.Itoa(o.status)).Inc()
	if o.errorType != "" {
		m.errors.WithLabelValues(name, o.errorType).Inc()
	}
	if o.status == http.StatusTooManyRequests {
		m.throttles.WithLabelValues(name).Inc()
	}
	if o.cold {
		m.coldStarts.WithLabelValues(name, cmp.Or(o.coldPath, coldPathNomad)).Inc()
	}
	if o.durationMs > 0 {
		m.duration.WithLabelValues(name).Observe(o.durationMs / 1000)
	}
	m.gbSeconds.WithLabelValues(name).Add(gbSeconds(o))
}

// gbSeconds is the billed usage of one invocation.
func gbSeconds(o outcome) float64 {
	return o.billedMs / 1000 * o.memoryMB / 1024
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
