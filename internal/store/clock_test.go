package store

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/testdb"
)

// clockShift is how far behind the process the shifted databases' clocks run.
const clockShift = -3 * time.Hour

// openShiftedStore opens a migrated store whose database clock runs
// clockShift off the process's: on SQLite through the dialect's ClockShift,
// on PostgreSQL through a now() in the test's schema, which its search path
// puts before pg_catalog. A time taken from the process clock then stands
// out by hours, though both clocks are one machine's.
func openShiftedStore(t *testing.T, dialect string) *Store {
	t.Helper()
	if dialect == "sqlite" {
		s := openRaw(t, dialect, testdb.SQLitePath(t))
		s.Dialect = SQLite{ClockShift: clockShift}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	raw := testdb.PostgresURL(t)
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get("search_path") == "" {
		t.Fatalf("the test database's URL has no search_path: %v", err)
	}
	q := u.Query()
	schema := q.Get("search_path")
	q.Set("search_path", schema+",pg_catalog")
	u.RawQuery = q.Encode()
	s := openRaw(t, dialect, u.String())
	if _, err := s.DB.ExecContext(t.Context(), `CREATE FUNCTION `+Quote(schema)+`.now() RETURNS timestamptz LANGUAGE sql STABLE
		AS $$ SELECT pg_catalog.now() + make_interval(secs => `+strconv.FormatFloat(clockShift.Seconds(), 'f', -1, 64)+`) $$`); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// shiftedClock reads the database clock as Pampa's statements see it, and
// checks that it runs clockShift off the process's.
func shiftedClock(t *testing.T, s *Store) any {
	t.Helper()
	var raw any
	if err := s.DB.QueryRowContext(t.Context(), `SELECT `+s.Dialect.Now()).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	switch v := raw.(type) {
	case time.Time:
		at = v
	case string:
		var err error
		if at, err = time.Parse("2006-01-02 15:04:05.000", v); err != nil {
			t.Fatalf("database clock %q: %v", v, err)
		}
	default:
		t.Fatalf("database clock read as %T", raw)
	}
	if off := at.Sub(time.Now()) - clockShift; off < -time.Minute || off > time.Minute {
		t.Fatalf("database clock %s is not %s off the process's; the test's set-up is broken", at, clockShift)
	}
	return raw
}

// betweenShifted checks that a timestamp column of the rows where cond
// holds lies between two readings of the database clock.
func betweenShifted(t *testing.T, s *Store, what, table, col, cond string, lo, hi any, args ...any) {
	t.Helper()
	var n, all int
	err := s.DB.QueryRowContext(t.Context(), s.q(`SELECT COUNT(CASE WHEN `+Quote(col)+` >= ? AND `+Quote(col)+` <= ? THEN 1 END), COUNT(*) FROM `+
		Quote(table)+` WHERE `+cond), append([]any{lo, hi}, args...)...).Scan(&n, &all)
	if err != nil {
		t.Fatal(err)
	}
	if all == 0 || n != all {
		t.Errorf("%s: %d of %d rows have %s between the database clock's readings %v and %v", what, n, all, col, lo, hi)
	}
}

// TestTimestampsFromDatabaseClock checks invariant 3 for every timestamp
// Pampa writes (reserved, started, ended, by a batched finish and by
// recovery; a worker's start and heartbeat; the lease's expiry) and every
// age it measures, on a database whose clock differs from the process's.
func TestTimestampsFromDatabaseClock(t *testing.T) {
	t.Parallel()
	for _, name := range dialectNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := openShiftedStore(t, name)
			j := newJob(t, s, "tasks", 10, 3)
			loadTypes(t, j)

			t0 := shiftedClock(t, s)
			wantKeys(t, "Reserve", reserveN(t, j, "w1", 1), 1)
			wantKeys(t, "ReserveKeys", reserveKeys(t, j, "w1", 2, 3, 4), 2, 3, 4)
			t1 := shiftedClock(t, s)
			if rows := claimRows(t, j, "w1", 4); len(rows) != 4 {
				t.Fatalf("claimed %d rows, want 4", len(rows))
			}
			t2 := shiftedClock(t, s)
			// Tries that have just started have not run past an hour.
			if relaunched, failed, err := j.RecoverExpired(ctx, s.DB, time.Hour, "expired"); err != nil || len(relaunched)+len(failed) != 0 {
				t.Fatalf("RecoverExpired = %v, %v, %v; want nothing expired", relaunched, failed, err)
			}
			if !finishTask(t, j, Fence{Key: int64(1), Worker: "w1", Try: 1}, Outcome{Success: true}) {
				t.Fatal("Finish not applied")
			}
			// A batch of distinct keys: the batched statement.
			fs := []Fence{{Key: int64(2), Worker: "w1", Try: 1}, {Key: int64(3), Worker: "w1", Try: 1}}
			if applied := finishMany(t, j, fs, []Outcome{{Success: true}, {Success: true}}); !applied[0] || !applied[1] {
				t.Fatalf("FinishMany applied %v", applied)
			}
			t3 := shiftedClock(t, s)
			betweenShifted(t, s, "reserved", "tasks", "rtime", "id IN (1, 2, 3, 4)", t0, t1)
			betweenShifted(t, s, "claimed", "tasks", "started", "id IN (1, 2, 3, 4)", t1, t2)
			betweenShifted(t, s, "finished", "tasks", "ended", "id IN (1, 2, 3)", t2, t3)

			// The failure written by recovery is stamped by the database too.
			mustExec(t, s, `UPDATE tasks SET rtimes = 3 WHERE id = 4`)
			if _, _, failed, err := j.RecoverWorkers(ctx, s.DB, []string{"w1"}, "gone"); err != nil || len(failed) != 1 {
				t.Fatalf("RecoverWorkers failed %v, %v", failed, err)
			}
			t4 := shiftedClock(t, s)
			betweenShifted(t, s, "failed by recovery", "tasks", "ended", "id = 4", t3, t4)

			checkRegistryClock(t, s)
			checkLeaseClock(t, s)
		})
	}
}

