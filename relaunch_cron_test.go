package pampa

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"
)

// cronEnv is a job whose relaunching hook runs on "*/2 * * * * *" and
// writes each call's time to cron_calls, with dispatchers started and
// stopped at will.
type cronEnv struct {
	*testEnv
	t *testing.T
}

func newCronEnv(t *testing.T, driver string) *cronEnv {
	j := oddJob()
	j.RelaunchCron, j.RelaunchTimeZone = "*/2 * * * * *", "UTC"
	insert := rebindFor(t, driver, `INSERT INTO cron_calls (at_ms) VALUES (?)`)
	j.Hooks.Relaunching = func(ctx context.Context, db Querier, n int) ([]any, error) {
		_, err := db.ExecContext(ctx, insert, time.Now().UnixMilli())
		return nil, err
	}
	e := newEnv(t, driver, 0, j)
	e.exec(`CREATE TABLE cron_calls (at_ms BIGINT NOT NULL)`)
	return &cronEnv{testEnv: e, t: t}
}

// start runs a dispatcher until the returned function stops it.
func (e *cronEnv) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d := e.client.NewDispatcher(fastDispatcher())
	go func() { defer close(done); _ = d.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// calls are the hook's calls so far.
func (e *cronEnv) calls() []time.Time {
	var out []time.Time
	e.tx(func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT at_ms FROM cron_calls ORDER BY at_ms`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ms int64
			if err := rows.Scan(&ms); err != nil {
				return err
			}
			out = append(out, time.UnixMilli(ms))
		}
		return rows.Err()
	})
	return out
}

// checkOncePerDue fails if two calls fall between the same two due times
// (even seconds): one due time run twice.
func (e *cronEnv) checkOncePerDue() {
	seen := map[time.Time]time.Time{}
	for _, c := range e.calls() {
		due := c.Truncate(2 * time.Second)
		if prev, dup := seen[due]; dup {
			e.t.Errorf("the relaunching hook ran twice for the due time %v: at %v and %v", due, prev, c)
		}
		seen[due] = c
	}
}

// sleepUntilAfterDue sleeps until `after` past an even second, at least
// min from now.
func sleepUntilAfterDue(min, after time.Duration) time.Time {
	at := time.Now().Add(min).Truncate(2 * time.Second).Add(2*time.Second + after)
	time.Sleep(time.Until(at))
	return at
}

func TestRelaunchCronOncePerDueTimeAcrossDispatchers(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newCronEnv(t, driver)
		stopA := e.start()
		e.start()
		waitUntil(t, 10*time.Second, "two runs of the hook", func() bool { return len(e.calls()) >= 2 })
		// A fail-over: whichever led, one dispatcher goes on alone.
		stopA()
		before := len(e.calls())
		waitUntil(t, 15*time.Second, "two more runs after the fail-over", func() bool { return len(e.calls()) >= before+2 })
		e.checkOncePerDue()
	})
}

func TestRelaunchCronRunsTheMissedDueTimeOnceAfterARestart(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newCronEnv(t, driver)
		stop := e.start()
		waitUntil(t, 10*time.Second, "a run of the hook", func() bool { return len(e.calls()) >= 1 })
		stop()
		stopped := time.Now()
		ran := len(e.calls())
		// Down past at least one due time (and past the lease), then up
		// again 300ms after a due time, 1.7s before the next.
		restart := sleepUntilAfterDue(2500*time.Millisecond, 300*time.Millisecond)
		if n := len(e.calls()); n != ran {
			t.Fatalf("%d calls while no dispatcher ran", n-ran)
		}
		e.start()
		next := restart.Add(1700 * time.Millisecond)
		time.Sleep(time.Until(next) - 100*time.Millisecond)
		var missed []time.Time
		for _, c := range e.calls()[ran:] {
			if c.After(stopped) && c.Before(next) {
				missed = append(missed, c)
			}
		}
		// The lease of the stopped leader may still hold for up to its
		// TTL (2s) after its last renewal; restart is 2.5s later.
		if len(missed) != 1 {
			t.Errorf("after a restart %v past a due time: %d runs before the next due time %v (%v), want the missed one exactly once",
				restart.Sub(stopped), len(missed), next, missed)
		}
		e.checkOncePerDue()
	})
}
