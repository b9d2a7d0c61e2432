package bench

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/store"
)

// prepare recreates the bench table with rows rows, of which done are
// already finished, each in a group (column grp, see groupExpr), runs setup (with the notify trigger) and ANALYZE, so
// that plans are made on real statistics, not on an empty table. Of the
// finished rows, one key in failEvery (0: none) failed for good, out of
// tries, the rest succeeded.
func prepare(ctx context.Context, c *pampa.Cluster, rows, done, failEvery int) error {
	client, err := pampa.Connect(ctx, c)
	if err != nil {
		return err
	}
	defer client.Close()
	db := client.DB()
	pg := client.Driver() != pampa.DriverSQLite
	for _, q := range []string{
		`DROP TABLE IF EXISTS ` + Table,
		`CREATE TABLE ` + Table + ` (id BIGINT PRIMARY KEY, began_ns BIGINT, grp BIGINT)`,
		`DELETE FROM pampa_workers WHERE node = 'bench'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.HasPrefix(q, "DELETE") {
			return err
		}
	}
	if _, err := pampa.Setup(ctx, c, pampa.SetupOptions{Notify: pg}); err != nil {
		return err
	}
	if rows > 0 {
		insert := `INSERT INTO ` + Table + ` (id, grp) WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?) SELECT g, ` + groupExpr("?") + ` FROM s`
		if pg {
			insert = `INSERT INTO ` + Table + ` (id, grp) SELECT g, ` + groupExpr("$2") + ` FROM generate_series(1, $1::bigint) g`
		}
		if _, err := db.ExecContext(ctx, insert, rows, done); err != nil {
			return err
		}
	}
	if done > 0 {
		if err := finish(ctx, db, pg, done, failEvery); err != nil {
			return err
		}
	}
	if pg {
		_, err = db.ExecContext(ctx, `VACUUM ANALYZE `+Table)
	} else {
		_, err = db.ExecContext(ctx, `ANALYZE`)
	}
	return err
}

// finish marks the rows of keys 1 to done finished, in one pass: those
// whose key is a multiple of failEvery (0: none) failed for good, their
// last try of DefaultMaxTryTimes failed; the others succeeded at their
// first try.
func finish(ctx context.Context, db *sql.DB, pg bool, done, failEvery int) error {
	now, ph := `strftime('%Y-%m-%d %H:%M:%f', 'now')`, "?"
	if pg {
		now, ph = "now()", "$1"
	}
	failed := "FALSE"
	if failEvery > 0 {
		failed = fmt.Sprintf("id %% %d = 0", failEvery)
	}
	q := fmt.Sprintf(`UPDATE %[1]s SET rid = 'bench.1', rtime = %[2]s, started = %[2]s, ended = %[2]s,
		ok = NOT (%[3]s), rtimes = CASE WHEN %[3]s THEN %[4]d ELSE 1 END,
		why = CASE WHEN %[3]s THEN 'bench: failed for good' END WHERE id <= %[5]s`,
		Table, now, failed, pampa.DefaultMaxTryTimes, ph)
	_, err := db.ExecContext(ctx, q, done)
	return err
}

// trickle inserts one row every cfg.TrickleEvery for cfg.TrickleFor while
// a dispatcher and the workers run here, and returns each row's latency
// in ms from its INSERT's commit to its processing's start.
func trickle(ctx context.Context, c *pampa.Cluster, cfg Config) ([]float64, error) {
	if err := prepare(ctx, c, 0, 0, 0); err != nil {
		return nil, err
	}
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	log := slog.New(slog.DiscardHandler)
	for i := 1; i <= cfg.Workers; i++ {
		w, err := client.NewWorker(pampa.WorkerID("bench", i), pampa.WorkerOptions{Concurrency: cfg.Concurrency, Logger: log})
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(runCtx) }()
	}
	if err := waitWorkers(ctx, client, cfg.Workers); err != nil {
		return nil, err
	}
	d := client.NewDispatcher(pampa.DispatcherOptions{Logger: log})
	wg.Add(1)
	go func() { defer wg.Done(); _ = d.Run(runCtx) }()
	db := client.DB()
	insert := `INSERT INTO ` + Table + ` (id) VALUES (?)`
	if client.Driver() != pampa.DriverSQLite {
		insert = `INSERT INTO ` + Table + ` (id) VALUES ($1)`
	}
	// Warm up: a first row gets the job a worker; it is not measured.
	if _, err := db.ExecContext(ctx, insert, 0); err != nil {
		return nil, err
	}
	if err := waitCompleted(ctx, client, 1, time.Minute); err != nil {
		return nil, err
	}

	committed := map[int64]int64{}
	tick := time.NewTicker(cfg.TrickleEvery)
	defer tick.Stop()
	end := time.Now().Add(cfg.TrickleFor)
	for id := int64(1); time.Now().Before(end); id++ {
		if _, err := db.ExecContext(ctx, insert, id); err != nil {
			return nil, err
		}
		committed[id] = time.Now().UnixNano()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	if err := waitCompleted(ctx, client, int64(len(committed))+1, 30*time.Second); err != nil {
		return nil, err
	}
	return latencies(ctx, db, committed)
}

// waitCompleted waits until n tasks of the bench job are done.
func waitCompleted(ctx context.Context, client *pampa.Client, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rep, err := exactReport(ctx, client)
		if err != nil {
			return err
		}
		if rep.Completed == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d rows done after %s", rep.Completed, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// latencies are the milliseconds from each row's commit to the start of
// its processing.
func latencies(ctx context.Context, db *sql.DB, committed map[int64]int64) ([]float64, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, began_ns FROM `+Table+` WHERE id > 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lat []float64
	for rows.Next() {
		var id int64
		var began sql.NullInt64
		if err := rows.Scan(&id, &began); err != nil {
			return nil, err
		}
		lat = append(lat, float64(began.Int64-committed[id])/1e6)
	}
	return lat, rows.Err()
}

// scaleFigures are one table size's figures: medians of timed runs.
type scaleFigures struct {
	round, report time.Duration
	roundP95      time.Duration
	pages         map[string]float64 // DashboardPages: ms of a full GET
	scrape        time.Duration      // a /metrics scrape with the database gauges
	scrapeBytes   int
	plans         map[string]PlanSummary // with explain
}

// Runs of each timing but the round's (Config.Rounds); the figure is
// their median.
const timedRuns = 7

// scale times dispatcher rounds, reports, the dashboard's pages and a
// metrics scrape over a table of rows rows, 99% done (one in failEvery of
// them failed for good), with live workers holding the rest. With
// explain, the hot queries' plans are explained after the timing.
func scale(ctx context.Context, c *pampa.Cluster, rows, workers, rounds int, explain bool, say func(string, ...any)) (scaleFigures, error) {
	var f scaleFigures
	start := time.Now()
	if err := prepare(ctx, c, rows, rows/100*99, failEvery); err != nil {
		return f, err
	}
	say("scale: %d rows loaded in %.1fs", rows, time.Since(start).Seconds())
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return f, err
	}
	defer client.Close()
	// Put the processing function back once the workers below have
	// stopped (deferred calls run last first): they read it.
	defer c.Handle(Job, Process)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	if err := holdTasks(runCtx, &wg, c, client, workers); err != nil {
		return f, err
	}
	if err := waitWorkers(ctx, client, workers); err != nil {
		return f, err
	}
	d := client.NewDispatcher(pampa.DispatcherOptions{Logger: slog.New(slog.DiscardHandler), MaintenanceEvery: time.Nanosecond})
	// Left held, the lease would keep the next run's dispatcher (the next
	// `pampa bench` on this database) waiting for its TTL, inside its burn.
	defer d.Resign()
	if f.round, f.roundP95, f.report, err = timeRounds(ctx, d, client, rounds); err != nil {
		return f, err
	}
	if f.pages, err = timeDashboard(ctx, client); err != nil {
		return f, fmt.Errorf("dashboard: %w", err)
	}
	if f.scrape, f.scrapeBytes, err = timeScrape(ctx, client); err != nil {
		return f, fmt.Errorf("metrics: %w", err)
	}
	if explain {
		if f.plans, err = explainPlans(ctx, c, rows, say); err != nil {
			return f, fmt.Errorf("explain: %w", err)
		}
	}
	return f, nil
}

// failEvery: one key in failEvery of the scale table's finished rows
// failed for good (0.1%), for the Failed page to list.
const failEvery = 1000

// holdTasks starts workers whose tasks never end, until ctx ends: their
// queues stay full and a round's every step runs against the big table.
func holdTasks(ctx context.Context, wg *sync.WaitGroup, c *pampa.Cluster, client *pampa.Client, workers int) error {
	hold := func(ctx context.Context, t *pampa.Task) error { <-ctx.Done(); return ctx.Err() }
	if err := c.Handle(Job, hold); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	for i := 1; i <= workers; i++ {
		w, err := client.NewWorker(pampa.WorkerID("bench", i), pampa.WorkerOptions{Logger: log, GracePeriod: time.Millisecond})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}
	return nil
}

// timeRounds returns the median and 95th percentile of rounds full
// dispatcher rounds, and the median of reports.
func timeRounds(ctx context.Context, d *pampa.Dispatcher, client *pampa.Client, n int) (round, roundP95, report time.Duration, err error) {
	var rounds, reports []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := d.RunOnce(ctx); err != nil {
			return 0, 0, 0, err
		}
		rounds = append(rounds, time.Since(t0))
	}
	for i := 0; i < timedRuns; i++ {
		t0 := time.Now()
		if _, err := client.Report(ctx); err != nil {
			return 0, 0, 0, err
		}
		reports = append(reports, time.Since(t0))
	}
	return durPercentile(rounds, 50), durPercentile(rounds, 95), median(reports), nil
}

// explainPlans prints the plans of the bench job's hot queries, as
// worker bench.1 (which holds reserved rows) would run them, and sums them
// up.
func explainPlans(ctx context.Context, c *pampa.Cluster, rows int, say func(string, ...any)) (map[string]PlanSummary, error) {
	s, err := store.Open(ctx, c.Database.Driver, c.Database.URL)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	j := s.Job(jobSpec(job(JobSettings{})))
	// As a client does on SQLite: reads of pending rows pinned to their index.
	if err := j.PinIndexes(ctx, Job); err != nil {
		return nil, err
	}
	plans, err := j.Explain(ctx, pampa.WorkerID("bench", 1))
	if err != nil {
		return nil, err
	}
	out := summarize(plans)
	printPlans(rows, out, plans, say)
	return out, nil
}

// summarize sums plans up by name.
func summarize(plans []store.Plan) map[string]PlanSummary {
	out := map[string]PlanSummary{}
	for _, p := range plans {
		out[p.Name] = PlanSummary{Indexes: p.Indexes, ScansTable: p.ScansTable, ExecMs: ms(p.Execution), JIT: p.JIT}
	}
	return out
}

// printPlans prints each plan, its summary first.
func printPlans(rows int, sums map[string]PlanSummary, plans []store.Plan, say func(string, ...any)) {
	for _, p := range plans {
		sum := sums[p.Name]
		timing := ""
		if p.Execution > 0 {
			timing = fmt.Sprintf(", %.3f ms", sum.ExecMs)
		}
		if p.JIT {
			timing += ", JIT-compiled"
		}
		say("explain: %d rows: %s: indexes %s, scans table %v%s", rows, p.Name, strings.Join(p.Indexes, ", "), p.ScansTable, timing)
		for _, l := range p.Lines {
			say("    %s", l)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