// checkRegistryClock: a worker's start and heartbeat are the database's
// times, and its age is measured on the database clock.
func checkRegistryClock(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	t0 := shiftedClock(t, s)
	if err := s.RegisterWorker(ctx, WorkerInfo{ID: "local.1", Node: "local", Host: "h", PID: 1, Instance: "i1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	t1 := shiftedClock(t, s)
	if _, ok, err := s.Heartbeat(ctx, "local.1", "i1"); err != nil || !ok {
		t.Fatalf("Heartbeat = %v, %v", ok, err)
	}
	t2 := shiftedClock(t, s)
	betweenShifted(t, s, "registered", "pampa_workers", "started_at", "id = ?", t0, t1, "local.1")
	betweenShifted(t, s, "heartbeat", "pampa_workers", "heartbeat_at", "id = ?", t1, t2, "local.1")
	w, err := s.Worker(ctx, "local.1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Alive || w.LastBeat < 0 || w.LastBeat > time.Minute || w.Uptime < 0 || w.Uptime > time.Minute {
		t.Errorf("worker just registered = alive %v, heartbeat age %.0fs, uptime %.0fs; want alive, both under a minute", w.Alive, w.LastBeat.Seconds(), w.Uptime.Seconds())
	}
	if dead, err := s.MarkDead(ctx, time.Minute); err != nil || len(dead) != 0 {
		t.Errorf("MarkDead = %v, %v; want no worker dead", dead, err)
	}
}

// checkLeaseClock: a lease taken for a minute expires a minute from the
// database's now.
func checkLeaseClock(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	if _, ok, err := s.AcquireLease(ctx, "dispatcher", "d1", time.Minute); err != nil || !ok {
		t.Fatalf("AcquireLease = %v, %v", ok, err)
	}
	l, err := s.CurrentLease(ctx, "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	// Timestamps keep milliseconds (SQLite's text stamps round them), so a
	// lease read at once may show a hair over its 60 s.
	if l.ExpiresInSec <= 0 || l.ExpiresInSec > 60.5 {
		t.Errorf("lease taken for 60s expires in %.3fs", l.ExpiresInSec)
	}
	// Another holder cannot take a live lease.
	if _, ok, err := s.AcquireLease(ctx, "dispatcher", "d2", time.Minute); err != nil || ok {
		t.Errorf("AcquireLease by d2 of d1's live lease = %v, %v; want refused", ok, err)
	}
}
