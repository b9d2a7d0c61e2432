// Package metrics holds Pampa's Prometheus metrics: every metric name is
// defined here, and docs/metrics.md describes each one.
//
// A process has one [Metrics]: a registry of its own (never Prometheus'
// global one, so a program that embeds Pampa keeps its registry as it
// was), with the Go and process collectors. Its series come from two
// sides:
//
//   - what the engine learns as it runs, told through [engine.Observer],
//     which Metrics implements: tries and their outcomes (worker),
//     rounds, reservations and the lease (dispatcher). Each job's series
//     are resolved once, when the worker or dispatcher is built, so a
//     task costs a few atomic additions and no allocation;
//   - what the database holds, read at each scrape by the collector of
//     [Metrics.CollectDatabase] through a small [Source]: task counts
//     by state (the queries of `pampa report`), paused jobs, the worker
//     registry, the leader lease. One process per cluster should carry
//     it (the CLI: dispatchers and `pampa run`, never workers).
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pampa-go/pampa/internal/engine"
)

// Namespace prefixes every metric of Pampa's.
const Namespace = "pampa"

// Buckets of the histograms, in seconds.
var (
	// tryBuckets span jobs from milliseconds to ten minutes.
	tryBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	// roundBuckets span a dispatcher round, from a millisecond on a
	// quiet SQLite database to seconds under load.
	roundBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Metrics is one process's registry and the engine's observer that feeds
// it. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	// worker
	processed *prometheus.CounterVec   // job, outcome
	panics    *prometheus.CounterVec   // job
	duration  *prometheus.HistogramVec // job
	slots     *slotCollector

	// dispatcher
	reserved   *prometheus.CounterVec // job
	relaunched *prometheus.CounterVec // job
	lost       *prometheus.CounterVec // job
	dispatcher dispatcherSeries

	mu   sync.Mutex
	jobs map[string]*jobObserver
	db   bool // CollectDatabase was called
}

// dispatcherSeries are registered with the first dispatcher: a worker's
// process shows none of them.
type dispatcherSeries struct {
	once   sync.Once
	rounds prometheus.Histogram
	errors prometheus.Counter
	leader prometheus.Gauge
}

// New returns a process's metrics, the Go and process collectors
// registered.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		processed: counterVec("tasks_processed_total",
			"Tries whose outcome a worker recorded, by outcome: succeeded; failed (tries left); failed_final (last try); dropped (the fenced write did not apply: the task was relaunched or handed on meanwhile).",
			"job", "outcome"),
		panics: counterVec("task_panics_total",
			"Tries whose processing function panicked (each is also counted as failed or failed_final).", "job"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "task_duration_seconds",
			Help: "How long the processing function of each try ran.", Buckets: tryBuckets}, []string{"job"}),
		slots: &slotCollector{desc: prometheus.NewDesc(Namespace+"_worker_slots",
			"A worker's slots (its concurrency), by state: busy (running a try) or idle.", []string{"worker", "state"}, nil),
			workers: map[string]*slotSource{}},
		reserved: counterVec("tasks_reserved_total",
			"Rows the dispatcher reserved for workers.", "job"),
		relaunched: counterVec("tasks_relaunched_total",
			"Rows the dispatcher returned to pending: failed tries after their backoff, tries of gone workers and expired tries with tries left, rows of the relaunching hook.", "job"),
		lost: counterVec("tasks_failed_by_dispatcher_total",
			"Running rows the dispatcher failed for good: their worker went away, or the try expired, on the last try.", "job"),
		jobs: map[string]*jobObserver{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.processed, m.panics, m.duration, m.slots, m.reserved, m.relaunched, m.lost,
	)
	return m
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

// Registry is the process's registry: a program may register metrics of
// its own in it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' formats. A collector's error
// (the database unreachable, say) drops that collector's series from the
// scrape but serves the others, and counts in
// promhttp_metric_handler_errors_total: a process's own figures matter
// most when its database is in trouble. At most maxScrapes scrapes run at
// once, so that scrapers piling up cannot pile up database reads.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: maxScrapes,
	})
}

const maxScrapes = 3

// Job returns the recorder of one job's events (engine.Observer).
func (m *Metrics) Job(name string, r engine.Role) engine.JobObserver {
	m.mu.Lock()
	j := m.jobs[name]
	if j == nil {
		j = &jobObserver{m: m, name: name}
		m.jobs[name] = j
	}
	m.mu.Unlock()
	if r == engine.DispatcherRole {
		j.forDispatcher()
	} else {
		j.forWorker()
	}
	return j
}

