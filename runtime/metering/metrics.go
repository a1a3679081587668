// Package metering keeps what the gateway counts of every invocation: the
// Prometheus metrics of /metrics and the usage totals of /v1/usage, both
// per gateway. It records; it decides nothing.
package metering

import (
	"cmp"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's Prometheus metrics. The exported collectors
// are those other parts of the gateway set directly.
type Metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	errors      *prometheus.CounterVec
	throttles   *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
	PoolIdle    *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	Inflight    *prometheus.GaugeVec
	Instances   *prometheus.GaugeVec
	gbSeconds   *prometheus.CounterVec
	// refusedInstances counts registrations that Nomad did not place.
	RefusedInstances *prometheus.CounterVec
	// Asynchronous invocations (events.go).
	Queued      *prometheus.GaugeVec
	Retries     *prometheus.CounterVec
	DeadLetters *prometheus.CounterVec
	EventAge    prometheus.Histogram
	// Event sources (sources.go).
	SourceRecords *prometheus.CounterVec
}

// NewMetrics registers every collector.
func NewMetrics() *Metrics {
	fn := []string{"function"}
	m := &Metrics{
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
		Inflight:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nimbus_inflight", Help: "Invocations in flight."}, fn),
		Instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nimbus_instances", Help: "Instances registered in Consul."}, fn),
		gbSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nimbus_billed_gb_seconds_total", Help: "Billed duration × memory size, in GB-seconds."}, fn),
		PoolIdle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_warm_pool_idle", Help: "Warm pool instances confirmed with Nomad and waiting for a function.",
		}, []string{"pool"}),
		RefusedInstances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_refused_instances_total",
			Help: "Consul registrations under a function's service name that Nomad did not place; they get no traffic.",
		}, fn),
		Queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_async_queued", Help: "Asynchronous invocations stored and not yet done (waiting or running), as the function's JetStream consumer last reported.",
		}, fn),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_async_retries_total", Help: "Asynchronous invocations scheduled to run again after a failed or throttled run.",
		}, fn),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_async_dead_letters_total", Help: "Asynchronous invocations stored as dead letters (nimbus.dead.<function>), by Lambda's condition: RetriesExhausted or EventAgeExceeded.",
		}, []string{"function", "condition"}),
		EventAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nimbus_async_event_age_seconds", Help: "How long asynchronous invocations waited in the queue before each delivery.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		SourceRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_event_source_records_total", Help: "Records of event sources settled by this gateway, by outcome: succeeded, retried or failed (their retries spent: on_failure or the dead letters).",
		}, []string{"source", "outcome"}),
	}
	m.reg.MustRegister(m.invocations, m.errors, m.throttles, m.coldStarts, m.duration, m.Inflight, m.Instances, m.gbSeconds, m.RefusedInstances, m.PoolIdle,
		m.Queued, m.Retries, m.DeadLetters, m.EventAge, m.SourceRecords)
	return m
}

// Forget drops every series of a deleted function, so that functions can
// come and go without the metrics growing.
func (m *Metrics) Forget(name string) {
	byFunction := prometheus.Labels{"function": name}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.invocations, m.errors, m.throttles, m.coldStarts, m.duration, m.Inflight, m.Instances, m.gbSeconds, m.RefusedInstances, m.Queued, m.Retries, m.DeadLetters} {
		v.DeletePartialMatch(byFunction)
	}
}

// Observe counts one invocation of name.
func (m *Metrics) Observe(name string, o Outcome) {
	m.invocations.WithLabelValues(name, strconv.Itoa(o.Status)).Inc()
	if o.ErrorType != "" {
		m.errors.WithLabelValues(name, o.ErrorType).Inc()
	}
	if o.Status == http.StatusTooManyRequests {
		m.throttles.WithLabelValues(name).Inc()
	}
	if o.Cold {
		m.coldStarts.WithLabelValues(name, cmp.Or(o.ColdPath, ColdPathNomad)).Inc()
	}
	if o.DurationMs > 0 {
		m.duration.WithLabelValues(name).Observe(o.DurationMs / 1000)
	}
	m.gbSeconds.WithLabelValues(name).Add(gbSeconds(o))
}

// gbSeconds is the billed usage of one invocation.
func gbSeconds(o Outcome) float64 {
	return o.BilledMs / 1000 * o.MemoryMB / 1024
}

// Handler serves the metrics to Prometheus.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Outcome of one invocation, for metering and the access log.
type Outcome struct {
	Status      int
	ErrorType   string
	Cold        bool
	ColdPath    string // ColdPathPool or ColdPathNomad, for a cold start
	DurationMs  float64
	BilledMs    float64
	MemoryMB    float64
	MaxMemoryMB float64
	// InstanceCold: the instance started its handler for this invocation.
	InstanceCold bool
}

// Where a cold start's instance came from: a warm pool's instance
// specialised for the function, or the function's own job.
const (
	ColdPathPool  = "pool"
	ColdPathNomad = "nomad"
)
