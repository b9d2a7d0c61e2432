package pampa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// pagesJob is the scraping job of docs/limits.md over the numbers table:
// each row a page, its domain column its website. Its processing function
// writes each try's start and end, by the database's clock, to the audit
// table, with the reservation time the row carries, and takes from took
// to twice that.
func pagesJob(tt *testing.T, driver string, took time.Duration) Job {
	now := "now()"
	if driver == DriverSQLite {
		now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
	}
	j := oddJob()
	j.Name = "scrape"
	j.GroupBy = "domain"
	j.Process = func(ctx context.Context, t *Task) error {
		db := t.DB()
		key, err := t.Int64("value")
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, rebindFor(tt, driver, `INSERT INTO audit (value, domain, reserved_at, started_at)
			SELECT value, domain, odd_checking_reservation_time, `+now+` FROM numbers WHERE value = ?`), key); err != nil {
			return err
		}
		time.Sleep(took + rand.N(took))
		_, err = db.ExecContext(ctx, rebindFor(tt, driver, `UPDATE audit SET ended_at = `+now+` WHERE value = ? AND ended_at IS NULL`), key)
		return err
	}
	return j
}

// newPagesEnv makes the numbers table with a domain per row (domains
// maps a domain to its number of rows, in key order) and an audit table.
func newPagesEnv(t *testing.T, driver string, domains []domainRows, job Job) *testEnv {
	t.Helper()
	db := databaseFor(t, driver)
	total := 0
	for _, d := range domains {
		total += d.rows
	}
	createNumbers(t, db, total)
	cl, err := connect(context.Background(), &Cluster{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	ts := cl.store.Dialect.Types()
	for _, q := range []string{
		`ALTER TABLE numbers ADD COLUMN domain ` + ts.Text,
		`CREATE TABLE audit (value integer, domain ` + ts.Text + `, reserved_at ` + ts.Time + `, started_at ` + ts.Time + `, ended_at ` + ts.Time + `)`,
	} {
		if _, err := cl.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	lo := 1
	for _, d := range domains {
		if _, err := cl.DB().Exec(cl.store.Dialect.Rebind(`UPDATE numbers SET domain = ? WHERE value >= ? AND value < ?`), d.domain, lo, lo+d.rows); err != nil {
			t.Fatal(err)
		}
		lo += d.rows
	}
	cl.Close()
	return newEnvOn(t, db, total, job)
}

type domainRows struct {
	domain string
	rows   int
}

// auditMaxOverlap is the most tries of one group (or of all, when
// perGroup is false) that ran at once, by the audit's start and end times:
// the maximum is reached at some try's start.
func (e *testEnv) auditMaxOverlap(perGroup bool) int64 {
	same := ""
	if perGroup {
		same = " AND b.domain = a.domain"
	}
	return e.count(`SELECT COALESCE(MAX(n), 0) FROM (SELECT (SELECT COUNT(*) FROM audit b
		WHERE b.started_at <= a.started_at AND (b.ended_at IS NULL OR b.ended_at > a.started_at)` + same + `) AS n FROM audit a) x`)
}

// auditMaxInWindow is the most hand-outs of one group in any window of
// per, by the reservation times the tries carried.
func (e *testEnv) auditMaxInWindow(per time.Duration) int64 {
	d := e.client.store.Dialect
	return e.count(`SELECT COALESCE(MAX(n), 0) FROM (SELECT (SELECT COUNT(*) FROM audit b
		WHERE b.domain = a.domain AND b.reserved_at >= a.reserved_at AND b.reserved_at < ` + d.Later("a.reserved_at", fmt.Sprintf("%g", per.Seconds())) + `) AS n FROM audit a) x`)
}

// Limits hold under concurrency, audited from the tries' own records:
// four workers with four slots each (16 slots) against max_running 6,
// two at a time and 10 a second per domain, a hot domain holding a third
// of the pages; two dispatchers on the database, the leader stopped half
// way, and a third one racing reservations without the lease the whole
// time. The small domains are not starved by the hot one: they end first.
func TestLimitsHoldUnderConcurrency(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		domains := []domainRows{{"hot.example", 40}}
		for i := range 8 {
			domains = append(domains, domainRows{fmt.Sprintf("site%d.example", i), 10})
		}
		job := pagesJob(t, driver, 120*time.Millisecond)
		job.MaxRunning, job.MaxRunningPerGroup = 6, 2
		job.RateLimitPerGroup = Rate{N: 10, Per: time.Second}
		e := newPagesEnv(t, driver, domains, job)
		const total = 120

		wopts := steadyWorker()
		wopts.Concurrency = 4
		ids := []string{"local.1", "local.2", "local.3", "local.4"}
		r, _ := e.startIDs(nil, wopts, ids...)
		dopts := *steadyDispatcher()
		dopts.LeaseTTL = 500 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first, second, racer := e.client.NewDispatcher(dopts), e.client.NewDispatcher(dopts), e.client.NewDispatcher(dopts)
		firstCtx, stopFirst := context.WithCancel(ctx)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for _, d := range []struct {
			ctx context.Context
			run func(context.Context) error
		}{{firstCtx, first.Run}, {ctx, second.Run}, {ctx, func(ctx context.Context) error {
			for ctx.Err() == nil {
				if _, err := racer.loop.ReserveOnce(ctx); err != nil && ctx.Err() == nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		}}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.run(d.ctx); err != nil {
					errs <- err
				}
			}()
		}
		waitUntil(t, 30*time.Second, "half the pages", func() bool { return e.report("scrape").Completed >= total/2 })
		stopFirst()
		e.waitJob("scrape", total, 90*time.Second)
		cancel()
		wg.Wait()
		r.stop(t)
		close(errs)
		for err := range errs {
			t.Errorf("dispatcher: %v", err)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit WHERE ended_at IS NOT NULL`); n != total {
			t.Fatalf("%d tries audited, want %d", n, total)
		}
		if n := e.auditMaxOverlap(false); n > 6 || n < 2 {
			t.Errorf("at most %d tries ran at once; max_running is 6", n)
		}
		if n := e.auditMaxOverlap(true); n != 2 {
			t.Errorf("at most %d tries of one domain ran at once; max_running_per_group is 2 (and 16 slots could run more)", n)
		}
		if n := e.auditMaxInWindow(time.Second); n > 10 {
			t.Errorf("%d hand-outs of one domain within a second; rate_limit_per_group is 10/1s", n)
		}
		// Fair share: every small site was done before the hot one.
		hotEnd := e.count(`SELECT COUNT(*) FROM audit a WHERE a.domain <> 'hot.example' AND a.ended_at > (SELECT MAX(ended_at) FROM audit WHERE domain = 'hot.example')`)
		if hotEnd != 0 {
			t.Errorf("%d pages of small sites ended after the hot site's last page", hotEnd)
		}
	})
}

// A job-wide rate: hand-outs paced one per Per/N, never N+1 in a window.
func TestRateLimitPacesStarts(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := pagesJob(t, driver, 20*time.Millisecond)
		job.GroupBy = ""
		job.RateLimit = Rate{N: 20, Per: time.Second}
		e := newPagesEnv(t, driver, []domainRows{{"one.example", 30}}, job)
		wopts := steadyWorker()
		wopts.Concurrency = 8
		start := time.Now()
		r, _ := e.startIDs(steadyDispatcher(), wopts, "local.1", "local.2")
		e.waitJob("scrape", 30, 60*time.Second)
		took := time.Since(start)
		r.stop(t)
		if n := e.auditMaxInWindow(time.Second); n > 20 {
			t.Errorf("%d hand-outs within a second; rate_limit is 20/1s", n)
		}
		// 30 at 20 a second, two at once first: no less than 1.3 s.
		if took < 1300*time.Millisecond {
			t.Errorf("30 tasks at 20/1s took %s", took)
		}
	})
}

// While a limit holds tasks back, the report says how many free slots it
// left empty and why.
func TestReportShowsLimited(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := pagesJob(t, driver, 20*time.Millisecond)
		job.GroupBy, job.MaxRunning = "", 1
		release := make(chan struct{})
		job.Process = func(ctx context.Context, _ *Task) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		e := newPagesEnv(t, driver, []domainRows{{"one.example", 10}}, job)
		wopts := steadyWorker()
		wopts.Concurrency = 3
		r, _ := e.startIDs(steadyDispatcher(), wopts, "local.1")
		defer r.stop(t)
		var rep JobReport
		waitUntil(t, 20*time.Second, "the report to show the limit", func() bool {
			rep = e.report("scrape")
			return rep.Limited == 2 && rep.Running+rep.Reserved == 1
		})
		if !strings.Contains(rep.LimitReason, "max_running 1") {
			t.Errorf("reason %q, want it to name max_running 1", rep.LimitReason)
		}
		close(release)
		e.waitJob("scrape", 10, 30*time.Second)
	})
}

// Config errors name the job, the field and the value.
func TestLimitOptionErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		set   func(*Job)
		field string
	}{
		{func(j *Job) { j.MaxRunning = -1 }, "max_running"},
		{func(j *Job) { j.MaxRunningPerGroup = 2 }, "max_running_per_group"},
		{func(j *Job) { j.RateLimitPerGroup = Rate{N: 1, Per: time.Second} }, "rate_limit_per_group"},
		{func(j *Job) { j.RateLimit = Rate{N: 10_000, Per: time.Second} }, "rate_limit"},
		{func(j *Job) { j.RateLimit = Rate{N: 0, Per: time.Second} }, "rate_limit"},
		{func(j *Job) { j.GroupBy = "value" }, "group_by"},
		{func(j *Job) { j.GroupBy = "odd_checking_end_time" }, "group_by"},
		{func(j *Job) { j.MaxRunning, j.Hooks.SelectingSQL = 3, "SELECT value FROM numbers" }, "selecting_sql"},
	} {
		j := oddJob()
		c.set(&j)
		var cl Cluster
		err := cl.AddJob(j)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || ce.Job != j.Name {
			t.Errorf("%s: AddJob = %v, want a ConfigError on %s naming the job", c.field, err, c.field)
		}
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Rate{"60/1m": {60, time.Minute}, "10/s": {10, time.Second}, " 5 / 30s ": {5, 30 * time.Second}, "1000/h": {1000, time.Hour}} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "60", "0/1m", "-1/1m", "x/1m", "10/0s", "10/-1s", "10/fortnight"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, r)
		}
	}
	if s := (Rate{60, time.Minute}).String(); s != "60/1m" {
		t.Errorf("String = %q, want 60/1m", s)
	}
}

// A dead worker's tries count against max_running until the dispatcher
// relaunches them, and no longer: a worker that started the job's two
// places and vanished (no heartbeat, no result) holds them while its
// heartbeat lapses; then they run again elsewhere.
func TestLimitsFreedWhenWorkerDies(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		now := "now()"
		if driver == DriverSQLite {
			now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
		}
		job := oddJob()
		job.Name, job.MaxRunning = "scrape", 2
		job.MaxPendingTasks = 1 // local.2 is assigned beside the vanished worker
		job.Process = func(ctx context.Context, task *Task) error {
			key, _ := task.Int64("value")
			_, err := task.DB().ExecContext(ctx, rebindFor(t, driver, `INSERT INTO audit (value, started_at) VALUES (?, `+now+`)`), key)
			return err
		}
		e := newPagesEnv(t, driver, []domainRows{{"one.example", 12}}, job)
		ctx := context.Background()
		if err := e.client.store.RegisterWorker(ctx, store.WorkerInfo{ID: "local.8", Node: "local", Instance: "gone",
			// One slot registered: the job's cap of 2 then wants 2 workers,
			// and local.2 is assigned beside it.
			Jobs: []string{"scrape"}, Slots: 1}, time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.store.Assign(ctx, "local.8", "", "scrape"); err != nil {
			t.Fatal(err)
		}
		j := e.jobSQL("scrape")
		e.tx(func(ctx context.Context, tx *sql.Tx) error {
			if _, err := j.ReserveKeys(ctx, tx, "local.8", []any{int64(1), int64(2)}); err != nil {
				return err
			}
			_, err := j.Claim(ctx, tx, "local.8", 2)
			return err
		})
		dopts := fastDispatcher()
		dopts.WorkerTTL = 2 * time.Second
		wopts := fastWorker()
		wopts.Concurrency = 2
		r, _ := e.startIDs(&dopts, wopts, "local.2")
		// Within the TTL, the vanished worker's tries hold both places.
		time.Sleep(time.Second)
		if n := e.count(`SELECT COUNT(*) FROM audit`); n != 0 {
			t.Errorf("%d tries started while the vanished worker's two still counted", n)
		}
		if rep := e.report("scrape"); rep.Running != 2 || rep.Limited != 2 {
			t.Errorf("report %+v, want the vanished worker's 2 tries running and local.2's 2 slots held back", rep)
		}
		e.waitJob("scrape", 12, 60*time.Second)
		r.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_times = 2 AND odd_checking_success = TRUE`); n != 2 {
			t.Errorf("%d tasks succeeded on a second try, want the vanished worker's 2", n)
		}
	})
}
