package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the database gauges are read from at each scrape. The
// root package's Client provides it; a dashboard's process can reuse it.
type Source interface {
	// Jobs counts each job's tasks by state, as `pampa report` does.
	Jobs(ctx context.Context) ([]JobTasks, error)
	// Workers lists the worker registry.
	Workers(ctx context.Context) ([]Worker, error)
	// Leader reads the dispatchers' leader lease.
	Leader(ctx context.Context) (Leader, error)
}

// JobTasks are one job's task counts (pampa.JobReport).
type JobTasks struct {
	Job                                                      string
	Pending, Scheduled, Reserved, Running, Completed, Failed int64
	// Estimated: Completed comes from the table's statistics.
	Estimated bool
	Paused    bool
}

// Worker is a registry row, as far as the gauges need it.
type Worker struct {
	State string // running, stopping, stopped, dead
	Alive bool   // running, heartbeat within the TTL
}

// Leader is the leader lease.
type Leader struct {
	Holder    string // "" when nobody holds it
	Term      int64
	ExpiresIn time.Duration // negative once lapsed
}

// ScrapeTimeout bounds the database reads of one scrape.
const ScrapeTimeout = 5 * time.Second

// workerStates are the registry's states, reported even when no worker
// is in them.
var workerStates = []string{"running", "stopping", "stopped", "dead"}

// dbCollector reads the database gauges at each scrape.
type dbCollector struct {
	src     Source
	log     *slog.Logger
	timeout time.Duration

	tasks, estimated, paused         *prometheus.Desc
	workers, alive                   *prometheus.Desc
	term, leaseRemaining, leaderInfo *prometheus.Desc
	scrapeDuration, scrapeSuccess    *prometheus.Desc
}

func newDBCollector(src Source, log *slog.Logger, timeout time.Duration) *dbCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	return &dbCollector{src: src, log: log, timeout: timeout,
		tasks: desc("tasks", "A job's tasks by state (as pampa report counts them): pending, reserved, running, completed, failed (out of tries).",
			"job", "state"),
		estimated: desc("tasks_estimated",
			"1 when the job's completed count is estimated from PostgreSQL's statistics (a table of 1,000,000 rows or more), else 0.", "job"),
		paused:  desc("job_paused", "1 while an operator has paused the job, else 0.", "job"),
		workers: desc("workers", "Rows of the worker registry by state: running, stopping, stopped, dead.", "state"),
		alive:   desc("workers_alive", "Workers that may get tasks: running, with a heartbeat within the TTL."),
		term:    desc("leader_term", "The leader lease's term: it goes up each time the lease changes hands."),
		leaseRemaining: desc("leader_lease_remaining_seconds",
			"Time until the leader lease lapses unless renewed; 0 or less when no dispatcher leads."),
		leaderInfo: desc("leader_info", "1, labelled with the id of the dispatcher holding the lease (absent when none does).", "holder"),
		scrapeDuration: desc("database_scrape_duration_seconds",
			"How long this scrape's database reads took (task counts, registry, lease)."),
		scrapeSuccess: desc("database_scrape_success", "1 when every database read of this scrape succeeded, else 0."),
	}
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.estimated, c.paused, c.workers, c.alive,
		c.term, c.leaseRemaining, c.leaderInfo, c.scrapeDuration, c.scrapeSuccess} {
		ch <- d
	}
}

// Collect reads the three parts under one timeout. A part that fails
// sends an invalid metric (the scrape's error) and leaves the others.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	var errs []error
	for _, part := range []struct {
		name    string
		desc    *prometheus.Desc
		collect func(context.Context, chan<- prometheus.Metric) error
	}{
		{"task counts", c.tasks, c.collectJobs},
		{"worker registry", c.workers, c.collectWorkers},
		{"leader lease", c.term, c.collectLeader},
	} {
		if err := part.collect(ctx, ch); err != nil {
			err = fmt.Errorf("metrics: read the %s: %w", part.name, err)
			ch <- prometheus.NewInvalidMetric(part.desc, err)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Warn("metrics scrape failed", "err", err)
	}
	ch <- gauge(c.scrapeDuration, time.Since(start).Seconds())
	ch <- gauge(c.scrapeSuccess, flag(len(errs) == 0))
}

func (c *dbCollector) collectJobs(ctx context.Context, ch chan<- prometheus.Metric) error {
	jobs, err := c.src.Jobs(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		for _, s := range []struct {
			state string
			n     int64
		}{{"pending", j.Pending}, {"scheduled", j.Scheduled}, {"reserved", j.Reserved}, {"running", j.Running}, {"completed", j.Completed}, {"failed", j.Failed}} {
			ch <- gauge(c.tasks, float64(s.n), j.Job, s.state)
		}
		ch <- gauge(c.estimated, flag(j.Estimated), j.Job)
		ch <- gauge(c.paused, flag(j.Paused), j.Job)
	}
	return nil
}

func (c *dbCollector) collectWorkers(ctx context.Context, ch chan<- prometheus.Metric) error {
	workers, err := c.src.Workers(ctx)
	if err != nil {
		return err
	}
	byState := map[string]int{}
	alive := 0
	for _, w := range workers {
		byState[w.State]++
		if w.Alive {
			alive++
		}
	}
	for _, s := range workerStates {
		ch <- gauge(c.workers, float64(byState[s]), s)
		delete(byState, s)
	}
	for s, n := range byState { // a state a later version added
		ch <- gauge(c.workers, float64(n), s)
	}
	ch <- gauge(c.alive, float64(alive))
	return nil
}

func (c *dbCollector) collectLeader(ctx context.Context, ch chan<- prometheus.Metric) error {
	l, err := c.src.Leader(ctx)
	if err != nil {
		return err
	}
	ch <- gauge(c.term, float64(l.Term))
	ch <- gauge(c.leaseRemaining, l.ExpiresIn.Seconds())
	if l.Holder != "" && l.ExpiresIn > 0 {
		ch <- gauge(c.leaderInfo, 1, l.Holder)
	}
	return nil
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CollectDatabase adds the gauges read from src at each scrape, logging
// a failed read to log (nil: not logged). One Source per process: a
// second call is an error.
func (m *Metrics) CollectDatabase(src Source, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db {
		return errors.New("metrics: the database gauges are already collected in this process")
	}
	if err := m.reg.Register(newDBCollector(src, log, ScrapeTimeout)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	m.db = true
	return nil
}
