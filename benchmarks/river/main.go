// Command river is a small standalone benchmark for the River job queue
// (github.com/riverqueue/river) on PostgreSQL through its pgx v5 driver.
//
// Two scenarios run one after the other against the same database:
//
//   - burn: --jobs no-op jobs are bulk inserted (InsertManyFast, i.e. COPY)
//     while the client is stopped, river_job is ANALYZEd, then the client is
//     started and timed from Start until the last job is completed, i.e. until
//     River's batch completer has persisted state=completed for every job (as
//     seen through JobCompleted events; confirmed with a count on river_job).
//   - trickle: with a running client and an empty table, one job is inserted
//     every --trickle-every for --trickle, each with a plain Client.Insert
//     (its own transaction). Latency is measured from the moment Insert
//     returned to the moment the worker's Work started.
//
// Nothing here tunes River beyond the flags: the client uses River's defaults
// for everything else (LISTEN/NOTIFY on, batch completer, default pool).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

const riverVersion = "v0.51.2"

// ---- job kinds ----

// NoopArgs is the burn job: its Work returns nil straight away.
type NoopArgs struct {
	Num int `json:"num"`
}

func (NoopArgs) Kind() string { return "bench_noop" }

type NoopWorker struct {
	river.WorkerDefaults[NoopArgs]
}

func (w *NoopWorker) Work(ctx context.Context, job *river.Job[NoopArgs]) error { return nil }

// SleepArgs is the waiting job of the sleep scenario: its Work sleeps for
// the run's --task-sleep, as a scrape or a payment API call waits.
type SleepArgs struct {
	Num int `json:"num"`
}

func (SleepArgs) Kind() string { return "bench_sleep" }

type SleepWorker struct {
	river.WorkerDefaults[SleepArgs]
	sleep time.Duration
}

