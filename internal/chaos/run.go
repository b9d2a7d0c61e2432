package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pampa-go/pampa"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/pampa-go/pampa/internal/pgcluster"
)

// Result is what a run found. Its JSON form (see [Result.JSON]) is the line
// pampa-chaos prints last; the package doc defines each figure.
type Result struct {
	Tasks          int     `json:"tasks"`
	Succeeded      int     `json:"succeeded"`
	Failed         int     `json:"failed"`
	Lost           int     `json:"lost"`
	ConcurrentRuns int     `json:"concurrent_runs"`
	DuplicateRuns  int     `json:"duplicate_runs"`
	Kills          int     `json:"kills"`
	MaxRecoveryS   float64 `json:"max_recovery_s"`
	CutOffRuns     int     `json:"cut_off_runs"`

	// Problems are the run's other failures, one sentence each.
	Problems []string `json:"-"`
	// Elapsed is the run's wall time.
	Elapsed time.Duration `json:"-"`
	// Dir is the run's directory when it was kept (after a failure, or
	// with Config.Keep), else "".
	Dir string `json:"-"`
}

// OK reports whether the run passed: no task lost, no concurrent run, no
// other problem.
func (r Result) OK() bool {
	return r.Lost == 0 && r.ConcurrentRuns == 0 && len(r.Problems) == 0
}

// JSON returns the result as one line of JSON.
func (r Result) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// shutdownReserve is the part of Config.Timeout kept for stopping the
// processes and checking the outcome.
const shutdownReserve = 10 * time.Second

// runner is one run of a scenario.
type runner struct {
	cfg   Config
	out   io.Writer
	outMu sync.Mutex
	began time.Time
	rng   *rand.Rand // guarded by mu

	dir, configPath, exe string
	madeDir              bool
	env                  []string
	cluster              *pgcluster.Cluster
	db                   *sql.DB
	live                 *liveness

	ctx      context.Context // the run's; cancelled when Run returns
	stopping atomic.Bool     // processes are being stopped: do not restart them
	stopCh   chan struct{}   // closed with stopping
	stopOnce sync.Once
	calm     chan struct{} // closed when disruptions must end
	calmOnce sync.Once
	wg       sync.WaitGroup // supervisors
	chaosWG  sync.WaitGroup // disruption loops
	measures sync.WaitGroup // recovery measurements

	pgMu sync.RWMutex // held for writing while PostgreSQL restarts

	succeeded, failedFinal atomic.Int64 // last progress seen
	workerKills            atomic.Int64
	leaderKills            atomic.Int64

	mu         sync.Mutex
	slots      []*slot
	leads      []leadEvent
	problems   []string
	recoveries []recovery
	majorsDone int
}

// recovery is one measured recovery.
type recovery struct {
	kind string // workerKill, or the kind of a major disruption
	what string
	took time.Duration
}

// workerKill is the kind of a worker kill's recovery.
const workerKill = "worker kill"

// isKill says whether the recovery counts toward max_recovery_s.
func (r recovery) isKill() bool { return r.kind == workerKill || r.kind == majorLeader }

