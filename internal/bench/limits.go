package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/store"
)

// The scale table with limits on. Its rows are in groups (column grp, see
// groupExpr): 1,000 groups over all the rows, and a hot group, 0, that
// holds half the pending rows. The job caps the rows in flight
// (max_running), groups them (group_by) and caps each group, in flight
// (max_running_per_group) and by rate (rate_limit_per_group); a second
// setting adds a rate over the whole job (rate_limit).
//
// The state each timed round meets is the same, so that every round runs
// the limited reservation's whole path and does the same work:
//
//   - each worker, registered in the registry and heartbeating, has
//     limitSlots slots and runs limitRunning of them (rows started by the
//     bench: the hot group's at its cap, the others one per group), so
//     that workers × (limitSlots − limitRunning) slots are free;
//   - the window of the rate limits in pampa_starts holds six starts per
//     group in the last hour; half the groups, alternating, started one
//     10 s ago and are held back by their pace (one a minute), the others
//     last started 2 minutes ago and may start again;
//   - with the job's rate, the window holds 3,000 starts of the last hour,
//     the newest 36 s ago: the pace (one every 600 ms) lets 60 go.
//
// Between timed rounds, untimed, the bench hands back the rows the round
// reserved (no worker process claims them), removes the starts the round
// recorded and rewrites the job's window; the groups' window is
// rewritten every limitWindowFor, before their 10 s ages reach the pace.
const (
	limitGroups         = 1000 // groups over the rows, besides the hot one
	limitSlots          = 20   // each worker's slots
	limitRunning        = 10   // of them, running (started by the bench)
	limitMaxRunning     = 1000
	limitPerGroup       = 5
	limitStartsPerGroup = 6 // in the window of the groups' rate
	limitWindowFor      = 30 * time.Second
)

var (
	limitGroupRate = pampa.Rate{N: 60, Per: time.Hour}
	limitJobRate   = pampa.Rate{N: 6000, Per: time.Hour}
)

// groupExpr is the group of key id (SQL over column g) in a table whose
// keys 1 to done (the parameter) are done: half the pending keys, the
// even ones, are in the hot group 0; the others, and every done key, are
// in groups 1 to limitGroups, consecutive pairs of keys in the same one.
func groupExpr(param string) string {
	return fmt.Sprintf("CASE WHEN g > %s AND g %% 2 = 0 THEN 0 ELSE (g / 2) %% %d + 1 END", param, limitGroups)
}

// limitedJob is the bench job with the limits on; withRate adds
// rate_limit.
func limitedJob(withRate bool) pampa.Job {
	j := job(JobSettings{QueueSize: 250})
	j.MaxRunning, j.GroupBy = limitMaxRunning, "grp"
	j.MaxRunningPerGroup, j.RateLimitPerGroup = limitPerGroup, limitGroupRate
	if withRate {
		j.RateLimit = limitJobRate
	}
	// The rows the bench starts stay in flight for the whole run.
	j.MaxJobDuration = time.Hour
	return j
}

// limitedFigures are the rounds of one limited setting.
type limitedFigures struct {
	p50, p95 time.Duration
	reserved float64 // rows reserved a round, on average
}

// scaleLimited times dispatcher rounds on the scale table as scale left
// it (rows of which done are finished), with the limits on, without and
// then with the job's rate. With explain, the limited reservation's
// statements are explained after the second setting's rounds.
func scaleLimited(ctx context.Context, cfg Config, rows int, explain bool, say func(string, ...any)) (groups, rate limitedFigures, plans map[string]PlanSummary, err error) {
	done := rows / 100 * 99
	start := time.Now()
	s, err := store.Open(ctx, cfg.Driver, cfg.URL)
	if err != nil {
		return groups, rate, nil, err
	}
	defer s.Close()
	lb := &limitBench{cfg: cfg, s: s, rows: rows, done: done, pg: s.Dialect.Name() != "sqlite"}
	if err := lb.prepare(ctx); err != nil {
		return groups, rate, nil, fmt.Errorf("prepare: %w", err)
	}
	say("scale: %d rows: limits set up in %.1fs (%d workers, %d slots free, %d rows in flight)",
		rows, time.Since(start).Seconds(), cfg.Workers, cfg.Workers*(limitSlots-limitRunning), lb.running)
	for _, withRate := range []bool{false, true} {
		f, err := lb.time(ctx, withRate, explain && withRate)
		if err != nil {
			return groups, rate, nil, err
		}
		if withRate {
			rate, plans = f, lb.plans
		} else {
			groups = f
		}
	}
	if explain {
		printPlans(rows, plans, lb.rawPlans, say)
	}
	return groups, rate, plans, nil
}

