// Package bench measures Pampa on a table of its own: how many tasks per
// second a cluster burns through, how long a freshly inserted row waits
// before its processing starts, what one dispatcher round, one report,
// the dashboard's pages and a metrics scrape cost on a small and a large
// table, and how much memory the processes take.
//
// The scenarios:
//
//	burn     N rows inserted up front, a no-op processing function; the
//	         clock runs from the dispatcher's start until every row
//	         succeeded.
//	trickle  one row inserted every Every for For, with the notify trigger
//	         on PostgreSQL; the latency is from the INSERT's commit to the
//	         processing function's start.
//	scale    a table of Small and of Large rows, 99% of them done (0.1%
//	         of those failed for good, for the Failed page to list), with
//	         live workers holding the rest: the time of one full
//	         dispatcher round (maintenance included), of one report, of a
//	         GET of each of DashboardPages, served by the dashboard in
//	         this process (the server's cost, its database reads
//	         included), and of a /metrics scrape with the database gauges,
//	         with the scrape's size; with ScaleLimits, rounds again with
//	         the job's limits on (limits.go).
//
// With Processes, the workers are separate OS processes (this program run
// again, see WorkerMain), so their memory is measured apart from the
// dispatcher's.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pampa-go/pampa"
)

// Config says what to measure and where.
type Config struct {
	Driver, URL string // the database; its table bench_tasks is recreated

	Tasks       int // burn: rows; 0 skips it (and the memory figures)
	Workers     int // workers; default 10 (with Nodes, per node)
	Concurrency int // tasks per worker at once; default 1
	QueueSize   int // the job's queue_size; default 250 (a no-op task takes microseconds)
	// QueueSizeMax is the job's queue_size_max; 0 for its default.
	QueueSizeMax int
	Processes    bool // workers as separate OS processes
	// TaskSleep makes each burn task wait this long, as real work waits
	// (a scrape, a payment API); 0: a no-op.
	TaskSleep time.Duration

	TrickleEvery, TrickleFor time.Duration // default 10ms for 10s; For 0 skips
	ScaleSmall, ScaleLarge   int           // default 100,000 and 10,000,000; 0 skips
	Rounds                   int           // scale: timed dispatcher rounds per table and setting; default 100
	ScaleLimits              bool          // scale: time rounds with the job's limits on too
	Explain                  bool          // scale: print the hot queries' plans

	// Exe and Args re-run this program as a bench worker (Processes).
	Exe  string
	Args []string

	Out io.Writer // progress lines; default io.Discard

	// Nodes, when set, runs the burn's workers under that many node
	// dispatchers (nodes.go), Workers each: one claimer per node.
	Nodes int
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 10
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.QueueSize == 0 {
		c.QueueSize = 250
	}
	if c.Rounds == 0 {
		c.Rounds = 100
	}
	if c.TrickleEvery == 0 {
		c.TrickleEvery = 10 * time.Millisecond
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return c
}

// Result holds the figures; the JSON keys are the ones `pampa bench --json`
// prints.
type Result struct {
	Driver        string  `json:"driver"`
	Tasks         int     `json:"tasks"`
	Workers       int     `json:"workers"`
	Concurrency   int     `json:"concurrency"`
	QueueSize     int     `json:"queue_size"`
	Processes     bool    `json:"processes"`
	BurnSeconds   float64 `json:"burn_s"`
	BurnTasksPerS float64 `json:"burn_tasks_per_s"`
	// With TaskSleep: the ideal rate (workers × concurrency / sleep).
	TaskSleepMs   float64 `json:"task_sleep_ms,omitempty"`
	BurnIdealPerS float64 `json:"burn_ideal_tasks_per_s,omitempty"`
	// BurnCPUMsPer1000 is the CPU (user and system) of this process and
	// of its worker processes during the burn, per 1,000 tasks; the
	// database server's is not counted.
	BurnCPUMsPer1000 float64 `json:"burn_cpu_ms_per_1000"`
	TrickleRows      int     `json:"trickle_rows"`
	TrickleP50ms     float64 `json:"trickle_p50_ms"`
	TrickleP95ms     float64 `json:"trickle_p95_ms"`
	TrickleP99ms     float64 `json:"trickle_p99_ms"`
	ScaleSmall       int     `json:"scale_small_rows"`
	ScaleLarge       int     `json:"scale_large_rows"`
	RoundMsSmall     float64 `json:"round_ms_small"` // median
	RoundMsLarge     float64 `json:"round_ms_large"`
	RoundP95Small    float64 `json:"round_p95_ms_small"`
	RoundP95Large    float64 `json:"round_p95_ms_large"`
	Rounds           int     `json:"rounds"` // timed rounds per table and setting
	// Rounds with the limits on (ScaleLimits): max_running, group_by,
	// max_running_per_group and rate_limit_per_group, then rate_limit too.
	// Median, 95th percentile, and rows reserved a round on average.
	LimitsSmall   *LimitsFigures `json:"limits_small,omitempty"`
	LimitsLarge   *LimitsFigures `json:"limits_large,omitempty"`
	ReportMsSmall float64        `json:"report_ms_small"`
	ReportMsLarge float64        `json:"report_ms_large"`
	// Dashboard pages (DashboardPages) by path: a full GET, in ms.
	DashboardMsSmall map[string]float64 `json:"dashboard_ms_small,omitempty"`
	DashboardMsLarge map[string]float64 `json:"dashboard_ms_large,omitempty"`
	// A /metrics scrape with the database gauges: ms, and body bytes.
	ScrapeMsSmall    float64 `json:"scrape_ms_small"`
	ScrapeMsLarge    float64 `json:"scrape_ms_large"`
	ScrapeBytesSmall int     `json:"scrape_bytes_small"`
	ScrapeBytesLarge int     `json:"scrape_bytes_large"`
	WorkerRSSMB      float64 `json:"worker_rss_mb"`
	DispatcherRSSMB  float64 `json:"dispatcher_rss_mb"`

	// Plans (Explain): by scale table size, each hot query's plan.
	Plans map[int]map[string]PlanSummary `json:"plans,omitempty"`

	// Nodes is Config.Nodes: the burn's workers ran under node
	// dispatchers, Workers each (0: each worker claimed for itself).
	Nodes int `json:"nodes,omitempty"`
	// The central dispatcher's rounds during the burn: their mean, and
	// the upper bound of the histogram bucket holding the 95th percentile.
	BurnRoundMs    float64 `json:"burn_round_ms"`
	BurnRoundP95ms float64 `json:"burn_round_p95_le_ms"`
	BurnRounds     int     `json:"burn_rounds"`
	// BurnReservedPerRound is the rows those rounds reserved, on average.
	BurnReservedPerRound float64 `json:"burn_reserved_per_round"`
	// Write transactions committed per second during the burn by this
	// process's store (every process when the workers run here); on
	// PostgreSQL also the server's write transactions per second, by its
	// transaction ids (every client of the server counts).
	BurnCommitsPerS float64 `json:"burn_commits_per_s"`
	BurnPgXactsPerS float64 `json:"burn_pg_xacts_per_s,omitempty"`
}

// LimitsFigures are one table's rounds with limits on: the per-group
// limits (Groups), and the same with the job's rate_limit (Rate).
type LimitsFigures struct {
	GroupsMs       float64 `json:"groups_ms"`
	GroupsP95ms    float64 `json:"groups_p95_ms"`
	GroupsReserved float64 `json:"groups_reserved"`
	RateMs         float64 `json:"rate_ms"`
	RateP95ms      float64 `json:"rate_p95_ms"`
	RateReserved   float64 `json:"rate_reserved"`
}

// PlanSummary is one query's plan in short.
type PlanSummary struct {
	Indexes    []string `json:"indexes"`
	ScansTable bool     `json:"scans_table"`
	ExecMs     float64  `json:"exec_ms,omitempty"` // PostgreSQL: EXPLAIN ANALYZE's execution time
	JIT        bool     `json:"jit,omitempty"`     // PostgreSQL: JIT-compiled
}

// Table and job names the bench uses.
const (
	Table = "bench_tasks"
	Job   = "bench"
)

// JobSettings are what the bench job is given.
type JobSettings struct {
	QueueSize, QueueSizeMax int
	// TaskSleep makes each task wait this long (0: none).
	TaskSleep time.Duration
}

// job is the bench job over Table: a no-op that records when it started.
func job(js JobSettings) pampa.Job {
	process := Process
	if sleep := js.TaskSleep; sleep > 0 {
		process = func(ctx context.Context, t *pampa.Task) error {
			t.Set("began_ns", time.Now().UnixNano())
			select {
			case <-time.After(sleep):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return pampa.Job{
		Name: Job, Table: Table, PrimaryKey: "id",
		Fields: pampa.TrackingFields{
			ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
			StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why",
		},
		QueueSize: js.QueueSize, QueueSizeMax: js.QueueSizeMax, MaxPendingTasks: 1, MaxJobDuration: time.Minute,
		Process: process,
	}
}

// Process is the bench's processing function: it notes its start time
// (Unix nanoseconds) in the row, for the trickle latency.
func Process(ctx context.Context, t *pampa.Task) error {
	t.Set("began_ns", time.Now().UnixNano())
	return nil
}

// Cluster defines the bench cluster: node "bench" with the workers, and
// the bench job.
func Cluster(driver, url string, workers int, js JobSettings) (*pampa.Cluster, error) {
	c := &pampa.Cluster{Database: pampa.Database{Driver: driver, URL: url}}
	if err := c.AddNode(pampa.Node{Name: "bench", MaxWorkers: workers}); err != nil {
		return nil, err
	}
	if err := c.AddJob(job(js)); err != nil {
		return nil, err
	}
	return c, nil
}

// Run runs the scenarios.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	r := Result{Driver: cfg.Driver, Tasks: cfg.Tasks, Workers: cfg.Workers, Nodes: cfg.Nodes, Concurrency: cfg.Concurrency,
		QueueSize: cfg.QueueSize, Processes: cfg.Processes, ScaleSmall: cfg.ScaleSmall, ScaleLarge: cfg.ScaleLarge, Rounds: cfg.Rounds}
	if cfg.Nodes > 0 && cfg.Processes {
		return r, fmt.Errorf("nodes = %d with processes: node dispatchers run their workers in their own process; leave processes off", cfg.Nodes)
	}
	c, err := Cluster(cfg.Driver, cfg.URL, cfg.Workers, JobSettings{QueueSize: cfg.QueueSize, QueueSizeMax: cfg.QueueSizeMax, TaskSleep: cfg.TaskSleep})
	if err != nil {
		return r, err
	}
	if err := addNodes(c, cfg.Nodes, cfg.Workers); err != nil {
		return r, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }

	if cfg.Tasks > 0 {
		if err := runBurn(ctx, c, cfg, &r, say); err != nil {
			return r, err
		}
	}
	if cfg.TrickleFor > 0 {
		say("trickle: one row every %s for %s", cfg.TrickleEvery, cfg.TrickleFor)
		lat, err := trickle(ctx, c, cfg)
		if err != nil {
			return r, fmt.Errorf("trickle: %w", err)
		}
		r.TrickleRows = len(lat)
		r.TrickleP50ms, r.TrickleP95ms, r.TrickleP99ms = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
		say("trickle: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms over %d rows", r.TrickleP50ms, r.TrickleP95ms, r.TrickleP99ms, r.TrickleRows)
	}
	for _, size := range []struct {
		rows  int
		large bool
	}{{cfg.ScaleSmall, false}, {cfg.ScaleLarge, true}} {
		if size.rows == 0 {
			continue
		}
		say("scale: %d rows, 99%% done", size.rows)
		f, err := scale(ctx, c, size.rows, cfg.Workers, cfg.Rounds, cfg.Explain, say)
		if err != nil {
			return r, fmt.Errorf("scale %d: %w", size.rows, err)
		}
		r.setScale(size.rows, size.large, f)
		say("scale: %d rows: round %.2f ms (p95 %.2f), report %.2f ms, scrape %.2f ms (%d bytes)",
			size.rows, ms(f.round), ms(f.roundP95), ms(f.report), ms(f.scrape), f.scrapeBytes)
		say("scale: %d rows: dashboard %s", size.rows, FormatPages(f.pages))
		if !cfg.ScaleLimits {
			continue
		}
		groups, rate, plans, err := scaleLimited(ctx, cfg, size.rows, cfg.Explain, say)
		if err != nil {
			return r, fmt.Errorf("scale %d, limits: %w", size.rows, err)
		}
		r.setLimits(size.rows, size.large, groups, rate, plans)
		say("scale: %d rows: round with limits %.2f ms (p95 %.2f), %.1f reserved a round; with rate_limit too %.2f ms (p95 %.2f), %.1f reserved",
			size.rows, ms(groups.p50), ms(groups.p95), groups.reserved, ms(rate.p50), ms(rate.p95), rate.reserved)
	}
	return r, nil
}

// setLimits records one table size's rounds with limits on, and the
// limited reservation's plans beside the others.
func (r *Result) setLimits(rows int, large bool, groups, rate limitedFigures, plans map[string]PlanSummary) {
	f := &LimitsFigures{GroupsMs: ms(groups.p50), GroupsP95ms: ms(groups.p95), GroupsReserved: groups.reserved,
		RateMs: ms(rate.p50), RateP95ms: ms(rate.p95), RateReserved: rate.reserved}
	if large {
		r.LimitsLarge = f
	} else {
		r.LimitsSmall = f
	}
	if plans == nil {
		return
	}
	if r.Plans == nil {
		r.Plans = map[int]map[string]PlanSummary{}
	}
	if r.Plans[rows] == nil {
		r.Plans[rows] = map[string]PlanSummary{}
	}
	for name, p := range plans {
		r.Plans[rows][name] = p
	}
}

// setScale records one table size's figures.
func (r *Result) setScale(rows int, large bool, f scaleFigures) {
	round, p95, report, pages, scrape, bytes := &r.RoundMsSmall, &r.RoundP95Small, &r.ReportMsSmall, &r.DashboardMsSmall, &r.ScrapeMsSmall, &r.ScrapeBytesSmall
	if large {
		round, p95, report, pages, scrape, bytes = &r.RoundMsLarge, &r.RoundP95Large, &r.ReportMsLarge, &r.DashboardMsLarge, &r.ScrapeMsLarge, &r.ScrapeBytesLarge
	}
	*round, *p95, *report, *pages, *scrape, *bytes = ms(f.round), ms(f.roundP95), ms(f.report), f.pages, ms(f.scrape), f.scrapeBytes
	if f.plans != nil {
		if r.Plans == nil {
			r.Plans = map[int]map[string]PlanSummary{}
		}
		r.Plans[rows] = f.plans
	}
}

// FormatPages lists pages' times in the order of DashboardPages:
// "/ 3.10, /jobs/bench 2.00, … ms".
func FormatPages(pages map[string]float64) string {
	parts := make([]string, 0, len(DashboardPages))
	for _, p := range DashboardPages {
		parts = append(parts, fmt.Sprintf("%s %.2f", p, pages[p]))
	}
	return strings.Join(parts, ", ") + " ms"
}

// runBurn runs the burn and records its figures and the memory's.
func runBurn(ctx context.Context, c *pampa.Cluster, cfg Config, r *Result, say func(string, ...any)) error {
	if cfg.Nodes > 0 {
		say("burn: %d tasks, %d workers as %d nodes × %d under node dispatchers (concurrency %d, queue_size %d)",
			cfg.Tasks, cfg.Nodes*cfg.Workers, cfg.Nodes, cfg.Workers, cfg.Concurrency, cfg.QueueSize)
	} else {
		say("burn: %d tasks, %d workers (concurrency %d, queue_size %d, processes %v)", cfg.Tasks, cfg.Workers, cfg.Concurrency, cfg.QueueSize, cfg.Processes)
	}
	if err := prepare(ctx, c, cfg.Tasks, 0, 0); err != nil {
		return fmt.Errorf("burn: prepare: %w", err)
	}
	cpu0 := cpuTime()
	dur, rss, drss, db, err := burn(ctx, c, cfg, say)
	if err != nil {
		return fmt.Errorf("burn: %w", err)
	}
	r.setDB(db, dur)
	say("burn: central round %.2f ms mean (p95 ≤ %.1f ms, %d rounds, %.0f rows reserved a round); %.0f write transactions/s%s",
		r.BurnRoundMs, r.BurnRoundP95ms, r.BurnRounds, r.BurnReservedPerRound, r.BurnCommitsPerS, pgXacts(r.BurnPgXactsPerS))
	r.BurnCPUMsPer1000 = ms(cpuTime()-cpu0) * 1000 / float64(cfg.Tasks)
	r.BurnSeconds, r.BurnTasksPerS = dur.Seconds(), float64(cfg.Tasks)/dur.Seconds()
	r.WorkerRSSMB, r.DispatcherRSSMB = rss, drss
	say("burn: %.0f tasks/s (%.1fs), %.0f ms CPU per 1,000 tasks", r.BurnTasksPerS, r.BurnSeconds, r.BurnCPUMsPer1000)
	if cfg.TaskSleep > 0 {
		r.TaskSleepMs = ms(cfg.TaskSleep)
		r.BurnIdealPerS = float64(cfg.Workers*max(cfg.Nodes, 1)*cfg.Concurrency) / cfg.TaskSleep.Seconds()
		say("burn: tasks of %s: %.0f%% of the ideal %.0f tasks/s", cfg.TaskSleep, 100*r.BurnTasksPerS/r.BurnIdealPerS, r.BurnIdealPerS)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the CPU used by this process and by its children that have
// ended (the worker processes, once stopped), user and system.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children) != nil {
		return 0
	}
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// burn runs a dispatcher here and the workers here or in processes, until
// every task succeeded; it returns the time and the peak RSS of a worker
// and of the dispatcher, in MB.
func burn(ctx context.Context, c *pampa.Cluster, cfg Config, say func(string, ...any)) (time.Duration, float64, float64, dbFigures, error) {
	var db dbFigures
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return 0, 0, 0, db, err
	}
	defer client.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	log := slog.New(slog.DiscardHandler)
	b := &burnRun{cfg: cfg, client: client, say: say}
	defer b.stopProcesses()
	entries := cfg.Workers
	if cfg.Nodes > 0 {
		err = b.startNodes(runCtx, &wg, log)
		entries = cfg.Nodes * (cfg.Workers + 1) // each node dispatcher is an entry too
	} else {
		err = b.startWorkers(runCtx, &wg, log)
	}
	if err != nil {
		return 0, 0, 0, db, err
	}
	// Let the workers register before the clock starts.
	if err := waitWorkers(ctx, client, entries); err != nil {
		return 0, 0, 0, db, err
	}
	m := pampa.NewMetrics()
	d := client.NewDispatcher(pampa.DispatcherOptions{Logger: log, Metrics: m})
	db0 := readDB(ctx, client)
	b.start = time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); _ = d.Run(runCtx) }()
	dur, rss, drss, err := b.watch(ctx)
	if err == nil {
		db = readDB(ctx, client).minus(db0)
		db.rounds, db.roundMean, db.roundP95 = roundFigures(m)
		db.reserved = reservedRows(m)
	}
	return dur, rss, drss, db, err
}