// Run runs the scenario cfg describes and returns what it found. It
// prints its progress, human-readable, to out. The error is for a run that
// could not be carried out or did not go to its end (no PostgreSQL
// binaries, processes that would not start, ctx cancelled); the Result then
// still counts the tasks as far as the database could tell. A run that went
// through returns a nil error and a Result to judge with [Result.OK]. Every
// process Run started and its PostgreSQL cluster are gone when it returns,
// whatever happened.
func Run(ctx context.Context, cfg Config, out io.Writer) (res Result, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return res, err
	}
	r := &runner{cfg: cfg, out: out, began: time.Now(), live: newLiveness(),
		stopCh: make(chan struct{}), calm: make(chan struct{})}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r.rng = rand.New(rand.NewPCG(seed, seed>>1|1))
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r.ctx = ctx
	defer func() {
		cancel() // ends any measurement still polling
		// An interrupted run is not kept unless asked: the caller chose
		// to stop it. A run that failed is, for its logs.
		kept := r.cleanup(parent.Err() == nil && (err != nil || !res.OK()))
		res.Dir = kept
		res.Elapsed = time.Since(r.began)
		r.logf("done in %s", res.Elapsed.Round(100*time.Millisecond))
	}()
	workerKills := fmt.Sprintf("a worker killed every ~%s", cfg.WorkerKillEvery)
	switch {
	case cfg.WorkerKills < 0:
		workerKills = "no worker kills"
	case cfg.WorkerKills > 0:
		workerKills += fmt.Sprintf(" (at most %d)", cfg.WorkerKills)
	}
	workers := fmt.Sprintf("%d workers × %d", cfg.Workers, cfg.Concurrency)
	if cfg.Nodes > 0 {
		workers = fmt.Sprintf("%d node dispatchers of %d workers × %d (kills and stops hit a node dispatcher)", cfg.Nodes, cfg.NodeWorkers, cfg.Concurrency)
	}
	r.logf("scenario: %d tasks of %s–%s, %d dispatchers, %s, queue %d; %s, %d leader kills, %d PostgreSQL restarts, %d stops of %s (seed %d)",
		cfg.Tasks, cfg.TaskMin, cfg.TaskMax, cfg.Dispatchers, workers, cfg.QueueSize,
		workerKills, count(cfg.LeaderKills), count(cfg.PostgresRestarts), count(cfg.Stops), cfg.StopFor, seed)
	if err := r.prepare(ctx); err != nil {
		return res, err
	}
	runErr := r.launch(ctx)
	if runErr == nil {
		r.unleash(ctx)
	}
	r.shutdown(true)
	if runErr == nil && ctx.Err() != nil {
		runErr = fmt.Errorf("chaos: %w", context.Cause(ctx))
	}
	// Whatever happened, say what became of the tasks.
	actx, acancel := context.WithTimeout(context.Background(), time.Minute)
	defer acancel()
	res, err = r.analyze(actx, runErr == nil)
	return res, errors.Join(runErr, err)
}

// logf prints one progress line, stamped with the time since the start.
func (r *runner) logf(format string, args ...any) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintf(r.out, "[%6.1fs] %s\n", time.Since(r.began).Seconds(), fmt.Sprintf(format, args...))
}

// problem records and prints a failure of the run.
func (r *runner) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.problems = append(r.problems, msg)
	r.mu.Unlock()
	r.logf("PROBLEM: %s", msg)
}

func (r *runner) since(t time.Time) string {
	return fmt.Sprintf("%.1fs", t.Sub(r.began).Seconds())
}

// ownerFile, in a run's directory, holds the runner's pid while the run
// holds a cluster there, so that a later run can reap what a runner that
// died without cleaning up left behind.
const ownerFile = "chaos-owner.pid"