func (w *SleepWorker) Work(ctx context.Context, job *river.Job[SleepArgs]) error {
	select {
	case <-time.After(w.sleep):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TrickleArgs is the latency job. InsertCalledAtNs is the wall clock just
// before Insert was called (informational only); the measured latency uses
// the monotonic time at which Insert returned, recorded by job ID.
type TrickleArgs struct {
	Seq              int   `json:"seq"`
	InsertCalledAtNs int64 `json:"insert_called_at_ns"`
}

func (TrickleArgs) Kind() string { return "bench_trickle" }

// latencyRecorder pairs "Insert returned" and "Work started" times by job ID.
// Either side may be recorded first (a fast fetch can start Work before the
// inserting goroutine gets to record its timestamp), so both are kept and
// paired afterwards.
type latencyRecorder struct {
	mu       sync.Mutex
	returned map[int64]time.Time
	started  map[int64]time.Time
	nStarted atomic.Int64
}

func newLatencyRecorder() *latencyRecorder {
	return &latencyRecorder{returned: map[int64]time.Time{}, started: map[int64]time.Time{}}
}

func (r *latencyRecorder) insertReturned(id int64, t time.Time) {
	r.mu.Lock()
	r.returned[id] = t
	r.mu.Unlock()
}

func (r *latencyRecorder) workStarted(id int64, t time.Time) {
	r.mu.Lock()
	if _, dup := r.started[id]; !dup { // keep the first attempt only
		r.started[id] = t
		r.nStarted.Add(1)
	}
	r.mu.Unlock()
}

type TrickleWorker struct {
	river.WorkerDefaults[TrickleArgs]
	rec *latencyRecorder
}

func (w *TrickleWorker) Work(ctx context.Context, job *river.Job[TrickleArgs]) error {
	w.rec.workStarted(job.ID, time.Now()) // first thing Work does
	return nil
}

// ---- settings / results ----

type settings struct {
	Jobs          int
	Workers       int
	SleepJobs     int
	SleepWorkers  int
	TaskSleep     time.Duration
	FetchPoll     time.Duration
	FetchCooldown time.Duration
	Trickle       time.Duration
	TrickleEvery  time.Duration
	DumpPath      string
}

type result struct {
	BurnJobsPerS     float64 `json:"burn_jobs_per_s"`
	TrickleP50Ms     float64 `json:"trickle_p50_ms"`
	TrickleP95Ms     float64 `json:"trickle_p95_ms"`
	TrickleP99Ms     float64 `json:"trickle_p99_ms"`
	BurnJobs         int     `json:"burn_jobs"`
	BurnSeconds      float64 `json:"burn_seconds"`
	BurnInsertSecs   float64 `json:"burn_insert_seconds"`
	TrickleJobs      int     `json:"trickle_jobs"`
	TrickleMeanMs    float64 `json:"trickle_mean_ms"`
	TrickleMinMs     float64 `json:"trickle_min_ms"`
	TrickleMaxMs     float64 `json:"trickle_max_ms"`
	TrickleP99Steady float64 `json:"trickle_p99_ms_excl_last_cooldown"`
	TrickleInsertP50 float64 `json:"trickle_insert_call_p50_ms"`
	BurnCPUMsPer1000 float64 `json:"burn_cpu_ms_per_1000"`
	// The sleep scenario: SleepJobs jobs that each wait TaskSleep, run by
	// SleepWorkers worker goroutines; Ideal is workers / sleep.
	SleepJobs         int     `json:"sleep_jobs"`
	SleepWorkers      int     `json:"sleep_workers"`
	TaskSleepMs       float64 `json:"task_sleep_ms"`
	SleepJobsPerS     float64 `json:"sleep_jobs_per_s"`
	SleepIdealPerS    float64 `json:"sleep_ideal_jobs_per_s"`
	SleepCPUMsPer1000 float64 `json:"sleep_cpu_ms_per_1000"`
	Workers           int     `json:"workers"`
	FetchPollMs       float64 `json:"fetch_poll_interval_ms"`
	FetchCooldownMs   float64 `json:"fetch_cooldown_ms"`
	TrickleS          float64 `json:"trickle_s"`
	TrickleEveryMs    float64 `json:"trickle_every_ms"`
	PoolMaxConns      int32   `json:"pool_max_conns"`
	GoMaxProcs        int     `json:"gomaxprocs"`
	RiverVersion      string  `json:"river_version"`
	Driver            string  `json:"driver"`
	InsertMethod      string  `json:"burn_insert_method"`
}

func main() {
	var (
		dbURL      = flag.String("database-url", "postgres://postgres@127.0.0.1:5432/riverbench?sslmode=disable", "PostgreSQL URL (pgxpool options such as pool_max_conns may be appended)")
		jobs       = flag.Int("jobs", 100_000, "number of no-op jobs for the burn scenario")
		workers    = flag.Int("workers", 2000, "River QueueConfig.MaxWorkers of the default queue (1..10000)")
		fetchPoll  = flag.Duration("fetch-poll", river.FetchPollIntervalDefault, "River Config.FetchPollInterval")
		fetchCool  = flag.Duration("fetch-cooldown", river.FetchCooldownDefault, "River Config.FetchCooldown")
		trickle    = flag.Duration("trickle", 10*time.Second, "duration of the trickle scenario (0 skips it)")
		trickleEv  = flag.Duration("trickle-every", 10*time.Millisecond, "interval between trickle inserts")
		jsonOut    = flag.Bool("json", false, "print one JSON object on stdout (the table goes to stderr)")
		dumpPath   = flag.String("trickle-dump", "", "optional file to write per-job trickle latencies to (CSV: seq,ms_since_first_insert,latency_ms)")
		logLevelFl = flag.String("log-level", "warn", "River log level on stderr: debug, info, warn, error")
		sleepJobs  = flag.Int("sleep-jobs", 0, "number of waiting jobs for the sleep scenario (0 skips it)")
		sleepWork  = flag.Int("sleep-workers", 200, "River MaxWorkers for the sleep scenario")
		taskSleep  = flag.Duration("task-sleep", 50*time.Millisecond, "how long each job of the sleep scenario waits")
	)
	flag.Parse()

	s := settings{Jobs: *jobs, Workers: *workers, SleepJobs: *sleepJobs, SleepWorkers: *sleepWork, TaskSleep: *taskSleep, FetchPoll: *fetchPoll, FetchCooldown: *fetchCool, Trickle: *trickle, TrickleEvery: *trickleEv, DumpPath: *dumpPath}
	if s.Jobs < 1 {
		fatalf("--jobs must be >= 1")
	}
	if s.TrickleEvery <= 0 {
		fatalf("--trickle-every must be > 0")
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevelFl)); err != nil {
		fatalf("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	ctx := context.Background()

	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		fatalf("pgxpool: %v", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		fatalf("connect: %v (create the database first, e.g. psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE riverbench')", err)
	}

	driver := riverpgxv5.New(pool)

	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		fatalf("rivermigrate: %v", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		fatalf("migrate up: %v", err)
	}

	res := result{
		BurnJobs:        s.Jobs,
		Workers:         s.Workers,
		FetchPollMs:     ms(s.FetchPoll),
		FetchCooldownMs: ms(s.FetchCooldown),
		TrickleS:        s.Trickle.Seconds(),
		TrickleEveryMs:  ms(s.TrickleEvery),
		PoolMaxConns:    pool.Config().MaxConns,
		GoMaxProcs:      runtime.GOMAXPROCS(0),
		RiverVersion:    riverVersion,
		Driver:          "riverpgxv5",
		InsertMethod:    "InsertManyFast",
	}

	progress := os.Stderr

	// ---- scenario 1: burn ----
	fmt.Fprintf(progress, "burn: inserting %d jobs...\n", s.Jobs)
	if err := runBurn(ctx, pool, driver, logger, s, &res); err != nil {
		fatalf("burn: %v", err)
	}
	fmt.Fprintf(progress, "burn: %d jobs completed in %.3fs = %.0f jobs/s\n", s.Jobs, res.BurnSeconds, res.BurnJobsPerS)

	// ---- scenario: sleep ----
	if s.SleepJobs > 0 {
		fmt.Fprintf(progress, "sleep: %d jobs of %s each, %d workers...\n", s.SleepJobs, s.TaskSleep, s.SleepWorkers)
		if err := runSleep(ctx, pool, driver, logger, s, &res); err != nil {
			fatalf("sleep: %v", err)
		}
		fmt.Fprintf(progress, "sleep: %.0f jobs/s of an ideal %.0f (%.0f%%), %.0f ms CPU per 1,000 jobs\n",
			res.SleepJobsPerS, res.SleepIdealPerS, 100*res.SleepJobsPerS/res.SleepIdealPerS, res.SleepCPUMsPer1000)
	}

	// ---- scenario 2: trickle ----
	if s.Trickle > 0 {
		fmt.Fprintf(progress, "trickle: one Insert every %s for %s...\n", s.TrickleEvery, s.Trickle)
		if err := runTrickle(ctx, pool, driver, logger, s, &res); err != nil {
			fatalf("trickle: %v", err)
		}
	}

	tableOut := io.Writer(os.Stdout)
	if *jsonOut {
		tableOut = os.Stderr
	}
	printTable(tableOut, s, &res)
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(res); err != nil {
			fatalf("json: %v", err)
		}
	}
}

func newClient(driver *riverpgxv5.Driver, logger *slog.Logger, s settings, rec *latencyRecorder) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &NoopWorker{})
	river.AddWorker(workers, &TrickleWorker{rec: rec})
	river.AddWorker(workers, &SleepWorker{sleep: s.TaskSleep})
	return river.NewClient(driver, &river.Config{
		FetchCooldown:     s.FetchCooldown,
		FetchPollInterval: s.FetchPoll,
		Logger:            logger,
		Queues: map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: s.Workers},
		},
		Workers: workers,
	})
}