// burnRun is one burn's workers, as processes or in this process.
type burnRun struct {
	cfg     Config
	client  *pampa.Client
	say     func(string, ...any)
	procs   []*exec.Cmd
	workers []interface{ Stats() *pampa.WorkerStats } // in this process: workers or node dispatchers
	start   time.Time
}

func (b *burnRun) startWorkers(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger) error {
	cfg := b.cfg
	for i := 1; i <= cfg.Workers; i++ {
		id := pampa.WorkerID("bench", i)
		if cfg.Processes {
			cmd := exec.CommandContext(ctx, cfg.Exe, append(append([]string{}, cfg.Args...),
				"--db", cfg.Driver, "--database-url", cfg.URL, "--id", id,
				"--workers", strconv.Itoa(cfg.Workers), "--queue-size", strconv.Itoa(cfg.QueueSize),
				"--concurrency", strconv.Itoa(cfg.Concurrency), "--task-sleep", cfg.TaskSleep.String())...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("start worker process: %w", err)
			}
			b.procs = append(b.procs, cmd)
			continue
		}
		w, err := b.client.NewWorker(id, pampa.WorkerOptions{Concurrency: cfg.Concurrency, Logger: log})
		if err != nil {
			return err
		}
		b.workers = append(b.workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}
	return nil
}

func (b *burnRun) stopProcesses() {
	for _, p := range b.procs {
		_ = p.Process.Signal(os.Interrupt)
	}
	for _, p := range b.procs {
		_ = p.Wait()
	}
}

// watch waits for every task to be done and returns the burn's time and
// the peak RSS of the workers and of this process. A report counts the
// whole table, too costly to run often without slowing the burn.
// In-process workers count the results they recorded: a report confirms
// once they add up. Worker processes are watched through a report every
// 250 ms.
func (b *burnRun) watch(ctx context.Context) (time.Duration, float64, float64, error) {
	cfg := b.cfg
	var workerRSS float64
	every := 250 * time.Millisecond
	if !cfg.Processes {
		every = 10 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastSay := time.Now()
	for {
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-tick.C:
		}
		for _, p := range b.procs {
			workerRSS = max(workerRSS, peakRSSMB(p.Process.Pid))
		}
		checked := time.Now()
		var recorded int64
		for _, w := range b.workers {
			recorded += w.Stats().Succeeded.Load() + w.Stats().Failed.Load()
		}
		sayNow := time.Since(lastSay) >= 2*time.Second
		if !cfg.Processes && recorded < int64(cfg.Tasks) && !sayNow {
			continue
		}
		rep, err := exactReport(ctx, b.client)
		if err != nil {
			return 0, 0, 0, err
		}
		if rep.Completed == int64(cfg.Tasks) {
			self := peakRSSMB(os.Getpid())
			if !cfg.Processes {
				workerRSS = self // one process holds everything
			}
			return checked.Sub(b.start), workerRSS, self, nil
		}
		if rep.Failed > 0 {
			return 0, 0, 0, fmt.Errorf("%d tasks failed", rep.Failed)
		}
		if sayNow {
			b.say("burn: %d/%d done", rep.Completed, cfg.Tasks)
			lastSay = time.Now()
		}
	}
}

// exactReport counts the bench job's rows exactly: on a large table a
// report may estimate its total, and the bench compares counts.
func exactReport(ctx context.Context, client *pampa.Client) (pampa.JobReport, error) {
	reps, err := client.ReportWith(ctx, pampa.ReportOptions{Jobs: []string{Job}, Exact: true})
	if err != nil {
		return pampa.JobReport{}, err
	}
	return reps[0], nil
}

func waitWorkers(ctx context.Context, client *pampa.Client, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := client.Workers(ctx)
		if err != nil {
			return err
		}
		live := 0
		for _, w := range ws {
			if w.Alive {
				live++
			}
		}
		if live >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d workers registered within 30s", live, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// peakRSSMB reads a process's peak resident set size (VmHWM) in MB.
func peakRSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