// prepare makes the directory, starts PostgreSQL, seeds the tables,
// writes the config and runs `setup`.
func (r *runner) prepare(ctx context.Context) error {
	reapOrphans()
	var err error
	if r.exe = r.cfg.Executable; r.exe == "" {
		if r.exe, err = os.Executable(); err != nil {
			return fmt.Errorf("chaos: find the running program: %w", err)
		}
	}
	if r.dir = r.cfg.Dir; r.dir == "" {
		if r.dir, err = os.MkdirTemp(pgcluster.TempDir(), "pampa-chaos-"); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		r.madeDir = true
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if r.dir, err = filepath.Abs(r.dir); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	// As root, PostgreSQL runs as the postgres user, who must reach the
	// cluster's directory inside this one.
	if err := os.Chmod(r.dir, 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	r.logf("directory %s", r.dir)

	r.cluster, err = pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(r.dir, "pg"), FastUnsafe: true})
	if err != nil {
		return fmt.Errorf("chaos: start PostgreSQL: %w", err)
	}
	dsn := r.cluster.DSN("postgres")
	r.logf("PostgreSQL up at %s (server log %s)", dsn, r.cluster.LogPath())
	if r.db, err = sql.Open("pgx", dsn); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	r.db.SetMaxOpenConns(4)
	stmts := []string{
		`CREATE TABLE ` + taskTable + ` (id bigint PRIMARY KEY)`,
		`INSERT INTO ` + taskTable + ` (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(r.cfg.Tasks) + `) g`,
		`CREATE TABLE ` + executionsTable + ` (id bigserial PRIMARY KEY, task bigint NOT NULL, worker text NOT NULL,
			try integer NOT NULL, pid integer NOT NULL, started_ns bigint NOT NULL, ended_ns bigint, outcome text)`,
	}
	for _, q := range stmts {
		if _, err := r.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("chaos: seed: %w", err)
		}
	}

	r.configPath = filepath.Join(r.dir, "pampa.yaml")
	if err := os.WriteFile(r.configPath, []byte(configYAML(r.cfg, dsn)), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	for _, kv := range os.Environ() {
		// The database comes from the config alone.
		if strings.HasPrefix(kv, "PAMPA_DATABASE_URL=") || strings.HasPrefix(kv, "PAMPA_CHAOS_") {
			continue
		}
		r.env = append(r.env, kv)
	}
	r.env = append(r.env, envChild+"=1", envTaskMin+"="+r.cfg.TaskMin.String(), envTaskMax+"="+r.cfg.TaskMax.String())

	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(setupCtx, r.exe, "setup", "--config", r.configPath)
	cmd.Env, cmd.Dir = r.env, r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: pampa setup: %w\n%s", err, out)
	}
	r.logf("seeded %d tasks; setup made %d changes (tracking columns, indexes)", r.cfg.Tasks, strings.Count(strings.TrimSpace(string(out)), "\n")+1)
	return nil
}

// launch starts the dispatchers and workers and waits until every worker
// has registered and the first tasks are done.
func (r *runner) launch(ctx context.Context) error {
	c := r.cfg
	for i := 1; i <= c.Dispatchers; i++ {
		r.addSlot(roleDispatcher, fmt.Sprintf("dispatcher.%d", i), []string{"dispatcher", "--log=false",
			"--delay", c.DispatcherDelay.String(), "--worker-ttl", c.WorkerTTL.String(), "--lease-ttl", c.LeaseTTL.String()})
	}
	for i := 1; i <= c.Workers && c.Nodes == 0; i++ {
		id := workerID(i)
		r.addSlot(roleWorker, id, []string{"worker", "--id", id, "--log=false",
			"--delay", "50ms", "--heartbeat", c.Heartbeat.String(), "--concurrency", strconv.Itoa(c.Concurrency), "--grace", "5s"})
	}
	// Under node dispatchers, a slot is a node process and its workers:
	// kills and stops hit them together.
	for i := 1; i <= c.Nodes; i++ {
		r.addSlot(roleWorker, pampa.NodeDispatcherID(nodeOf(i)), []string{"node", "--node", nodeOf(i), "--workers", strconv.Itoa(c.NodeWorkers),
			"--log=false", "--delay", "50ms", "--heartbeat", c.Heartbeat.String(), "--concurrency", strconv.Itoa(c.Concurrency), "--grace", "5s"})
	}
	for _, s := range r.slots {
		if s.log == nil {
			return errors.New("chaos: a process log could not be opened")
		}
		r.wg.Add(1)
		go r.supervise(s)
	}
	if c.Nodes > 0 {
		r.logf("started %d dispatchers and %d node dispatchers of %d workers each; logs in %s", c.Dispatchers, c.Nodes, c.NodeWorkers, filepath.Join(r.dir, "logs"))
	} else {
		r.logf("started %d dispatchers and %d workers; logs in %s", c.Dispatchers, c.Workers, filepath.Join(r.dir, "logs"))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ready := 0
		for _, s := range r.slots {
			if p := r.current(s); p != nil && p.ready.Load() {
				ready++
			}
		}
		if n, _, err := r.progress(ctx); err == nil && n > 0 && ready == len(r.slots) {
			r.logf("all processes up, first tasks done")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %d of %d processes ready and no task done after a minute; see the logs in %s",
				ready, len(r.slots), filepath.Join(r.dir, "logs"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *runner) addSlot(role, name string, args []string) {
	f, err := os.OpenFile(filepath.Join(r.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.problem("open the log of %s: %v", name, err)
	}
	r.slots = append(r.slots, &slot{role: role, name: name, args: args, log: f})
}

// progress counts the tasks that succeeded and those failed for good.
func (r *runner) progress(ctx context.Context) (succeeded, failed int64, err error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = r.db.QueryRowContext(qctx, `SELECT COUNT(*) FILTER (WHERE `+colSucceeded+`),
		COUNT(*) FILTER (WHERE `+colSucceeded+` = FALSE AND `+colTries+` >= $1) FROM `+taskTable, r.cfg.MaxTryTimes).
		Scan(&succeeded, &failed)
	return succeeded, failed, err
}

// unleash runs the disruptions until every task has succeeded or failed
// for good, or the time is up.
func (r *runner) unleash(ctx context.Context) {
	done := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.watch(watchCtx, done)

	plan := r.plan()
	r.chaosWG.Add(2)
	go r.runMajors(ctx, plan)
	go r.killWorkers(ctx)

	deadline := time.NewTimer(time.Until(r.began.Add(r.cfg.Timeout - shutdownReserve)))
	defer deadline.Stop()
	select {
	case <-done:
		r.logf("every task has succeeded or failed for good")
	case <-deadline.C:
		r.problem("time is up with %d of %d tasks succeeded", r.succeeded.Load(), r.cfg.Tasks)
	case <-ctx.Done():
	}
	r.calmOnce.Do(func() { close(r.calm) })
	r.chaosWG.Wait()
	r.mu.Lock()
	majors := r.majorsDone
	r.mu.Unlock()
	if majors < len(plan) && ctx.Err() == nil {
		var names []string
		for _, m := range plan {
			names = append(names, m.kind)
		}
		r.problem("scenario incomplete: %d of the %d planned disruptions (%s) happened before the run ended; give it more tasks or slower ones",
			majors, len(plan), strings.Join(names, ", "))
	}
	wait := make(chan struct{})
	go func() { r.measures.Wait(); close(wait) }()
	select {
	case <-wait:
	case <-ctx.Done():
	}
}

// watch follows the progress, prints it every few seconds, and closes done
// once every task has succeeded or failed for good.
func (r *runner) watch(ctx context.Context, done chan<- struct{}) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	lastPrint, lastN := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, f, err := r.progress(ctx)
		if err != nil {
			continue // PostgreSQL restarting
		}
		r.succeeded.Store(s)
		r.failedFinal.Store(f)
		if now := time.Now(); now.Sub(lastPrint) >= 5*time.Second {
			r.logf("%d/%d succeeded (%.0f/s), %d failed for good; kills: %d workers, %d leaders",
				s, r.cfg.Tasks, float64(s-lastN)/now.Sub(lastPrint).Seconds(), f, r.workerKills.Load(), r.leaderKills.Load())
			lastPrint, lastN = now, s
		}
		if s+f >= int64(r.cfg.Tasks) {
			close(done)
			return
		}
	}
}

// shutdown stops every process: gracefully (SIGTERM, then SIGKILL after
// 15s) or at once. Idempotent.
func (r *runner) shutdown(graceful bool) {
	r.stopping.Store(true)
	r.stopOnce.Do(func() { close(r.stopCh) })
	r.calmOnce.Do(func() { close(r.calm) })
	r.wg.Wait() // no supervisor starts a process past this point
	var procs []*proc
	r.mu.Lock()
	for _, s := range r.slots {
		if p := s.cur; p != nil && p.alive() {
			procs = append(procs, p)
		}
	}
	r.mu.Unlock()
	for _, p := range procs {
		p.killed.Store(true)
		_ = p.signal(syscall.SIGCONT)
		if graceful {
			_ = p.signal(syscall.SIGTERM)
		} else {
			r.kill(p)
		}
	}
	limit := time.After(15 * time.Second)
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-limit:
			r.kill(p)
			<-p.exited
		}
		<-p.output
	}
}

// kill SIGKILLs p and, for a worker, records its death: a run it leaves
// cut off lasted until then.
func (r *runner) kill(p *proc) {
	at := time.Now()
	if p.signal(syscall.SIGKILL) == nil && p.slot.role == roleWorker {
		r.live.died(p.pid, at)
	}
}

// cleanup stops the processes and the cluster and removes the run's
// directory unless keep (or Config.Keep); it returns the directory when it
// is kept.
func (r *runner) cleanup(keep bool) string {
	r.shutdown(false)
	r.chaosWG.Wait()
	r.measures.Wait()
	if r.db != nil {
		r.db.Close()
	}
	for _, s := range r.slots {
		if s.log != nil {
			s.log.Close()
		}
	}
	keep = keep || r.cfg.Keep
	if r.cluster != nil {
		var err error
		if keep {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = r.cluster.Stop(ctx)
			cancel()
			if err != nil {
				err = errors.Join(err, r.cluster.Kill())
			}
		} else {
			err = r.cluster.Destroy()
		}
		if err != nil {
			r.logf("stop PostgreSQL: %v", err)
		}
	}
	if r.dir == "" {
		return ""
	}
	_ = os.Remove(filepath.Join(r.dir, ownerFile))
	if keep {
		r.logf("kept %s (process logs in logs/, the cluster in pg/)", r.dir)
		return r.dir
	}
	if r.madeDir {
		_ = os.RemoveAll(r.dir)
	}
	return ""
}

// reapOrphans kills and removes the clusters of earlier runs whose runner
// died without cleaning up (its pid is gone). Best effort.
func reapOrphans() {
	paths, _ := filepath.Glob(filepath.Join(pgcluster.TempDir(), "pampa-chaos-*", ownerFile))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its runner is alive
		}
		dir := filepath.Dir(p)
		if c, err := pgcluster.Open(filepath.Join(dir, "pg")); err == nil {
			if c.Kill() != nil {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// analyze reads the outcome and the executions, once the processes are
// gone, and computes the result; complete says whether the run went to its
// end (else it gives no verdict).
func (r *runner) analyze(ctx context.Context, complete bool) (Result, error) {
	if r.db == nil {
		return Result{}, nil
	}
	var res Result
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE `+colSucceeded+`),
		COUNT(*) FILTER (WHERE `+colSucceeded+` = FALSE AND `+colTries+` >= $1) FROM `+taskTable, r.cfg.MaxTryTimes).
		Scan(&res.Tasks, &res.Succeeded, &res.Failed); err != nil {
		return res, fmt.Errorf("chaos: count tasks: %w", err)
	}
	res.Lost = res.Tasks - res.Succeeded
	res.Kills = int(r.workerKills.Load() + r.leaderKills.Load())

	execs, err := r.executions(ctx)
	if err != nil {
		return res, err
	}
	alive, deaths := r.live.snapshot()
	v := judge(execs, alive, deaths)
	res.DuplicateRuns, res.CutOffRuns, res.ConcurrentRuns = v.Duplicates, v.CutOff, len(v.Concurrent)
	r.logf("%d executions recorded (%d cut off, %d cancelled): %d tasks ran more than once, %d runs beyond the first; %d pairs overlapped in time, %d of them while both processes were alive",
		len(execs), v.CutOff, v.Cancelled, r.tasksRunAgain(execs), res.DuplicateRuns, len(v.Overlaps), len(v.Concurrent))
	for i, p := range v.Concurrent {
		if i == 10 {
			r.logf("… and %d more concurrent runs", len(v.Concurrent)-10)
			break
		}
		r.logf("CONCURRENT RUN of task %d: %s | %s", p.A.Task, p.A, p.B)
	}

	var noExec int
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+taskTable+` t WHERE `+colSucceeded+`
		AND NOT EXISTS (SELECT 1 FROM `+executionsTable+` e WHERE e.task = t.id AND e.outcome = $1)`, outcomeDone).Scan(&noExec); err != nil {
		return res, fmt.Errorf("chaos: check executions: %w", err)
	}
	if noExec > 0 {
		r.problem("%d tasks succeeded without a recorded execution that ran to its end", noExec)
	}
	if res.Lost > 0 {
		r.describeLost(ctx)
	}

	r.mu.Lock()
	recs := append([]recovery(nil), r.recoveries...)
	res.Problems = append([]string(nil), r.problems...)
	var restarts, failedStarts []string
	for _, s := range r.slots {
		restarts = append(restarts, fmt.Sprintf("%s %d", s.name, s.starts-1))
		if s.failedStarts > 0 {
			failedStarts = append(failedStarts, fmt.Sprintf("%s %d", s.name, s.failedStarts))
		}
	}
	r.mu.Unlock()
	var worst recovery
	for _, rc := range recs {
		if rc.isKill() && rc.took >= worst.took {
			worst = rc
		}
	}
	res.MaxRecoveryS = math.Round(worst.took.Seconds()*1000) / 1000
	r.logf("restarts: %s", strings.Join(restarts, ", "))
	if len(failedStarts) > 0 {
		r.logf("worker processes that exited before they could register (a killed predecessor's heartbeat was still fresh): %s",
			strings.Join(failedStarts, ", "))
	}
	r.logf("recoveries: %s", summarizeRecoveries(recs))
	if worst.kind != "" {
		r.logf("slowest recovery after a kill: %s (%s) in %.3fs", worst.kind, worst.what, worst.took.Seconds())
	}
	r.logf("tasks %d, succeeded %d, failed for good %d, lost %d, concurrent runs %d, duplicate runs %d, cut-off runs %d, kills %d",
		res.Tasks, res.Succeeded, res.Failed, res.Lost, res.ConcurrentRuns, res.DuplicateRuns, res.CutOffRuns, res.Kills)
	switch {
	case !complete:
		r.logf("INCOMPLETE: the run did not go to its end")
	case res.OK():
		r.logf("PASS")
	default:
		r.logf("FAIL: %d lost, %d concurrent runs, %d problems", res.Lost, res.ConcurrentRuns, len(res.Problems))
	}
	return res, nil
}

