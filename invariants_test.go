package pampa

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/pampa-go/pampa/internal/dispatcher"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// One test per invariant of the design brief. Each is written so that
// breaking the invariant in the engine makes it fail.

// Invariant 1: a row is reserved for at most one worker at a time, even
// with several dispatchers reserving at once; only one dispatcher leads.
func TestInvariantNoDoubleReservation(t *testing.T) {
	t.Parallel()
	t.Run("Store", func(t *testing.T) {
		t.Parallel()
		// The reserving statements themselves, raced from many goroutines
		// and connections pools, each for its own worker: every row must
		// come back to exactly one of them.
		for _, driver := range []string{DriverSQLite, DriverPostgres, DriverCockroach} {
			t.Run(driver, func(t *testing.T) {
				t.Parallel()
				const rows = 600
				e := newEnv(t, driver, rows)
				clients := []*Client{e.client}
				for range 2 {
					c, err := Open(context.Background(), e.cluster)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					clients = append(clients, c)
				}
				var mu sync.Mutex
				got := map[int64][]string{}
				var wg sync.WaitGroup
				errs := make(chan error, 12)
				for g := range 12 {
					c := clients[g%len(clients)]
					j, _ := c.job("search_odd_numbers")
					worker := WorkerID("local", g+1)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							keys, done, err := reserveRound(c, j, worker, g%2 == 0)
							if err != nil && c.retryable(err) {
								// Serialization failures past the store's
								// retries (crdb): nothing was reserved; a
								// dispatcher tries again next round.
								continue
							}
							if err != nil {
								errs <- fmt.Errorf("%s: %w", worker, err)
								return
							}
							if done {
								return
							}
							mu.Lock()
							for _, k := range keys {
								got[keyInt(k)] = append(got[keyInt(k)], worker)
							}
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				if len(got) != rows {
					t.Errorf("%d rows reserved, want %d", len(got), rows)
				}
				for k, ws := range got {
					if len(ws) != 1 {
						t.Errorf("row %d reserved %d times: %v", k, len(ws), ws)
					}
				}
				if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id IS NULL`); n != 0 {
					t.Errorf("%d rows left unreserved", n)
				}
			})
		}
	})

	t.Run("Dispatchers", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			const rows = 150
			var log execLog
			e := newEnv(t, driver, rows, withProcess(log.wrap(isOdd)))
			auditReservations(t, e)

			// Three dispatchers whose dispatch step runs from two goroutines
			// each, bypassing the lease: six reservers racing for the same
			// rows. On PostgreSQL each has its own connection pool. SQLite
			// serialises writers whatever the pool; separate pools there only
			// make everyone sleep in the busy handler (the Store subtest
			// races separate pools on SQLite).
			var ds []*Dispatcher
			for range 3 {
				c := e.client
				if driver != DriverSQLite {
					var err error
					if c, err = Open(context.Background(), e.cluster); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
				}
				ds = append(ds, c.NewDispatcher(fastDispatcher()))
			}
			ids := []string{"local.1", "local.2", "local.3", "local.4"}
			r, _ := e.startIDs(nil, steadyWorker(), ids...)
			waitUntil(t, 30*time.Second, "workers to register", func() bool {
				ws, err := e.client.store.Workers(context.Background(), time.Minute)
				return err == nil && len(ws) == len(ids)
			})
			for _, id := range ids {
				if ok, err := e.client.store.Assign(context.Background(), id, "", "search_odd_numbers"); err != nil || !ok {
					t.Fatalf("assign %s: %v %v", id, ok, err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			var rounds atomic.Int64
			dispatchErrs := make(chan error, 6)
			for i := range 6 {
				d := ds[i%3]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						st, err := d.loop.ReserveOnce(ctx)
						if err != nil && ctx.Err() == nil {
							dispatchErrs <- err
							return
						}
						rounds.Add(1)
						if st.Reserved == 0 {
							// Every queue is full: let the workers at the
							// database (SQLite has one writer) until one
							// frees a slot to race for.
							time.Sleep(5 * time.Millisecond)
						}
					}
				}()
			}
			e.waitJob("search_odd_numbers", rows, 60*time.Second)
			cancel()
			wg.Wait()
			r.stop(t)
			close(dispatchErrs)
			for err := range dispatchErrs {
				t.Errorf("dispatch: %v", err)
			}
			if rounds.Load() < 12 {
				t.Errorf("only %d dispatch rounds ran", rounds.Load())
			}
			if n := e.count(`SELECT COUNT(*) FROM reservation_steals`); n != 0 {
				t.Errorf("%d times a row reserved for one worker was reserved for another", n)
			}
			if n := e.count(`SELECT COUNT(*) FROM (SELECT value FROM reservation_events GROUP BY value HAVING COUNT(*) <> 1) x`); n != 0 {
				t.Errorf("%d rows reserved more than once", n)
			}
			if n := e.count(`SELECT COUNT(*) FROM reservation_events`); n != rows {
				t.Errorf("%d reservations, want %d", n, rows)
			}
			log.checkNoOverlap(t)
			for k, n := range log.perKey() {
				if n != 1 {
					t.Errorf("key %d executed %d times", k, n)
				}
			}
			if n := len(log.perKey()); n != rows {
				t.Errorf("%d keys executed, want %d", n, rows)
			}
		})
	})

	t.Run("OneLeader", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			e := newEnv(t, driver, 10)
			ctx := context.Background()
			var ds []*Dispatcher
			for range 3 {
				ds = append(ds, e.client.NewDispatcher(fastDispatcher()))
			}
			var leaders atomic.Int64
			var wg sync.WaitGroup
			for _, d := range ds {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, err := d.RunOnce(ctx)
					if err != nil {
						t.Error(err)
					}
					if st.Leading {
						leaders.Add(1)
					}
				}()
			}
			wg.Wait()
			if leaders.Load() != 1 {
				t.Fatalf("%d dispatchers lead at once, want 1", leaders.Load())
			}
			var leader *Dispatcher
			for _, d := range ds {
				if d.Leading() {
					leader = d
				}
			}
			for _, d := range ds {
				st, err := d.RunOnce(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Leading != (d == leader) {
					t.Fatalf("dispatcher %s leading = %v after the first round", d.opts.ID, st.Leading)
				}
			}
			leader.Resign()
			var next *Dispatcher
			for _, d := range ds {
				if d == leader {
					continue
				}
				st, err := d.RunOnce(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Leading {
					if next != nil {
						t.Fatal("two standbys took the lease")
					}
					next = d
				}
			}
			if next == nil {
				t.Fatal("no standby took the lease after the leader resigned")
			}
			l, err := e.client.store.CurrentLease(ctx, dispatcher.LeaseName)
			if err != nil {
				t.Fatal(err)
			}
			if l.Holder != next.opts.ID || l.Term < 2 {
				t.Errorf("lease = %+v, want holder %s with a new term", l, next.opts.ID)
			}
		})
	})
}

// reserveRound reserves a few rows for worker in one transaction, by the
// default selection (byOrder) or by asking for the first unreserved rows by
// key, as a selecting hook would; every goroutine then asks for the same
// rows. done is true once no row is left.
func reserveRound(c *Client, j *jobRuntime, worker string, byOrder bool) (keys []any, done bool, err error) {
	err = c.store.Tx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
		keys, done = nil, false
		if byOrder {
			var err error
			keys, err = j.sql.Reserve(ctx, tx, worker, 7)
			done = err == nil && len(keys) == 0
			return err
		}
		rs, err := tx.QueryContext(ctx, `SELECT value FROM numbers WHERE odd_checking_reservation_id IS NULL ORDER BY value LIMIT 9`)
		if err != nil {
			return err
		}
		var want []any
		for rs.Next() {
			var k int64
			if err := rs.Scan(&k); err != nil {
				rs.Close()
				return err
			}
			want = append(want, k)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if len(want) == 0 {
			done = true
			return nil
		}
		keys, err = j.sql.ReserveKeys(ctx, tx, worker, want)
		return err
	})
	return keys, done, err
}

// keyInt reads an integer key as the drivers return it (-1 otherwise).
func keyInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	}
	return -1
}

func toInt64(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	}
	t.Fatalf("key %v is %T, not an integer", v, v)
	return 0
}

// auditReservations makes the database itself log every reservation of a
// `numbers` row (NULL → worker) and every change of a reservation from one
// worker straight to another (a double reservation).
func auditReservations(t *testing.T, e *testEnv) {
	t.Helper()
	e.exec(`CREATE TABLE reservation_events (value integer, worker text)`)
	e.exec(`CREATE TABLE reservation_steals (value integer, old_worker text, new_worker text)`)
	const col = "odd_checking_reservation_id"
	if e.client.Driver() == DriverSQLite {
		e.exec(`CREATE TRIGGER audit_reserve AFTER UPDATE OF ` + col + ` ON numbers
			WHEN OLD.` + col + ` IS NULL AND NEW.` + col + ` IS NOT NULL
			BEGIN INSERT INTO reservation_events VALUES (NEW.value, NEW.` + col + `); END`)
		e.exec(`CREATE TRIGGER audit_steal AFTER UPDATE OF ` + col + ` ON numbers
			WHEN OLD.` + col + ` IS NOT NULL AND NEW.` + col + ` IS NOT NULL AND OLD.` + col + ` <> NEW.` + col + `
			BEGIN INSERT INTO reservation_steals VALUES (NEW.value, OLD.` + col + `, NEW.` + col + `); END`)
		return
	}
	e.exec(`CREATE FUNCTION audit_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF OLD.` + col + ` IS NULL AND NEW.` + col + ` IS NOT NULL THEN
				INSERT INTO reservation_events VALUES (NEW.value, NEW.` + col + `);
			ELSIF OLD.` + col + ` IS NOT NULL AND NEW.` + col + ` IS NOT NULL AND OLD.` + col + ` <> NEW.` + col + ` THEN
				INSERT INTO reservation_steals VALUES (NEW.value, OLD.` + col + `, NEW.` + col + `);
			END IF;
			RETURN NEW;
		END $$`)
	e.exec(`CREATE TRIGGER audit_reservation AFTER UPDATE ON numbers FOR EACH ROW EXECUTE FUNCTION audit_reservation()`)
}

// Invariant 2: a worker's writes are fenced by (key, reserved for me, my
// try); a late or stale result is dropped and the row is left as it is.
func TestInvariantFencing(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 10)
		j := e.jobSQL("search_odd_numbers")
		reserveClaim := func(worker string, key int64) int64 {
			t.Helper()
			var rows []store.Row
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				keys, err := j.ReserveKeys(ctx, tx, worker, []any{key})
				if err != nil {
					return err
				}
				if len(keys) != 1 {
					return fmt.Errorf("reserve %d for %s: got %v", key, worker, keys)
				}
				rows, err = j.Claim(ctx, tx, worker, 10)
				return err
			})
			if len(rows) != 1 {
				t.Fatalf("claim for %s: %d rows, want 1", worker, len(rows))
			}
			v, _ := rows[0].Get("odd_checking_reservation_times")
			return toInt64(t, v)
		}
		finish := func(f store.Fence, success bool) bool {
			t.Helper()
			var applied bool
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				var err error
				applied, err = j.Finish(ctx, tx, f, store.Outcome{Success: success, Error: "late",
					Set: map[string]any{"is_odd": true}})
				return err
			})
			return applied
		}
		dropped := func(what string, f store.Fence) {
			t.Helper()
			before := e.rowState(f.Key.(int64))
			if finish(f, true) {
				t.Errorf("%s: finish applied, want it dropped", what)
			}
			if after := e.rowState(f.Key.(int64)); after != before {
				t.Errorf("%s: row changed by a dropped finish:\n before %s\n after  %s", what, before, after)
			}
		}

		t.Run("StaleTryOrWorker", func(t *testing.T) {
			try := reserveClaim("local.1", 2)
			dropped("older try", store.Fence{Key: int64(2), Worker: "local.1", Try: try - 1})
			dropped("newer try", store.Fence{Key: int64(2), Worker: "local.1", Try: try + 1})
			dropped("other worker", store.Fence{Key: int64(2), Worker: "local.2", Try: try})
			if !finish(store.Fence{Key: int64(2), Worker: "local.1", Try: try}, true) {
				t.Fatal("the current try's finish was dropped")
			}
			dropped("second finish of an ended try", store.Fence{Key: int64(2), Worker: "local.1", Try: try})
		})

		t.Run("AfterWorkerDeclaredDead", func(t *testing.T) {
			try := reserveClaim("local.1", 4)
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				_, relaunched, _, err := j.RecoverWorkers(ctx, tx, []string{"local.1"}, "worker died")
				if err == nil && len(relaunched) != 1 {
					err = fmt.Errorf("relaunched %v, want [4]", relaunched)
				}
				return err
			})
			dropped("relaunched row", store.Fence{Key: int64(4), Worker: "local.1", Try: try})
			// Re-reserved and started by another worker: still dropped.
			try2 := reserveClaim("local.2", 4)
			if try2 != try+1 {
				t.Errorf("second try counted as %d, want %d", try2, try+1)
			}
			dropped("row re-reserved by another worker", store.Fence{Key: int64(4), Worker: "local.1", Try: try})
			dropped("old worker with the new try", store.Fence{Key: int64(4), Worker: "local.1", Try: try2})
			if !finish(store.Fence{Key: int64(4), Worker: "local.2", Try: try2}, true) {
				t.Fatal("the new holder's finish was dropped")
			}
		})

		t.Run("AfterExpiry", func(t *testing.T) {
			try := reserveClaim("local.3", 6)
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				// A negative max duration: every running try has expired.
				relaunched, _, err := j.RecoverExpired(ctx, tx, -time.Second, "expired")
				if err == nil && len(relaunched) != 1 {
					err = fmt.Errorf("relaunched %v, want [6]", relaunched)
				}
				return err
			})
			dropped("expired try", store.Fence{Key: int64(6), Worker: "local.3", Try: try})
		})

		t.Run("AfterRelaunchHook", func(t *testing.T) {
			try := reserveClaim("local.1", 8)
			if !finish(store.Fence{Key: int64(8), Worker: "local.1", Try: try}, true) {
				t.Fatal("finish dropped")
			}
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				keys, err := j.RelaunchKeys(ctx, tx, []any{int64(8)})
				if err == nil && len(keys) != 1 {
					err = fmt.Errorf("relaunched %v, want [8]", keys)
				}
				return err
			})
			dropped("duplicate finish after a relaunch", store.Fence{Key: int64(8), Worker: "local.1", Try: try})
			try2 := reserveClaim("local.1", 8)
			dropped("finish of the previous cycle", store.Fence{Key: int64(8), Worker: "local.1", Try: try2 + 1})
		})

		t.Run("HandBackLeavesRunningRows", func(t *testing.T) {
			reserveClaim("local.4", 9)
			before := e.rowState(9)
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				_, err := j.HandBack(ctx, tx, "local.4")
				return err
			})
			if after := e.rowState(9); after != before {
				t.Errorf("hand back touched a running row:\n before %s\n after  %s", before, after)
			}
		})
	})

	// A live worker that the registry declared dead (its heartbeat lapsed,
	// say, during a long pause): its task is relaunched; when its function
	// returns, its result must be dropped, its Set columns not written and
	// its finisher not run.
	t.Run("WorkerDeclaredDead", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			started := make(chan struct{}, 1)
			var log execLog
			var finished sync.Map // try → true, for key 3
			job := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
				if k, _ := task.Int64("value"); k == 3 && task.Try() == 1 {
					task.Set("note", "from the first try")
					started <- struct{}{}
					<-ctx.Done() // cancelled once the worker learns it was declared dead
					return ctx.Err()
				}
				return isOdd(ctx, task)
			}))
			job.Hooks.Finisher = func(ctx context.Context, tx Querier, task *Task, taskErr error) error {
				if k, _ := task.Int64("value"); k == 3 {
					finished.Store(task.Try(), true)
				}
				return nil
			}
			e := newEnv(t, driver, 5, job)
			e.exec(`ALTER TABLE numbers ADD COLUMN note text`)
			r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
			recvWithin(t, started, 20*time.Second, "key 3 to start")
			// What the dispatcher does to a worker whose heartbeat lapsed.
			// Both in one transaction, so the worker cannot learn it is dead
			// before its task was relaunched.
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `UPDATE pampa_workers SET state = 'dead', job = NULL WHERE id = 'local.1'`); err != nil {
					return err
				}
				_, _, _, err := e.jobSQL("search_odd_numbers").RecoverWorkers(ctx, tx, []string{"local.1"}, "worker died")
				return err
			})
			e.waitJob("search_odd_numbers", 5, 60*time.Second)
			e.waitFor(30*time.Second, "the first try's function to return", func() bool {
				for _, rec := range log.snapshot() {
					if rec.key == 3 && rec.try == 1 {
						return true
					}
				}
				return false
			})
			// Once Run has returned, the worker writes nothing more: a late
			// result that was going to land has landed.
			r.stop(t)
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE note IS NOT NULL`); n != 0 {
				t.Errorf("the dropped try's Set columns were written (%d rows)", n)
			}
			if _, ok := finished.Load(1); ok {
				t.Error("the finisher ran for the dropped try")
			}
			if _, ok := finished.Load(2); !ok {
				t.Error("the finisher did not run for the second try")
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 3 AND odd_checking_success = TRUE AND odd_checking_reservation_times = 2`); n != 1 {
				t.Errorf("key 3: %s, want succeeded on its second try", e.rowState(3))
			}
			log.checkNoOverlap(t)
		})
	})
}

// Invariant 3: all timestamps come from the database clock.
func TestInvariantDatabaseClock(t *testing.T) {
	t.Parallel()
	const rows = 20
	const skew = 3 * time.Hour
	t.Run(DriverPostgres, func(t *testing.T) {
		t.Parallel()
		// A database whose clock runs three hours behind this process: a
		// now() in the test's schema, found before pg_catalog's. Any time
		// taken from the process clock would stand out.
		db, schema := skewedPostgres(t)
		createNumbers(t, db, rows)
		admin, err := connect(context.Background(), &Cluster{Database: db})
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := admin.DB().Exec(`CREATE FUNCTION ` + schema + `.now() RETURNS timestamptz LANGUAGE sql STABLE
			AS $$ SELECT pg_catalog.now() - interval '3 hours' $$`); err != nil {
			t.Fatal(err)
		}
		e := newEnvOn(t, db, rows)
		var before, after time.Time
		if err := e.client.DB().QueryRow(`SELECT now()`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(before); d < skew-time.Minute || d > skew+time.Minute {
			t.Fatalf("the skewed clock reads %s, %s behind the process; the test's set-up is broken", before, d)
		}
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if err := e.client.DB().QueryRow(`SELECT now()`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		for _, col := range []string{"odd_checking_reservation_time", "odd_checking_start_time", "odd_checking_end_time"} {
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE NOT (`+col+` BETWEEN $1 AND $2)`, before, after); n != 0 {
				t.Errorf("%d rows with %s outside the database clock's [%s, %s]", n, col, before, after)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE NOT (started_at BETWEEN $1 AND $2) OR NOT (heartbeat_at BETWEEN $1 AND $2)`, before, after); n != 0 {
			t.Errorf("%d workers registered with times off the database clock", n)
		}
	})
	t.Run(DriverSQLite, func(t *testing.T) {
		t.Parallel()
		// SQLite reads the same clock as this process, so here the check is
		// that every time was written by SQLite itself: its UTC text format,
		// inside the window the database reported around the run.
		e := newEnv(t, DriverSQLite, rows)
		var before, after string
		const now = `SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')`
		if err := e.client.DB().QueryRow(now).Scan(&before); err != nil {
			t.Fatal(err)
		}
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if err := e.client.DB().QueryRow(now).Scan(&after); err != nil {
			t.Fatal(err)
		}
		format := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$`)
		// CAST: the driver would parse the TIMESTAMP columns otherwise.
		rs, err := e.client.DB().Query(`SELECT CAST(odd_checking_reservation_time AS TEXT),
			CAST(odd_checking_start_time AS TEXT), CAST(odd_checking_end_time AS TEXT) FROM numbers`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		for rs.Next() {
			var ts [3]string
			if err := rs.Scan(&ts[0], &ts[1], &ts[2]); err != nil {
				t.Fatal(err)
			}
			for _, s := range ts {
				if !format.MatchString(s) || s < before || s > after {
					t.Errorf("timestamp %q is not SQLite's clock between %q and %q", s, before, after)
				}
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// skewedPostgres returns a fresh PostgreSQL schema whose search path puts
// the schema before pg_catalog, so functions defined in it shadow the
// built-in ones.
func skewedPostgres(t *testing.T) (Database, string) {
	t.Helper()
	db := databaseFor(t, DriverPostgres)
	if u, err := url.Parse(db.URL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		schema := q.Get("search_path")
		q.Set("search_path", schema+",pg_catalog")
		u.RawQuery = q.Encode()
		db.URL = u.String()
		return db, schema
	}
	i := strings.LastIndex(db.URL, "search_path=")
	if i < 0 {
		t.Fatalf("no search_path in the test database's connection string")
	}
	schema := strings.Fields(db.URL[i+len("search_path="):])[0]
	db.URL += " search_path=" + schema + ",pg_catalog"
	return db, schema
}

// newEnvOn is newEnv over a given database whose `numbers` table exists.
func newEnvOn(t *testing.T, db Database, rows int, jobs ...Job) *testEnv {
	t.Helper()
	c := &Cluster{Database: db}
	if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 8}); err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		jobs = []Job{oddJob()}
	}
	for _, j := range jobs {
		if err := c.AddJob(j); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Setup(context.Background(), c, SetupOptions{}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cl, err := Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return &testEnv{t: t, cluster: c, client: cl}
}

// Invariant 4: nothing is lost when a worker dies, whether it is killed in
// the middle of a task or its process vanishes without a word.
func TestInvariantNothingLost(t *testing.T) {
	t.Parallel()
	t.Run("KilledMidTask", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			const rows = 60
			var log execLog
			blocked := make(chan int64, 1)
			var once sync.Once
			e := newEnv(t, driver, rows, withProcess(log.wrap(func(ctx context.Context, task *Task) error {
				if task.WorkerID() == "local.1" {
					first := false
					once.Do(func() { first = true })
					if first {
						k, _ := task.Int64("value")
						blocked <- k
						<-ctx.Done() // never finishes on its own
						return ctx.Err()
					}
				}
				return isOdd(ctx, task)
			})))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			victim, err := e.client.NewWorker("local.1", steadyWorker())
			if err != nil {
				t.Fatal(err)
			}
			rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
			victimDone := make(chan error, 1)
			go func() { victimDone <- victim.Run(ctx) }()
			key := recvWithin(t, blocked, 20*time.Second, "local.1 to start a task")
			r, ws := e.startIDs(nil, steadyWorker(), "local.2", "local.3")
			victim.Kill()
			if err := recvWithin(t, victimDone, 10*time.Second, "the killed worker's Run to return"); err != nil {
				t.Errorf("killed worker's Run: %v", err)
			}
			rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
			r.stop(t)
			rd.stop(t)
			if rep.Completed != rows || rep.Failed != 0 {
				t.Fatalf("report = %+v, want all %d succeeded", rep, rows)
			}
			var byOthers int
			for _, rec := range log.snapshot() {
				if rec.key == key && rec.worker != "local.1" {
					byOthers++
				}
			}
			if byOthers != 1 {
				t.Errorf("key %d, running when its worker was killed, ran %d times elsewhere, want 1", key, byOthers)
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = ? AND odd_checking_reservation_times = 2`, key); n != 1 {
				t.Errorf("key %d: %s, want its second try", key, e.rowState(key))
			}
			if n := ws["local.2"].Stats().Dropped.Load() + ws["local.3"].Stats().Dropped.Load(); n != 0 {
				t.Errorf("%d results of healthy workers dropped", n)
			}
			log.checkNoOverlap(t)
		})
	})

	// A worker killed mid-task and started again under the same id before
	// any dispatcher noticed: the new process must not leave the old one's
	// task running forever (the registry shows the id alive again).
	t.Run("RestartedUnderSameID", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			const rows = 10
			var log execLog
			blocked := make(chan int64, 1)
			var once sync.Once
			e := newEnv(t, driver, rows, withProcess(log.wrap(func(ctx context.Context, task *Task) error {
				first := false
				once.Do(func() { first = true })
				if first {
					k, _ := task.Int64("value")
					blocked <- k
					<-ctx.Done()
					return ctx.Err()
				}
				return isOdd(ctx, task)
			})))
			first, err := e.client.NewWorker("local.1", steadyWorker())
			if err != nil {
				t.Fatal(err)
			}
			rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
			firstDone := make(chan error, 1)
			go func() { firstDone <- first.Run(context.Background()) }()
			key := recvWithin(t, blocked, 20*time.Second, "a task to start")
			rd.stop(t) // no dispatcher from here until the new process is up
			first.Kill()
			if err := recvWithin(t, firstDone, 10*time.Second, "the killed worker's Run to return"); err != nil {
				t.Errorf("killed worker's Run: %v", err)
			}
			r, _ := e.startIDs(nil, steadyWorker(), "local.1")
			e.waitFor(30*time.Second, "local.1 to register again", func() bool {
				return e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id = 'local.1' AND state = 'running'`) == 1
			})
			rd2, _ := e.startIDs(steadyDispatcher(), steadyWorker())
			rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
			r.stop(t)
			rd2.stop(t)
			if rep.Completed != rows {
				t.Fatalf("report = %+v", rep)
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = ? AND odd_checking_reservation_times = 2`, key); n != 1 {
				t.Errorf("key %d: %s, want succeeded on a second try", key, e.rowState(key))
			}
			log.checkNoOverlap(t)
		})
	})

	t.Run("ProcessVanished", func(t *testing.T) {
		t.Parallel()
		forEachDriver(t, func(t *testing.T, driver string) {
			const rows = 40
			var log execLog
			e := newEnv(t, driver, rows, withProcess(log.wrap(isOdd)))
			j := e.jobSQL("search_odd_numbers")
			ctx := context.Background()
			// A worker process that registered, got five tasks, started two
			// and then vanished: no heartbeat, no hand back, no result.
			if err := e.client.store.RegisterWorker(ctx, store.WorkerInfo{ID: "local.8", Node: "local",
				Instance: "gone", Jobs: []string{"search_odd_numbers"}}, time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.store.Assign(ctx, "local.8", "", "search_odd_numbers"); err != nil {
				t.Fatal(err)
			}
			e.tx(func(ctx context.Context, tx *sql.Tx) error {
				if _, err := j.ReserveKeys(ctx, tx, "local.8", []any{int64(1), int64(2), int64(3), int64(4), int64(5)}); err != nil {
					return err
				}
				_, err := j.Claim(ctx, tx, "local.8", 2)
				return err
			})
			// The vanished worker is declared dead once its heartbeat is
			// older than the dispatcher's worker TTL.
			dopts := fastDispatcher()
			dopts.WorkerTTL = 2 * time.Second
			r, _ := e.startIDs(&dopts, steadyWorker(), "local.1", "local.2")
			rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
			r.stop(t)
			if rep.Completed != rows {
				t.Fatalf("report = %+v, want all %d succeeded", rep, rows)
			}
			w, err := e.client.store.Worker(ctx, "local.8", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if w.State != store.StateDead || w.Job != "" {
				t.Errorf("vanished worker: state %q job %q, want dead and unassigned", w.State, w.Job)
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.8'`); n != 0 {
				t.Errorf("%d rows still held by the vanished worker", n)
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value IN (1, 2) AND odd_checking_reservation_times = 2`); n != 2 {
				t.Errorf("the two started tasks should have run a second try: %s / %s", e.rowState(1), e.rowState(2))
			}
			for _, k := range []int64{3, 4, 5} {
				if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = ? AND odd_checking_reservation_times = 1`, k); n != 1 {
					t.Errorf("key %d: %s; the vanished worker's unstarted tasks should have been handed back without counting a try", k, e.rowState(k))
				}
			}
			for k, n := range log.perKey() {
				if n != 1 {
					t.Errorf("key %d executed %d times by live workers", k, n)
				}
			}
		})
	})
}

// Invariant 5: among healthy workers every task runs exactly once, never
// twice at the same time.
func TestInvariantExactlyOnceWhenHealthy(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 300
		var log execLog
		e := newEnv(t, driver, rows, withProcess(log.wrap(isOdd)))
		stop, ws := e.startRegistered("local.1", "local.2", "local.3", "local.4")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		stop(t)
		if rep.Completed != rows || rep.Failed != 0 {
			t.Fatalf("report = %+v", rep)
		}
		counts := log.perKey()
		if len(counts) != rows {
			t.Errorf("%d keys executed, want %d", len(counts), rows)
		}
		for k, n := range counts {
			if n != 1 {
				t.Errorf("key %d executed %d times", k, n)
			}
		}
		log.checkNoOverlap(t)
		workers := map[string]bool{}
		for _, rec := range log.snapshot() {
			workers[rec.worker] = true
		}
		if len(workers) < 2 {
			t.Errorf("work ran on %d workers, want several", len(workers))
		}
		for id, w := range ws {
			if n := w.Stats().Dropped.Load(); n != 0 {
				t.Errorf("%s: %d results dropped", id, n)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_times <> 1`); n != 0 {
			t.Errorf("%d rows tried more than once", n)
		}
	})
}