func resetJobTable(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "TRUNCATE river_job")
	return err
}

// subscribe returns a subscription large enough that no completion event can
// be dropped (River drops events when a subscriber's buffer is full).
func subscribe(client *river.Client[pgx.Tx], n int) (<-chan *river.Event, func()) {
	return client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: max(n+100, 1000),
		Kinds: []river.EventKind{
			river.EventKindJobCompleted,
			river.EventKindJobFailed,
			river.EventKindJobCancelled,
		},
	})
}

func runBurn(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, logger *slog.Logger, s settings, res *result) error {
	d, err := runDrain(ctx, pool, driver, logger, s, s.Jobs, func(i int) river.JobArgs { return NoopArgs{Num: i} })
	if err != nil {
		return err
	}
	res.BurnInsertSecs = d.inserted.Seconds()
	res.BurnSeconds = d.elapsed.Seconds()
	res.BurnJobsPerS = float64(s.Jobs) / d.elapsed.Seconds()
	res.BurnCPUMsPer1000 = round3(ms(d.cpu) * 1000 / float64(s.Jobs))
	return nil
}

// runSleep drains SleepJobs waiting jobs with SleepWorkers workers.
func runSleep(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, logger *slog.Logger, s settings, res *result) error {
	sl := s
	sl.Workers = s.SleepWorkers
	d, err := runDrain(ctx, pool, driver, logger, sl, s.SleepJobs, func(i int) river.JobArgs { return SleepArgs{Num: i} })
	if err != nil {
		return err
	}
	res.SleepJobs, res.SleepWorkers, res.TaskSleepMs = s.SleepJobs, s.SleepWorkers, ms(s.TaskSleep)
	res.SleepJobsPerS = float64(s.SleepJobs) / d.elapsed.Seconds()
	res.SleepIdealPerS = float64(s.SleepWorkers) / s.TaskSleep.Seconds()
	res.SleepCPUMsPer1000 = round3(ms(d.cpu) * 1000 / float64(s.SleepJobs))
	return nil
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runDrain inserts n jobs made by args while the client is stopped, then
// times the client from Start until the last one completed, and returns
// that time, the CPU the process used meanwhile, and the insert's time.
func runDrain(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, logger *slog.Logger, s settings, n int, args func(int) river.JobArgs) (drained, error) {
	if err := resetJobTable(ctx, pool); err != nil {
		return drained{}, fmt.Errorf("truncate: %w", err)
	}

	client, err := newClient(driver, logger, s, newLatencyRecorder())
	if err != nil {
		return drained{}, err
	}

	// Insert everything before the client starts.
	insStart := time.Now()
	const batch = 10_000
	params := make([]river.InsertManyParams, 0, batch)
	for i := 0; i < n; i += batch {
		params = params[:0]
		for j := i; j < min(i+batch, n); j++ {
			params = append(params, river.InsertManyParams{Args: args(j)})
		}
		got, err := client.InsertManyFast(ctx, params)
		if err != nil {
			return drained{}, fmt.Errorf("InsertManyFast: %w", err)
		}
		if got != len(params) {
			return drained{}, fmt.Errorf("InsertManyFast inserted %d of %d", got, len(params))
		}
	}
	inserted := time.Since(insStart)

	if _, err := pool.Exec(ctx, "ANALYZE river_job"); err != nil {
		return drained{}, fmt.Errorf("analyze: %w", err)
	}

	events, cancelSub := subscribe(client, n)
	defer cancelSub()

	start, cpu0 := time.Now(), cpuTime()
	if err := client.Start(ctx); err != nil {
		return drained{}, fmt.Errorf("start: %w", err)
	}

	var (
		completed, failed int
		end               time.Time
	)
	// Generous safety timeout so a stuck run ends by itself.
	timeout := time.NewTimer(max(10*time.Minute, 5*s.FetchPoll))
	defer timeout.Stop()
	for completed+failed < n {
		select {
		case ev := <-events:
			if ev == nil {
				return drained{}, errors.New("subscription closed early")
			}
			switch ev.Kind {
			case river.EventKindJobCompleted:
				completed++
			default:
				failed++
				logger.Error("unexpected job event", "kind", ev.Kind, "job_id", ev.Job.ID)
			}
			end = time.Now()
		case <-timeout.C:
			return drained{}, fmt.Errorf("timed out with %d/%d jobs completed", completed, n)
		}
	}
	elapsed, cpu := end.Sub(start), cpuTime()-cpu0

	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		return drained{}, fmt.Errorf("stop: %w", err)
	}

	if failed > 0 {
		return drained{}, fmt.Errorf("%d jobs did not complete", failed)
	}

	// Confirm against the table itself.
	var nCompleted, nTotal int
	if err := pool.QueryRow(ctx,
		"SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM river_job WHERE kind = $1",
		args(0).Kind()).Scan(&nCompleted, &nTotal); err != nil {
		return drained{}, fmt.Errorf("confirm: %w", err)
	}
	if nCompleted != n || nTotal != n {
		return drained{}, fmt.Errorf("river_job has %d completed of %d rows, want %d", nCompleted, nTotal, n)
	}
	return drained{elapsed: elapsed, cpu: cpu, inserted: inserted}, nil
}

