package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/bench"
)

func benchCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("bench", "", "Measure Pampa on a table of its own (bench_tasks, recreated): burn (tasks/s through\n"+
		"N pre-inserted no-op tasks), trickle (latency from an INSERT's commit to its processing),\n"+
		"scale (one dispatcher round, one report, the dashboard's pages and a /metrics scrape on a\n"+
		"small and a large table, 99% done) and peak memory. Figures, not pass/fail.")
	var cfg bench.Config
	var asJSON bool
	var dir string
	fs.StringVar(&cfg.Driver, "db", "sqlite", "database driver: sqlite or postgres")
	fs.StringVar(&cfg.URL, "database-url", "", "database URL (postgres; default $PAMPA_DATABASE_URL) or SQLite file (default: a new file in a temp dir)")
	fs.IntVar(&cfg.Tasks, "tasks", 100_000, "burn: tasks (0 skips the burn and the memory figures)")
	fs.IntVar(&cfg.Workers, "workers", 10, "workers (with --nodes, per node)")
	fs.IntVar(&cfg.Nodes, "nodes", 0, "burn: run the workers under this many node dispatchers, --workers each, in this process\n"+
		"(one claimer per node, docs/multi-level.md); 0: each worker claims for itself")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1, "tasks each worker runs at once")
	fs.IntVar(&cfg.QueueSize, "queue-size", 250, "the job's queue_size (tasks kept queued for a worker, at least)")
	fs.IntVar(&cfg.QueueSizeMax, "queue-size-max", 0, "the job's queue_size_max (0: its default, 50 × queue_size up to 1,000; equal to\n"+
		"--queue-size: queues stay at queue_size)")
	fs.BoolVar(&cfg.Processes, "processes", false, "run the burn's workers as separate OS processes")
	fs.DurationVar(&cfg.TaskSleep, "task-sleep", 0, "burn: each task waits this long, as real work waits (0: a no-op)")
	fs.DurationVar(&cfg.TrickleEvery, "trickle-every", 10*time.Millisecond, "trickle: one insert every")
	fs.DurationVar(&cfg.TrickleFor, "trickle", 10*time.Second, "trickle: for how long (0 skips it)")
	fs.IntVar(&cfg.ScaleSmall, "scale-small", 100_000, "scale: rows of the small table (0 skips it)")
	fs.IntVar(&cfg.ScaleLarge, "scale-large", 10_000_000, "scale: rows of the large table (0 skips it)")
	fs.IntVar(&cfg.Rounds, "rounds", 100, "scale: timed dispatcher rounds per table and setting (median and p95)")
	fs.BoolVar(&cfg.ScaleLimits, "scale-limits", true, "scale: time the rounds again with the job's limits on (group_by, max_running, per-group\n"+
		"limits, then rate_limit too)")
	fs.BoolVar(&cfg.Explain, "explain", false, "scale: after timing each table, print every hot query's plan (PostgreSQL: EXPLAIN ANALYZE in a\n"+
		"transaction rolled back; SQLite: EXPLAIN QUERY PLAN); with --json, a summary in \"plans\"")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object with the figures and settings")
	var cpuProfile string
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the bench process to this file")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.URL == "" {
		cfg.URL = os.Getenv("PAMPA_DATABASE_URL")
	}
	if cfg.URL == "" {
		if cfg.Driver != pampa.DriverSQLite {
			return usagef("--db %s needs --database-url (or $PAMPA_DATABASE_URL)", cfg.Driver)
		}
		var err error
		if dir, err = os.MkdirTemp("", "pampa-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.URL = filepath.Join(dir, "bench.db")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Exe, cfg.Args = exe, []string{"bench-worker"}
	if !asJSON {
		cfg.Out = e.stdout
	} else {
		cfg.Out = e.stderr
	}
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(r)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\ndatabase\t%s\n", r.Driver)
	if r.Nodes > 0 {
		fmt.Fprintf(tw, "settings\t%d tasks, %d workers as %d nodes × %d under node dispatchers, concurrency %d, queue_size %d\n",
			r.Tasks, r.Nodes*r.Workers, r.Nodes, r.Workers, r.Concurrency, r.QueueSize)
	} else {
		fmt.Fprintf(tw, "settings\t%d tasks, %d workers, concurrency %d, queue_size %d, processes %v\n", r.Tasks, r.Workers, r.Concurrency, r.QueueSize, r.Processes)
	}
	if r.Tasks > 0 {
		fmt.Fprintf(tw, "burn\t%.0f tasks/s\t(%.1fs, %.0f ms CPU per 1,000 tasks)\n", r.BurnTasksPerS, r.BurnSeconds, r.BurnCPUMsPer1000)
		fmt.Fprintf(tw, "burn: central round mean / p95\t%.2f / ≤ %.1f ms\t(%d rounds, %.0f rows reserved a round)\n", r.BurnRoundMs, r.BurnRoundP95ms, r.BurnRounds, r.BurnReservedPerRound)
		fmt.Fprintf(tw, "burn: write transactions/s\t%.0f\t(this process's commits)\n", r.BurnCommitsPerS)
		if r.BurnPgXactsPerS > 0 {
			fmt.Fprintf(tw, "burn: write transactions/s at the server\t%.0f\t(transaction ids)\n", r.BurnPgXactsPerS)
		}
		if r.BurnIdealPerS > 0 {
			fmt.Fprintf(tw, "burn of tasks waiting %.0f ms\t%.0f%% of the ideal %.0f tasks/s\n", r.TaskSleepMs, 100*r.BurnTasksPerS/r.BurnIdealPerS, r.BurnIdealPerS)
		}
	}
	if r.TrickleRows > 0 {
		fmt.Fprintf(tw, "trickle p50 / p95 / p99\t%.2f / %.2f / %.2f ms\t(%d rows)\n", r.TrickleP50ms, r.TrickleP95ms, r.TrickleP99ms, r.TrickleRows)
	}
	for _, s := range []struct {
		rows                       int
		round, p95, report, scrape float64
		bytes                      int
		pages                      map[string]float64
		limits                     *bench.LimitsFigures
	}{
		{r.ScaleSmall, r.RoundMsSmall, r.RoundP95Small, r.ReportMsSmall, r.ScrapeMsSmall, r.ScrapeBytesSmall, r.DashboardMsSmall, r.LimitsSmall},
		{r.ScaleLarge, r.RoundMsLarge, r.RoundP95Large, r.ReportMsLarge, r.ScrapeMsLarge, r.ScrapeBytesLarge, r.DashboardMsLarge, r.LimitsLarge},
	} {
		if s.rows > 0 {
			fmt.Fprintf(tw, "round / report, %d rows\t%.2f / %.2f ms\n", s.rows, s.round, s.report)
			fmt.Fprintf(tw, "round p50 / p95, %d rows\t%.2f / %.2f ms\t(%d rounds)\n", s.rows, s.round, s.p95, r.Rounds)
			if l := s.limits; l != nil {
				fmt.Fprintf(tw, "round with limits p50 / p95, %d rows\t%.2f / %.2f ms\t(%.1f reserved a round)\n", s.rows, l.GroupsMs, l.GroupsP95ms, l.GroupsReserved)
				fmt.Fprintf(tw, "round with limits and rate_limit p50 / p95, %d rows\t%.2f / %.2f ms\t(%.1f reserved a round)\n", s.rows, l.RateMs, l.RateP95ms, l.RateReserved)
			}
			fmt.Fprintf(tw, "dashboard, %d rows\t%s\n", s.rows, bench.FormatPages(s.pages))
			fmt.Fprintf(tw, "/metrics scrape, %d rows\t%.2f ms\t(%d bytes)\n", s.rows, s.scrape, s.bytes)
		}
	}
	if r.Tasks > 0 {
		fmt.Fprintf(tw, "peak RSS worker / dispatcher\t%.1f / %.1f MB\n", r.WorkerRSSMB, r.DispatcherRSSMB)
	}
	return tw.Flush()
}

// benchWorkerCmd is a worker of `bench --processes`, run by the bench.
func benchWorkerCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("bench-worker", "", "A worker process of `pampa bench --processes` (started by it).")
	var driver, url, id string
	var workers, queue, concurrency int
	fs.StringVar(&driver, "db", "sqlite", "driver")
	fs.StringVar(&url, "database-url", "", "database")
	fs.StringVar(&id, "id", "", "worker id")
	fs.IntVar(&workers, "workers", 1, "workers of the bench node")
	fs.IntVar(&queue, "queue-size", 5, "queue_size")
	fs.IntVar(&concurrency, "concurrency", 1, "concurrency")
	var sleep time.Duration
	fs.DurationVar(&sleep, "task-sleep", 0, "each task waits")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	c, err := bench.Cluster(driver, url, workers, bench.JobSettings{QueueSize: queue, TaskSleep: sleep})
	if err != nil {
		return err
	}
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return err
	}
	defer client.Close()
	w, err := client.NewWorker(id, pampa.WorkerOptions{Concurrency: concurrency, Logger: slog.New(slog.DiscardHandler),
		GracePeriod: time.Second})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