// Round records one dispatcher round (engine.Observer): the duration of
// the leader's rounds (a standby's only try the lease), the failed ones,
// and whether it leads.
func (m *Metrics) Round(d time.Duration, leading bool, err error) {
	s := m.dispatcherSeries()
	if leading {
		s.rounds.Observe(d.Seconds())
		s.leader.Set(1)
	} else {
		s.leader.Set(0)
	}
	if err != nil {
		s.errors.Inc()
	}
}

// Resigned records that the dispatcher gave the lease up (engine.Observer).
func (m *Metrics) Resigned() { m.dispatcherSeries().leader.Set(0) }

func (m *Metrics) dispatcherSeries() *dispatcherSeries {
	s := &m.dispatcher
	s.once.Do(func() {
		s.rounds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "dispatcher_round_duration_seconds",
			Help: "How long each round of the leading dispatcher took: lease, maintenance and stretch when due, reserve.", Buckets: roundBuckets})
		s.errors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "dispatcher_round_errors_total",
			Help: "Dispatcher rounds in which a step failed (the lease, maintenance, stretch or reserve of a job)."})
		s.leader = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "dispatcher_leader",
			Help: "1 while this dispatcher holds the leader lease, else 0."})
		m.reg.MustRegister(s.rounds, s.errors, s.leader)
	})
	return s
}

// jobObserver holds one job's series, resolved once per role: recording
// an event is an atomic addition.
type jobObserver struct {
	m    *Metrics
	name string

	workerOnce sync.Once
	outcomes   [engine.NumFates]prometheus.Counter
	panics     prometheus.Counter
	duration   prometheus.Observer

	dispatcherOnce sync.Once
	reserved       prometheus.Counter
	relaunched     prometheus.Counter
	lost           prometheus.Counter
}

func (j *jobObserver) forWorker() *jobObserver {
	j.workerOnce.Do(func() {
		for f := range engine.NumFates {
			j.outcomes[f] = j.m.processed.WithLabelValues(j.name, f.String())
		}
		j.panics = j.m.panics.WithLabelValues(j.name)
		j.duration = j.m.duration.WithLabelValues(j.name)
	})
	return j
}

func (j *jobObserver) forDispatcher() *jobObserver {
	j.dispatcherOnce.Do(func() {
		j.m.dispatcherSeries()
		j.reserved = j.m.reserved.WithLabelValues(j.name)
		j.relaunched = j.m.relaunched.WithLabelValues(j.name)
		j.lost = j.m.lost.WithLabelValues(j.name)
	})
	return j
}

func (j *jobObserver) TryEnded(d time.Duration, panicked bool) {
	w := j.forWorker()
	w.duration.Observe(d.Seconds())
	if panicked {
		w.panics.Inc()
	}
}

func (j *jobObserver) Recorded(f engine.Fate) { j.forWorker().outcomes[f].Inc() }

func (j *jobObserver) Reserved(n int) {
	if d := j.forDispatcher(); n > 0 {
		d.reserved.Add(float64(n))
	}
}

func (j *jobObserver) Recovered(relaunched, failed int) {
	d := j.forDispatcher()
	d.relaunched.Add(float64(relaunched))
	d.lost.Add(float64(failed))
}

// WorkerSlots publishes a worker's slots while it runs (engine.Observer).
func (m *Metrics) WorkerSlots(worker string, concurrency int, busy func() int) (withdraw func()) {
	return m.slots.add(worker, concurrency, busy)
}

// slotCollector reports each running worker's slots when collected.
type slotCollector struct {
	desc    *prometheus.Desc
	mu      sync.Mutex
	workers map[string]*slotSource
}

type slotSource struct {
	concurrency int
	busy        func() int
}

func (c *slotCollector) add(worker string, concurrency int, busy func() int) func() {
	src := &slotSource{concurrency: concurrency, busy: busy}
	c.mu.Lock()
	c.workers[worker] = src
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.workers[worker] == src { // not a later run's under the same id
			delete(c.workers, worker)
		}
	}
}

func (c *slotCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *slotCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, w := range c.workers {
		busy := min(w.busy(), w.concurrency)
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(busy), id, "busy")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(w.concurrency-busy), id, "idle")
	}
}