// limitBench is the state of one table's limited rounds.
type limitBench struct {
	cfg        Config
	s          *store.Store
	rows, done int
	pg         bool
	running    int
	workers    []store.WorkerInfo
	beat       time.Time // last heartbeat
	window     time.Time // last write of the groups' window
	plans      map[string]PlanSummary
	rawPlans   []store.Plan
}

// prepare resets the pending rows, sets up the limited job (its groups
// index), registers the workers and starts the rows they run.
func (lb *limitBench) prepare(ctx context.Context) error {
	db, t := lb.s.DB, Table
	reset := `UPDATE ` + t + ` SET rid = NULL, rtime = NULL, rtimes = NULL, started = NULL, ended = NULL, ok = NULL, why = NULL WHERE id > ` + lb.ph(1)
	for _, q := range []string{`DELETE FROM pampa_workers WHERE node = 'bench'`, reset} {
		var args []any
		if q == reset {
			args = []any{lb.done}
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	c, err := limitedCluster(lb.cfg, false)
	if err != nil {
		return err
	}
	if _, err := pampa.Setup(ctx, c, pampa.SetupOptions{Notify: lb.pg}); err != nil {
		return err
	}
	if _, err := lb.s.Exec(ctx, `DELETE FROM pampa_starts WHERE job = ?`, Job); err != nil {
		return err
	}
	host, _ := os.Hostname()
	instance := fmt.Sprintf("bench-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i := 1; i <= lb.cfg.Workers; i++ {
		w := store.WorkerInfo{ID: pampa.WorkerID("bench", i), Node: "bench", Host: host, PID: os.Getpid(),
			Version: "bench", Instance: instance, Jobs: []string{Job}, Slots: limitSlots}
		if err := lb.s.RegisterWorker(ctx, w, pampa.DefaultWorkerTTL); err != nil {
			return err
		}
		lb.workers = append(lb.workers, w)
	}
	lb.beat = time.Now()
	if err := lb.startRunning(ctx); err != nil {
		return err
	}
	return lb.analyze(ctx)
}

// startRunning starts, for the workers in turn, the first pending rows of
// the hot group (up to its cap) and then one row each of other groups, up
// to limitRunning a worker; on a small table, no more than half of what
// is pending of each.
func (lb *limitBench) startRunning(ctx context.Context) error {
	pending := lb.rows - lb.done
	hot := min(limitPerGroup, pending/4)
	others := min(lb.cfg.Workers*limitRunning-hot, pending/4)
	var keys []int64
	for _, part := range []struct {
		cond string
		n    int
	}{{"grp = 0", hot}, {"grp <> 0", others}} {
		q := fmt.Sprintf(`SELECT id FROM %s WHERE id > %s AND %s ORDER BY id LIMIT %d`, Table, lb.ph(1), part.cond, part.n)
		got, err := lb.s.DB.QueryContext(ctx, q, lb.done)
		if err != nil {
			return err
		}
		for got.Next() {
			var k int64
			if err := got.Scan(&k); err != nil {
				got.Close()
				return err
			}
			keys = append(keys, k)
		}
		got.Close()
		if err := got.Err(); err != nil {
			return err
		}
	}
	byWorker := map[string][]string{}
	for i, k := range keys {
		w := lb.workers[i%len(lb.workers)].ID
		byWorker[w] = append(byWorker[w], strconv.FormatInt(k, 10))
	}
	now := lb.s.Dialect.Now()
	for w, ks := range byWorker {
		if _, err := lb.s.Exec(ctx, fmt.Sprintf(`UPDATE %s SET rid = ?, rtime = %s, rtimes = 1, started = %s WHERE id IN (%s)`,
			Table, now, now, strings.Join(ks, ", ")), w); err != nil {
			return err
		}
	}
	lb.running = len(keys)
	return nil
}

func (lb *limitBench) analyze(ctx context.Context) error {
	q := `ANALYZE`
	if lb.pg {
		q = `VACUUM ANALYZE ` + Table
	}
	_, err := lb.s.DB.ExecContext(ctx, q)
	return err
}

func (lb *limitBench) ph(n int) string {
	if lb.pg {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// limitedCluster is the bench cluster with the limited job.
func limitedCluster(cfg Config, withRate bool) (*pampa.Cluster, error) {
	c := &pampa.Cluster{Database: pampa.Database{Driver: cfg.Driver, URL: cfg.URL}}
	if err := c.AddNode(pampa.Node{Name: "bench", MaxWorkers: cfg.Workers}); err != nil {
		return nil, err
	}
	if err := c.AddJob(limitedJob(withRate)); err != nil {
		return nil, err
	}
	return c, nil
}

// warmRounds run before the timed ones: the first assigns the workers.
const warmRounds = 3

// time runs the timed rounds of one setting.
func (lb *limitBench) time(ctx context.Context, withRate, explain bool) (limitedFigures, error) {
	var f limitedFigures
	c, err := limitedCluster(lb.cfg, withRate)
	if err != nil {
		return f, err
	}
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return f, err
	}
	defer client.Close()
	d := client.NewDispatcher(pampa.DispatcherOptions{Logger: slog.New(slog.DiscardHandler), MaintenanceEvery: time.Nanosecond})
	defer d.Resign()
	lb.window = time.Time{}
	var rounds []time.Duration
	reserved := 0
	for i := 0; i < warmRounds+lb.cfg.Rounds; i++ {
		if err := lb.reset(ctx, withRate); err != nil {
			return f, fmt.Errorf("reset: %w", err)
		}
		t0 := time.Now()
		st, err := d.RunOnce(ctx)
		took := time.Since(t0)
		if err != nil {
			return f, err
		}
		if i >= warmRounds {
			if !st.Leading {
				return f, fmt.Errorf("the dispatcher does not lead")
			}
			rounds = append(rounds, took)
			reserved += st.Reserved
		}
	}
	f.p50, f.p95 = durPercentile(rounds, 50), durPercentile(rounds, 95)
	f.reserved = float64(reserved) / float64(len(rounds))
	if explain {
		if err := lb.reset(ctx, withRate); err != nil {
			return f, err
		}
		if err := lb.explain(ctx, limitedJob(withRate)); err != nil {
			return f, fmt.Errorf("explain: %w", err)
		}
	}
	return f, lb.reset(ctx, withRate)
}

// reset puts back the state each round starts from: the rows reserved
// handed back, the starts recorded by rounds removed, the windows
// written (see the constants above), the heartbeats fresh.
func (lb *limitBench) reset(ctx context.Context, withRate bool) error {
	db, s := lb.s.DB, lb.s
	if _, err := db.ExecContext(ctx, `UPDATE `+Table+` SET rid = NULL, rtime = NULL WHERE rid IS NOT NULL AND started IS NULL AND ended IS NULL`); err != nil {
		return err
	}
	if time.Since(lb.beat) > time.Second {
		for _, w := range lb.workers {
			if _, ok, err := s.Heartbeat(ctx, w.ID, w.Instance); err != nil || !ok {
				return fmt.Errorf("heartbeat %s: %v (registered: %v)", w.ID, err, ok)
			}
		}
		lb.beat = time.Now()
	}
	if time.Since(lb.window) > limitWindowFor {
		if _, err := s.Exec(ctx, `DELETE FROM pampa_starts WHERE job = ?`, Job); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, lb.groupWindowSQL(), Job); err != nil {
			return fmt.Errorf("write the groups' window: %w", err)
		}
		// As autovacuum would, for a window this size in steady use.
		if _, err := db.ExecContext(ctx, `ANALYZE pampa_starts`); err != nil {
			return err
		}
		lb.window = time.Now()
	} else if _, err := s.Exec(ctx, `DELETE FROM pampa_starts WHERE job = ? AND (scope = '' OR at > `+s.Dialect.Ago()+`)`,
		Job, s.Dialect.AgoArg(5*time.Second)); err != nil {
		return err
	}
	if withRate {
		if _, err := db.ExecContext(ctx, lb.jobWindowSQL(), Job); err != nil {
			return fmt.Errorf("write the job's window: %w", err)
		}
	}
	return nil
}

// groupWindowSQL writes limitStartsPerGroup starts, one every 10 minutes,
// for each group 0 to limitGroups: the odd ones' newest 10 s ago, the even
// ones' 2 minutes ago.
func (lb *limitBench) groupWindowSQL() string {
	const age = "(CASE WHEN g % 2 = 1 THEN 10 ELSE 120 END + 600 * k)"
	if lb.pg {
		return fmt.Sprintf(`INSERT INTO pampa_starts (job, scope, at, n)
			SELECT $1, '=' || g, now() - make_interval(secs => %s), 1
			FROM generate_series(0, %d) g, generate_series(0, %d) k`, age, limitGroups, limitStartsPerGroup-1)
	}
	return fmt.Sprintf(`INSERT INTO pampa_starts (job, scope, at, n)
		WITH RECURSIVE gs(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM gs WHERE g < %d),
			ks(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM ks WHERE k < %d)
		SELECT ?, '=' || g, strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', printf('-%%d seconds', %s)), 1 FROM gs, ks`,
		limitGroups, limitStartsPerGroup-1, age)
}

// jobWindowSQL writes the job's 3,000 starts: 30 batches of 100, one
// every 2 minutes, the newest 36 s ago.
func (lb *limitBench) jobWindowSQL() string {
	if lb.pg {
		return `INSERT INTO pampa_starts (job, scope, at, n)
			SELECT $1, '', now() - make_interval(secs => 36 + 120 * k), 100 FROM generate_series(0, 29) k`
	}
	return `INSERT INTO pampa_starts (job, scope, at, n)
		WITH RECURSIVE ks(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM ks WHERE k < 29)
		SELECT ?, '', strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', 36 + 120 * k)), 100 FROM ks`
}

// explain explains the limited reservation into the workers' free slots,
// and the dispatcher's count of the rows they hold.
func (lb *limitBench) explain(ctx context.Context, jb pampa.Job) error {
	j := lb.s.Job(jobSpec(jb))
	if err := j.PinIndexes(ctx, Job); err != nil {
		return err
	}
	held, err := j.Held(ctx, lb.s.DB)
	if err != nil {
		return err
	}
	var shares []store.Share
	for _, w := range lb.workers {
		if free := limitSlots - held[w.ID]; free > 0 {
			shares = append(shares, store.Share{Worker: w.ID, N: free})
		}
	}
	plans, _, err := j.ExplainLimited(ctx, Job, shares)
	if err != nil {
		return err
	}
	lb.rawPlans = plans
	lb.plans = summarize(plans)
	return nil
}

// jobSpec is the store's spec of a bench job.
func jobSpec(jb pampa.Job) store.JobSpec {
	f := jb.Fields
	return store.JobSpec{Table: store.ParseIdent(jb.Table), PrimaryKey: jb.PrimaryKey,
		ReservationID: f.ReservationID, ReservationTime: f.ReservationTime, ReservationTimes: f.ReservationTimes,
		StartTime: f.StartTime, EndTime: f.EndTime, Success: f.Success, ErrorDescription: f.ErrorDescription,
		MaxTryTimes: pampa.DefaultMaxTryTimes,
		Limits: store.Limits{MaxRunning: jb.MaxRunning, Rate: store.Rate{N: jb.RateLimit.N, Per: jb.RateLimit.Per},
			GroupBy: jb.GroupBy, MaxRunningPerGroup: jb.MaxRunningPerGroup,
			RatePerGroup: store.Rate{N: jb.RateLimitPerGroup.N, Per: jb.RateLimitPerGroup.Per}}}
}

func durPercentile(ds []time.Duration, p float64) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(percentile(xs, p))
}
