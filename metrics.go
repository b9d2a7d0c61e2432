package pampa

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/metrics"
)

// Metrics are a process's Prometheus metrics (docs/metrics.md lists
// them): a registry of their own, with the Go and process collectors,
// fed by the workers and dispatchers given them in their options
// (WorkerOptions.Metrics, DispatcherOptions.Metrics). Make one per
// process and serve its Handler.
type Metrics struct{ m *metrics.Metrics }

// NewMetrics returns a process's metrics, with no series of Pampa's yet:
// each worker or dispatcher adds its own as it is built.
func NewMetrics() *Metrics { return &Metrics{m: metrics.New()} }

// Registry is the metrics' registry; a program may register its own
// collectors in it.
func (m *Metrics) Registry() *prometheus.Registry { return m.m.Registry() }

// Handler serves the metrics in Prometheus' formats, without
// authentication: mount it behind what the program's server checks.
func (m *Metrics) Handler() http.Handler { return m.m.Handler() }

// CollectDatabase adds the gauges read from c's database at each scrape:
// tasks by state and job (as Report counts them), paused jobs, workers by
// state, the leader lease. Each scrape then runs Report's queries, the
// registry's and the lease's, under a 5 s timeout; a failed read is
// logged to log (nil: not logged) and leaves its gauges out of that
// scrape. Do it in one process per cluster (a dispatcher, say), not in
// every worker. A second call is an error.
func (m *Metrics) CollectDatabase(c *Client, log *slog.Logger) error {
	return m.m.CollectDatabase(metricsSource{c}, log)
}

// observer is the engine's view of m; nil when m is.
func (m *Metrics) observer() engine.Observer {
	if m == nil {
		return nil
	}
	return m.m
}

// observe gives each job its recorder, for role r.
func (m *Metrics) observe(jobs []*engine.Job, r engine.Role) []*engine.Job {
	if m != nil {
		for _, j := range jobs {
			j.Observer = m.m.Job(j.Name, r)
		}
	}
	return jobs
}

// metricsSource reads the database gauges through the public API.
type metricsSource struct{ c *Client }

func (s metricsSource) Jobs(ctx context.Context) ([]metrics.JobTasks, error) {
	reports, err := s.c.Report(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.JobTasks, len(reports))
	for i, r := range reports {
		out[i] = metrics.JobTasks{Job: r.Job, Pending: r.Pending, Scheduled: r.Scheduled, Reserved: r.Reserved, Running: r.Running,
			Completed: r.Completed, Failed: r.Failed, Estimated: r.Estimated, Paused: r.Paused}
	}
	return out, nil
}

func (s metricsSource) Workers(ctx context.Context) ([]metrics.Worker, error) {
	ws, err := s.c.Workers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.Worker, len(ws))
	for i, w := range ws {
		out[i] = metrics.Worker{State: w.State, Alive: w.Alive}
	}
	return out, nil
}

func (s metricsSource) Leader(ctx context.Context) (metrics.Leader, error) {
	l, err := s.c.Leader(ctx)
	return metrics.Leader{Holder: l.Holder, Term: l.Term, ExpiresIn: l.ExpiresIn}, err
}