// executions reads the start and end records of the runs.
func (r *runner) executions(ctx context.Context) ([]execution, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT task, worker, try, pid, started_ns, COALESCE(ended_ns, 0), COALESCE(outcome, '')
		FROM `+executionsTable)
	if err != nil {
		return nil, fmt.Errorf("chaos: read executions: %w", err)
	}
	defer rows.Close()
	var execs []execution
	for rows.Next() {
		var x execution
		if err := rows.Scan(&x.Task, &x.Worker, &x.Try, &x.PID, &x.Start, &x.End, &x.Outcome); err != nil {
			return nil, fmt.Errorf("chaos: read executions: %w", err)
		}
		execs = append(execs, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chaos: read executions: %w", err)
	}
	return execs, nil
}

func (r *runner) tasksRunAgain(execs []execution) int {
	n := 0
	for i := 1; i < len(execs); i++ {
		if execs[i].Task == execs[i-1].Task && (i == 1 || execs[i-2].Task != execs[i].Task) {
			n++
		}
	}
	return n
}

// describeLost prints the state of some tasks that did not succeed.
func (r *runner) describeLost(ctx context.Context) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, COALESCE(`+colReservedBy+`, ''), COALESCE(`+colTries+`, 0),
		`+colStartedAt+` IS NOT NULL, `+colEndedAt+` IS NOT NULL, COALESCE(`+colSucceeded+`::text, 'null'), COALESCE(`+colLastError+`, '')
		FROM `+taskTable+` WHERE `+colSucceeded+` IS NOT TRUE ORDER BY id LIMIT 10`)
	if err != nil {
		r.logf("describe lost tasks: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id, tries int64
		var by, success, lastErr string
		var started, ended bool
		if err := rows.Scan(&id, &by, &tries, &started, &ended, &success, &lastErr); err != nil {
			r.logf("describe lost tasks: %v", err)
			return
		}
		r.logf("LOST task %d: reserved_by=%q tries=%d started=%v ended=%v succeeded=%s last_error=%q",
			id, by, tries, started, ended, success, lastErr)
	}
}

func summarizeRecoveries(recs []recovery) string {
	if len(recs) == 0 {
		return "none measured"
	}
	byKind := map[string][]time.Duration{}
	var kinds []string
	for _, rc := range recs {
		if _, ok := byKind[rc.kind]; !ok {
			kinds = append(kinds, rc.kind)
		}
		byKind[rc.kind] = append(byKind[rc.kind], rc.took)
	}
	var parts []string
	for _, k := range kinds {
		ds := byKind[k]
		var sum, worst time.Duration
		for _, d := range ds {
			sum += d
			worst = max(worst, d)
		}
		parts = append(parts, fmt.Sprintf("%s ×%d avg %.2fs max %.2fs", k, len(ds),
			(sum/time.Duration(len(ds))).Seconds(), worst.Seconds()))
	}
	return strings.Join(parts, "; ")
}