// drained is what runDrain measured.
type drained struct{ elapsed, cpu, inserted time.Duration }

func runTrickle(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, logger *slog.Logger, s settings, res *result) error {
	if err := resetJobTable(ctx, pool); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE river_job"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}

	rec := newLatencyRecorder()
	client, err := newClient(driver, logger, s, rec)
	if err != nil {
		return err
	}
	maxJobs := int(s.Trickle/s.TrickleEvery) + 2
	events, cancelSub := subscribe(client, maxJobs+1)
	defer cancelSub()

	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()

	// Warm up: one job end to end, so LISTEN is established and the producer
	// is fetching before measuring; then let the insert-notify limiter and the
	// fetch debouncer (both FetchCooldown) reset.
	if _, err := client.Insert(ctx, NoopArgs{Num: -1}, nil); err != nil {
		return fmt.Errorf("warm-up insert: %w", err)
	}
	if err := waitEvents(events, 1, 2*s.FetchPoll+10*time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(2*s.FetchCooldown + 50*time.Millisecond)

	var (
		ids         []int64
		insertCalls []time.Duration
	)
	ticker := time.NewTicker(s.TrickleEvery)
	deadline := time.Now().Add(s.Trickle)
	for seq := 0; time.Now().Before(deadline); seq++ {
		called := time.Now()
		r, err := client.Insert(ctx, TrickleArgs{Seq: seq, InsertCalledAtNs: called.UnixNano()}, nil)
		returned := time.Now()
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		rec.insertReturned(r.Job.ID, returned)
		ids = append(ids, r.Job.ID)
		insertCalls = append(insertCalls, returned.Sub(called))
		<-ticker.C
	}
	ticker.Stop()

	if err := waitEvents(events, len(ids), 2*s.FetchPoll+30*time.Second); err != nil {
		return fmt.Errorf("waiting for trickle jobs: %w", err)
	}

	rec.mu.Lock()
	lat := make([]float64, 0, len(ids))
	steady := make([]float64, 0, len(ids))
	lastReturned := rec.returned[ids[len(ids)-1]]
	var dump []byte
	for seq, id := range ids {
		st, ok := rec.started[id]
		if !ok {
			rec.mu.Unlock()
			return fmt.Errorf("job %d never started", id)
		}
		l := ms(st.Sub(rec.returned[id]))
		lat = append(lat, l)
		// Jobs inserted within FetchCooldown of the last insert may have had
		// their NOTIFY suppressed by River's insert-notify limiter with no
		// later insert to trigger a fetch, so they wait for the next
		// FetchPollInterval poll. Kept in the main figures (they are real),
		// but also reported without them.
		if lastReturned.Sub(rec.returned[id]) >= s.FetchCooldown {
			steady = append(steady, l)
		}
		if s.DumpPath != "" {
			dump = fmt.Appendf(dump, "%d,%.3f,%.3f\n", seq, ms(rec.returned[id].Sub(rec.returned[ids[0]])), l)
		}
	}
	rec.mu.Unlock()
	if s.DumpPath != "" {
		if err := os.WriteFile(s.DumpPath, append([]byte("seq,ms_since_first_insert,latency_ms\n"), dump...), 0o644); err != nil {
			return fmt.Errorf("trickle dump: %w", err)
		}
	}

	sort.Float64s(lat)
	sort.Float64s(steady)
	res.TrickleP99Steady = pct(steady, 99)
	ic := make([]float64, len(insertCalls))
	for i, d := range insertCalls {
		ic[i] = ms(d)
	}
	sort.Float64s(ic)

	res.TrickleJobs = len(lat)
	res.TrickleP50Ms = pct(lat, 50)
	res.TrickleP95Ms = pct(lat, 95)
	res.TrickleP99Ms = pct(lat, 99)
	res.TrickleMinMs = round3(lat[0])
	res.TrickleMaxMs = round3(lat[len(lat)-1])
	var sum float64
	for _, v := range lat {
		sum += v
	}
	res.TrickleMeanMs = round3(sum / float64(len(lat)))
	res.TrickleInsertP50 = pct(ic, 50)
	return nil
}

func waitEvents(events <-chan *river.Event, n int, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for got := 0; got < n; {
		select {
		case ev := <-events:
			if ev == nil {
				return errors.New("subscription closed")
			}
			if ev.Kind != river.EventKindJobCompleted {
				return fmt.Errorf("job %d: unexpected event %s (state %s)", ev.Job.ID, ev.Kind, ev.Job.State)
			}
			got++
		case <-t.C:
			return fmt.Errorf("timed out after %s with %d/%d jobs completed", timeout, got, n)
		}
	}
	return nil
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return round3(sorted[rank-1])
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func printTable(w io.Writer, s settings, r *result) {
	fmt.Fprintf(w, "River %s (riverpgxv5): MaxWorkers=%d FetchCooldown=%s FetchPollInterval=%s pool_max_conns=%d GOMAXPROCS=%d\n",
		r.RiverVersion, s.Workers, s.FetchCooldown, s.FetchPoll, r.PoolMaxConns, r.GoMaxProcs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tmetric\tvalue\n")
	fmt.Fprintf(tw, "burn\tjobs\t%d\n", r.BurnJobs)
	fmt.Fprintf(tw, "burn\tinsert (InsertManyFast, not timed)\t%.3f s\n", r.BurnInsertSecs)
	fmt.Fprintf(tw, "burn\tStart -> last completed\t%.3f s\n", r.BurnSeconds)
	fmt.Fprintf(tw, "burn\tthroughput\t%.0f jobs/s\n", r.BurnJobsPerS)
	fmt.Fprintf(tw, "burn\tCPU of this process per 1,000 jobs\t%.1f ms\n", r.BurnCPUMsPer1000)
	if r.SleepJobs > 0 {
		fmt.Fprintf(tw, "sleep\tjobs (each waits %s; %d workers)\t%d\n", s.TaskSleep, r.SleepWorkers, r.SleepJobs)
		fmt.Fprintf(tw, "sleep\tthroughput (ideal %.0f)\t%.0f jobs/s (%.0f%%)\n", r.SleepIdealPerS, r.SleepJobsPerS, 100*r.SleepJobsPerS/r.SleepIdealPerS)
		fmt.Fprintf(tw, "sleep\tCPU of this process per 1,000 jobs\t%.1f ms\n", r.SleepCPUMsPer1000)
	}
	if s.Trickle > 0 {
		fmt.Fprintf(tw, "trickle\tjobs (1 per %s for %s)\t%d\n", s.TrickleEvery, s.Trickle, r.TrickleJobs)
		fmt.Fprintf(tw, "trickle\tInsert returned -> Work started p50\t%.3f ms\n", r.TrickleP50Ms)
		fmt.Fprintf(tw, "trickle\tInsert returned -> Work started p95\t%.3f ms\n", r.TrickleP95Ms)
		fmt.Fprintf(tw, "trickle\tInsert returned -> Work started p99\t%.3f ms\n", r.TrickleP99Ms)
		fmt.Fprintf(tw, "trickle\tp99 excluding inserts in the last FetchCooldown\t%.3f ms\n", r.TrickleP99Steady)
		fmt.Fprintf(tw, "trickle\tmin / mean / max\t%.3f / %.3f / %.3f ms\n", r.TrickleMinMs, r.TrickleMeanMs, r.TrickleMaxMs)
		fmt.Fprintf(tw, "trickle\tInsert call itself p50\t%.3f ms\n", r.TrickleInsertP50)
	}
	tw.Flush()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "river bench: "+format+"\n", args...)
	os.Exit(1)
}
