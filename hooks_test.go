package pampa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every hook of Job.Hooks and Cluster is honoured, as Go and as SQL.

// README section 9, first example: dispatch `numbers` by value, reversed.
func TestSelectingHookReverseOrder(t *testing.T) {
	t.Parallel()
	const rows, queue = 40, 5
	const selecting = `SELECT * FROM numbers
		WHERE odd_checking_reservation_id IS NULL            -- record not reserved yet
		AND odd_checking_start_time IS NULL                  -- record is not pending to relaunch
		AND COALESCE(odd_checking_reservation_times, 0) < 3  -- record didn't fail more than 3 times
		ORDER BY value DESC                                  -- I want to order by number reversely
		LIMIT @n                                             -- don't dispatch more than n records at the time`
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		var log execLog
		var calls atomic.Int64
		j := withProcess(log.wrap(isOdd))
		if sqlHook {
			j.Hooks.SelectingSQL = selecting
		} else {
			j.Hooks.Selecting = func(ctx context.Context, db Querier, n int) ([]any, error) {
				calls.Add(1)
				return queryInts(ctx, db, rebindFor(t, driver, `SELECT value FROM numbers
					WHERE odd_checking_reservation_id IS NULL AND odd_checking_start_time IS NULL
					AND COALESCE(odd_checking_reservation_times, 0) < 3 ORDER BY value DESC LIMIT ?`), n)
			}
		}
		e := newEnv(t, driver, rows, j)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if rep.Completed != rows {
			t.Fatalf("report = %+v", rep)
		}
		if !sqlHook && calls.Load() == 0 {
			t.Error("the selecting hook was never called")
		}
		// The rows reserved so far are always the highest values, and at
		// most a queue's worth waits in the worker's queue (and at most as
		// many more taken ahead by the worker): the i-th task run is among
		// the i + 2 × queue_size highest values. In key order, the first
		// run would be of value 1.
		recs := log.snapshot()
		if len(recs) != rows {
			t.Fatalf("%d runs, want %d", len(recs), rows)
		}
		for i, rec := range recs {
			if bound := int64(rows - i - 2*queue); rec.key <= bound {
				t.Fatalf("run %d was of value %d; in reverse order it should be above %d (order: %v)", i, rec.key, bound, keysOf(recs))
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != rows {
			t.Errorf("%d rows checked right, want %d", n, rows)
		}
	})
}

func keysOf(recs []execRec) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.key
	}
	return out
}

// submitOddJob is README section 9's second job: submit the numbers the
// first job found odd. It has its own tracking columns on `numbers`.
func submitOddJob(process ProcessFunc) Job {
	return Job{
		Name: "submit_odd_numbers", Table: "numbers", PrimaryKey: "value",
		Fields: TrackingFields{
			ReservationID: "submit_odd_reservation_id", ReservationTime: "submit_odd_reservation_time",
			ReservationTimes: "submit_odd_reservation_times", StartTime: "submit_odd_start_time",
			EndTime: "submit_odd_end_time", Success: "submit_odd_success",
			ErrorDescription: "submit_odd_error_description",
		},
		QueueSize: 5, MaxTryTimes: 3, FilterWorkerID: `\.2$`, MaxPendingTasks: 10, MaxAssignedWorkers: 5,
		Process: process,
		Hooks: Hooks{SelectingSQL: `SELECT * FROM numbers
			WHERE submit_odd_reservation_id IS NULL             -- record not reserved yet
			AND submit_odd_start_time IS NULL                   -- record is not pending to relaunch
			AND COALESCE(submit_odd_reservation_times, 0) < 3   -- record didn't fail more than 3 times
			AND odd_checking_end_time IS NOT NULL               -- record that have been checked
			AND COALESCE(odd_checking_success, FALSE) = TRUE    -- record that have been checked successfully
			AND COALESCE(is_odd, FALSE) = TRUE                  -- only submit odd values
			ORDER BY odd_checking_end_time DESC                 -- submit records in the order they have been checked
			LIMIT @n                                            -- don't dispatch more than n records at the time`},
	}
}

// README section 9, second example: two jobs on one table, the second
// taking only the rows the first finished successfully and found odd.
func TestSelectingHookSecondJob(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 60
		var checkLog, submitLog execLog
		var mu sync.Mutex
		var bad []string
		check := withProcess(checkLog.wrap(isOdd))
		check.FilterWorkerID = `\.1$`
		check.Hooks.SelectingSQL = `SELECT * FROM numbers WHERE odd_checking_reservation_id IS NULL
			AND odd_checking_start_time IS NULL AND COALESCE(odd_checking_reservation_times, 0) < 3
			ORDER BY value DESC LIMIT @n`
		submit := submitOddJob(submitLog.wrap(func(ctx context.Context, task *Task) error {
			if !truthy(task.Get("is_odd")) || !truthy(task.Get("odd_checking_success")) || task.Get("odd_checking_end_time") == nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%v (is_odd %v, success %v)", task.Key(), task.Get("is_odd"), task.Get("odd_checking_success")))
				mu.Unlock()
			}
			return nil
		}))
		e := newEnv(t, driver, rows, check, submit)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitJob("search_odd_numbers", rows, 60*time.Second)
		e.waitState(60*time.Second, "every odd number to be submitted", "submit_odd_numbers", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE submit_odd_success = TRUE`) == rows/2
		})
		r.stop(t)
		if len(bad) > 0 {
			t.Errorf("submit_odd_numbers processed rows it should not have: %s", strings.Join(bad, "; "))
		}
		counts := submitLog.perKey()
		if len(counts) != rows/2 {
			t.Errorf("submit_odd_numbers ran %d keys, want %d", len(counts), rows/2)
		}
		for k, n := range counts {
			if k%2 == 0 || n != 1 {
				t.Errorf("submit_odd_numbers ran key %d %d times", k, n)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value % 2 = 0 AND submit_odd_reservation_id IS NOT NULL`); n != 0 {
			t.Errorf("%d even rows were reserved for submit_odd_numbers", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id <> 'local.1'
			OR (submit_odd_reservation_id IS NOT NULL AND submit_odd_reservation_id <> 'local.2')`); n != 0 {
			t.Errorf("%d rows ran on a worker filter_worker_id excludes", n)
		}
	})
}

// relaunchOlderThanASecond is README section 10's snippet with a short
// interval: run again the rows checked more than a second ago.
func relaunchOlderThanASecond(driver string) string {
	ago := `now() - interval '1 second'`
	if driver == DriverSQLite {
		ago = `strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 seconds')`
	}
	return `SELECT * FROM numbers
		WHERE odd_checking_end_time IS NOT NULL    -- record that have been checked
		AND odd_checking_end_time < ` + ago + `     -- checked a second ago
		LIMIT @n                                   -- don't relaunch more than n records at the time`
}

func TestRelaunchingHookRunsRowsAgain(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		const rows = 6
		var log execLog
		// Key 2 always fails, and has a single try: failed for good, it
		// must be run again by the hook all the same.
		j := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 2 {
				return errors.New("two is not welcome")
			}
			return isOdd(ctx, task)
		}))
		j.MaxTryTimes = 1
		var calls atomic.Int64
		if sqlHook {
			j.Hooks.RelaunchingSQL = relaunchOlderThanASecond(driver)
		} else {
			query := strings.Replace(relaunchOlderThanASecond(driver), "@n", "?", 1)
			j.Hooks.Relaunching = func(ctx context.Context, db Querier, n int) ([]any, error) {
				calls.Add(1)
				return queryInts(ctx, db, rebindFor(t, driver, strings.Replace(query, "SELECT *", "SELECT value", 1)), n)
			}
		}
		e := newEnv(t, driver, rows, j)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitFor(30*time.Second, "every row to run twice", func() bool {
			counts := log.perKey()
			for k := int64(1); k <= rows; k++ {
				if counts[k] < 2 {
					return false
				}
			}
			return true
		})
		r.stop(t)
		if !sqlHook && calls.Load() == 0 {
			t.Error("the relaunching hook was never called")
		}
		log.checkNoOverlap(t)
		byKey := map[int64][]execRec{}
		for _, rec := range log.snapshot() {
			byKey[rec.key] = append(byKey[rec.key], rec)
		}
		for k, rs := range byKey {
			if gap := rs[1].start.Sub(rs[0].end); gap < 900*time.Millisecond {
				t.Errorf("key %d ran again %s after its first run ended; the hook asks for more than a second", k, gap)
			}
			if k != 2 && rs[1].try != 1 {
				t.Errorf("key %d: second run is try %d; a succeeded row relaunched starts a new cycle of tries", k, rs[1].try)
			}
		}
	})
}

// Rows still reserved or running are never touched by the relaunching
// hook, whatever it returns.
func TestRelaunchingHookLeavesReservedAndRunningRows(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 8
		started := make(chan struct{}, 1)
		gate := make(chan struct{})
		var log execLog
		var once sync.Once
		var gated atomic.Pointer[Task] // key 1's first run, held by the gate
		var gatedRecorded atomic.Bool
		j := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 1 {
				first := false
				once.Do(func() { first = true })
				if first {
					gated.Store(task)
					started <- struct{}{}
					<-gate
				}
			}
			return isOdd(ctx, task)
		}))
		j.QueueSize = 3
		j.Hooks.Finisher = func(ctx context.Context, tx Querier, task *Task, taskErr error) error {
			if task == gated.Load() {
				gatedRecorded.Store(true)
			}
			return nil
		}
		var calls atomic.Int64
		j.Hooks.Relaunching = func(ctx context.Context, db Querier, n int) ([]any, error) {
			calls.Add(1)
			return queryInts(ctx, db, `SELECT value FROM numbers`) // every row, in any state
		}
		e := newEnv(t, driver, rows, j)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		recvWithin(t, started, 20*time.Second, "key 1 to start")
		e.waitFor(30*time.Second, "key 1's queue to fill", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_end_time IS NULL`) == 4
		})
		// A relaunch would clear a row's reservation (and a new one would
		// stamp a new reservation time); claiming it would not.
		held := func() string {
			rows, err := e.client.DB().Query(`SELECT value, CAST(odd_checking_reservation_time AS TEXT) FROM numbers
				WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_end_time IS NULL ORDER BY value`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var b strings.Builder
			for rows.Next() {
				var k int64
				var at string
				if err := rows.Scan(&k, &at); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%d@%s ", k, at)
			}
			return b.String()
		}
		start := func() string {
			var s sql.NullString
			if err := e.client.DB().QueryRow(`SELECT CAST(odd_checking_start_time AS TEXT) FROM numbers WHERE value = 1`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s.String
		}
		heldBefore, startBefore := held(), start()
		seen := calls.Load()
		e.waitFor(30*time.Second, "three more relaunch passes", func() bool { return calls.Load() >= seen+3 })
		if heldAfter := held(); heldAfter != heldBefore {
			t.Errorf("rows reserved for local.1 were touched:\n before %s\n after  %s", heldBefore, heldAfter)
		}
		if startAfter := start(); startAfter != startBefore || startBefore == "" {
			t.Errorf("running key 1 touched: start time %q → %q", startBefore, startAfter)
		}
		close(gate)
		// Its result lands: the row was never relaunched under it.
		e.waitFor(30*time.Second, "key 1's held run to be recorded", gatedRecorded.Load)
		r.stop(t)
		log.checkNoOverlap(t)
	})
}

// The relauncher runs for each relaunched key, inside the transaction that
// relaunched it: for rows picked by the relaunching hook and for Pampa's
// own retries of failed tries.
func TestRelauncherHook(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 5
		var log execLog
		j := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 3 && task.Try() == 1 {
				return errors.New("three fails once")
			}
			return isOdd(ctx, task)
		}))
		j.Hooks.RelaunchingSQL = relaunchOlderThanASecond(driver)
		var mu sync.Mutex
		var problems []string
		retried := map[int64]bool{}   // relaunched after a failed try
		rechecked := map[int64]bool{} // relaunched by the hook after a success
		var e *testEnv
		j.Hooks.Relauncher = func(ctx context.Context, tx Querier, key any) error {
			// Inside the transaction the row is already reset; outside it,
			// other sessions still see the outcome it is relaunched from.
			var inside int
			if err := tx.QueryRowContext(ctx, rebindFor(t, driver, `SELECT COUNT(*) FROM numbers
				WHERE value = ? AND odd_checking_end_time IS NULL AND odd_checking_reservation_id IS NULL`), key).Scan(&inside); err != nil {
				return err
			}
			var outside sql.NullBool
			if err := e.client.DB().QueryRowContext(ctx, rebindFor(t, driver, `SELECT odd_checking_success FROM numbers
				WHERE value = ? AND odd_checking_end_time IS NOT NULL`), key).Scan(&outside); err != nil {
				return fmt.Errorf("outside the transaction: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if inside != 1 || !outside.Valid {
				problems = append(problems, fmt.Sprintf("key %v: reset seen inside %d, outcome outside %v", key, inside, outside))
			}
			if outside.Bool {
				rechecked[keyInt(key)] = true
			} else {
				retried[keyInt(key)] = true
			}
			_, err := tx.ExecContext(ctx, rebindFor(t, driver, `INSERT INTO relaunch_log (value) VALUES (?)`), key)
			return err
		}
		e = newEnv(t, driver, rows, j)
		e.exec(`CREATE TABLE relaunch_log (value integer)`)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		e.waitFor(60*time.Second, "every row to be relaunched by the hook", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(rechecked) == rows
		})
		r.stop(t)
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Error(p)
		}
		// Key 3 failed its first try: Pampa's own retry relaunched it,
		// and called the relauncher for it.
		if !retried[3] || len(retried) != 1 {
			t.Errorf("relaunched after a failure: %v, want key 3 alone", retried)
		}
		if counts := log.perKey(); counts[3] < 2 {
			t.Errorf("key 3 ran %d times", counts[3])
		}
		// The relauncher's writes landed with each relaunch.
		if n := e.count(`SELECT COUNT(DISTINCT value) FROM relaunch_log WHERE value BETWEEN 1 AND ?`, rows); n != rows {
			t.Errorf("relaunch_log holds %d keys, want %d", n, rows)
		}
		if n := e.count(`SELECT COUNT(*) FROM relaunch_log WHERE value NOT BETWEEN 1 AND ?`, rows); n != 0 {
			t.Errorf("%d unknown keys given to the relauncher", n)
		}
	})
}

// A relauncher error rolls the relaunch back: the row stays as it was.
func TestRelauncherErrorKeepsRow(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 4
		var log execLog
		var armed atomic.Bool
		var calls atomic.Int64
		j := withProcess(log.wrap(isOdd))
		j.Hooks.Relaunching = func(ctx context.Context, db Querier, n int) ([]any, error) {
			if !armed.Load() {
				return nil, nil
			}
			return queryInts(ctx, db, `SELECT value FROM numbers`)
		}
		j.Hooks.Relauncher = func(ctx context.Context, tx Querier, key any) error {
			calls.Add(1)
			return errors.New("not now")
		}
		e := newEnv(t, driver, rows, j)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		e.waitJob("search_odd_numbers", rows, 60*time.Second)
		var before []string
		for k := int64(1); k <= rows; k++ {
			before = append(before, e.rowState(k))
		}
		armed.Store(true)
		e.waitFor(30*time.Second, "the relauncher to be called three times", func() bool { return calls.Load() >= 3 })
		r.stop(t)
		for k := int64(1); k <= rows; k++ {
			if after := e.rowState(k); after != before[k-1] {
				t.Errorf("key %d changed although its relauncher failed:\n before %s\n after  %s", k, before[k-1], after)
			}
		}
		if n := len(log.snapshot()); n != rows {
			t.Errorf("%d runs, want %d", n, rows)
		}
	})
}

// The starter runs once per task, after it was marked started; an error
// fails the try with "starter hook" in its description and the processing
// function is not called.
func TestStarterHook(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 10
		var log execLog
		var calls atomic.Int64
		var mu sync.Mutex
		var problems []string
		j := withProcess(log.wrap(isOdd))
		j.MaxTryTimes = 2
		j.Hooks.Starter = func(ctx context.Context, tx Querier, task *Task) error {
			calls.Add(1)
			k, err := task.Int64("value")
			if err != nil {
				return err
			}
			if task.Get("odd_checking_start_time") == nil || task.Try() < 1 {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("key %d: starter called before the task was started (try %d)", k, task.Try()))
				mu.Unlock()
			}
			if _, err := tx.ExecContext(ctx, rebindFor(t, driver, `INSERT INTO start_log (value, try) VALUES (?, ?)`), k, task.Try()); err != nil {
				return err
			}
			if k == 3 {
				return errors.New("no credit left for three")
			}
			return nil
		}
		e := newEnv(t, driver, rows, j)
		e.exec(`CREATE TABLE start_log (value integer, try integer)`)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if rep.Completed != rows-1 || rep.Failed != 1 {
			t.Fatalf("report = %+v, want %d completed and key 3 failed", rep, rows-1)
		}
		for _, p := range problems {
			t.Error(p)
		}
		if n := calls.Load(); n != rows-1+2 {
			t.Errorf("starter called %d times, want once per task and twice for key 3 (%d)", n, rows-1+2)
		}
		if counts := log.perKey(); counts[3] != 0 || len(counts) != rows-1 {
			t.Errorf("runs per key = %v: key 3 should never run, the others once", counts)
		}
		if n := e.count(`SELECT COUNT(*) FROM start_log`); n != rows-1 {
			t.Errorf("start_log has %d rows, want %d: the failing starter's writes must roll back", n, rows-1)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 3 AND odd_checking_reservation_times = 2
			AND odd_checking_success = FALSE AND odd_checking_error_description LIKE '%starter hook%no credit left for three%'`); n != 1 {
			t.Errorf("key 3: %s, want failed for good by the starter hook", e.rowState(3))
		}
	})
}

// The finisher runs in the transaction that records each outcome, with the
// task's error; its writes land with it.
func TestFinisherHook(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 10
		j := withProcess(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 4 {
				return errors.New("four is bad")
			}
			return isOdd(ctx, task)
		})
		j.MaxTryTimes = 1
		j.Hooks.Finisher = func(ctx context.Context, tx Querier, task *Task, taskErr error) error {
			k, _ := task.Int64("value")
			var desc any
			if taskErr != nil {
				desc = taskErr.Error()
			}
			_, err := tx.ExecContext(ctx, rebindFor(t, driver, `INSERT INTO finish_log (value, ok, err) VALUES (?, ?, ?)`), k, taskErr == nil, desc)
			return err
		}
		e := newEnv(t, driver, rows, j)
		e.exec(`CREATE TABLE finish_log (value integer, ok boolean, err text)`)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if rep.Completed != rows-1 || rep.Failed != 1 {
			t.Fatalf("report = %+v", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM finish_log`); n != rows {
			t.Errorf("finish_log has %d rows, want one per task (%d)", n, rows)
		}
		if n := e.count(`SELECT COUNT(*) FROM finish_log WHERE ok = TRUE AND err IS NULL AND value <> 4`); n != rows-1 {
			t.Errorf("%d successes logged, want %d", n, rows-1)
		}
		if n := e.count(`SELECT COUNT(*) FROM finish_log WHERE value = 4 AND ok = FALSE AND err = 'four is bad'`); n != 1 {
			t.Error("the finisher did not get key 4's error")
		}
	})
}

// A late result dropped by the fence does not run the finisher.
func TestFinisherNotCalledForDroppedResult(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		started := make(chan struct{}, 1)
		gate := make(chan struct{})
		j := withProcess(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 2 && task.Try() == 1 {
				task.Set("note", "late")
				started <- struct{}{}
				<-gate
			}
			return isOdd(ctx, task)
		})
		var finished sync.Map // "key/try" → true
		j.Hooks.Finisher = func(ctx context.Context, tx Querier, task *Task, taskErr error) error {
			k, _ := task.Int64("value")
			finished.Store(fmt.Sprintf("%d/%d", k, task.Try()), true)
			return nil
		}
		e := newEnv(t, driver, 4, j)
		e.exec(`ALTER TABLE numbers ADD COLUMN note text`)
		r, ws := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		recvWithin(t, started, 20*time.Second, "key 2 to start")
		// Relaunched behind the worker's back, as for a dead worker.
		e.tx(func(ctx context.Context, tx *sql.Tx) error {
			_, _, _, err := e.jobSQL("search_odd_numbers").RecoverWorkers(ctx, tx, []string{"local.1"}, "test")
			return err
		})
		close(gate)
		e.waitJob("search_odd_numbers", 4, 60*time.Second)
		r.stop(t)
		if n := ws["local.1"].Stats().Dropped.Load(); n != 1 {
			t.Errorf("%d results dropped, want 1", n)
		}
		if _, ok := finished.Load("2/1"); ok {
			t.Error("the finisher ran for a dropped result")
		}
		if _, ok := finished.Load("2/2"); !ok {
			t.Error("the finisher did not run for key 2's second try")
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE note IS NOT NULL`); n != 0 {
			t.Error("the dropped result's Set columns were written")
		}
	})
}

// The occupied hook's count replaces the queue length: a worker it reports
// full gets nothing, the others proceed.
func TestOccupiedHook(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		const rows = 30
		var asked sync.Map
		j := withProcess(isOdd)
		if sqlHook {
			j.Hooks.OccupiedSQL = `SELECT CASE WHEN @worker = 'local.1' THEN 5
				ELSE (SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = @worker AND odd_checking_start_time IS NULL) END`
		} else {
			j.Hooks.Occupied = func(ctx context.Context, db Querier, worker string) (int, error) {
				asked.Store(worker, true)
				if worker == "local.1" {
					return 5, nil
				}
				var n int
				err := db.QueryRowContext(ctx, rebindFor(t, driver, `SELECT COUNT(*) FROM numbers
					WHERE odd_checking_reservation_id = ? AND odd_checking_start_time IS NULL`), worker).Scan(&n)
				return n, err
			}
		}
		e := newEnv(t, driver, rows, j)
		stop, _ := e.startRegistered("local.1", "local.2")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		stop(t)
		if rep.Completed != rows {
			t.Fatalf("report = %+v", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.2'`); n != rows {
			t.Errorf("local.2 ran %d tasks, want all %d (local.1 is reported full)", n, rows)
		}
		if !sqlHook {
			if _, ok := asked.Load("local.1"); !ok {
				t.Error("the occupied hook was never asked about local.1")
			}
		}
	})
}

// The allowing hook refuses a worker: it gets nothing, the others proceed.
func TestAllowingHook(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		const rows = 30
		var refused atomic.Int64
		j := withProcess(isOdd)
		if sqlHook {
			j.Hooks.AllowingSQL = `SELECT CASE WHEN @worker = 'local.1' THEN FALSE ELSE TRUE END`
		} else {
			j.Hooks.Allowing = func(ctx context.Context, db Querier, worker string) (bool, error) {
				if worker == "local.1" {
					refused.Add(1)
					return false, nil
				}
				return true, nil
			}
		}
		e := newEnv(t, driver, rows, j)
		stop, _ := e.startRegistered("local.1", "local.2")
		e.waitFor(30*time.Second, "both workers to be assigned", func() bool {
			return e.count(`SELECT COUNT(*) FROM pampa_workers WHERE job = 'search_odd_numbers'`) == 2
		})
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		stop(t)
		if rep.Completed != rows {
			t.Fatalf("report = %+v", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.2'`); n != rows {
			t.Errorf("local.2 ran %d tasks, want all %d (local.1 is refused)", n, rows)
		}
		if !sqlHook && refused.Load() == 0 {
			t.Error("the allowing hook never refused local.1")
		}
	})
}

// The reporting hooks replace the report's figures.
func TestReportingHooks(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		j := withProcess(isOdd)
		want := JobReport{Job: "search_odd_numbers", Total: 1000, Completed: 7, Pending: 11, Failed: 3}
		if sqlHook {
			j.Hooks.TotalSQL = `SELECT 1000`
			j.Hooks.CompletedSQL = `SELECT COUNT(*) FROM numbers WHERE value <= 7`
			j.Hooks.PendingSQL = `SELECT COUNT(*) FROM numbers WHERE value > 9`
			j.Hooks.FailedSQL = `SELECT COUNT(*) FROM numbers WHERE value IN (3, 6, 9)`
		} else {
			j.Hooks.Total = func(context.Context, Querier) (int64, error) { return 1000, nil }
			j.Hooks.Completed = func(context.Context, Querier) (int64, error) { return 7, nil }
			j.Hooks.Pending = func(ctx context.Context, db Querier) (int64, error) {
				var n int64
				err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM numbers WHERE value > 9`).Scan(&n)
				return n, err
			}
			j.Hooks.Failed = func(context.Context, Querier) (int64, error) { return 3, nil }
		}
		e := newEnv(t, driver, 20, j)
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1' WHERE value <= 2`)
		got := e.report("search_odd_numbers")
		want.Reserved = 2 // not a hook: still counted
		if got != want {
			t.Errorf("report = %+v, want %+v", got, want)
		}
		all, err := e.client.Report(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0] != want {
			t.Errorf("Report = %+v, want [%+v]", all, want)
		}
	})
}

// A failing reporting hook is reported, naming the job and the hook.
func TestReportingHookError(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		j := withProcess(isOdd)
		j.Hooks.CompletedSQL = `SELECT COUNT(*) FROM no_such_table`
		e := newEnv(t, driver, 3, j)
		_, err := e.client.JobReport(context.Background(), "search_odd_numbers")
		if err == nil || !strings.Contains(err.Error(), "search_odd_numbers") || !strings.Contains(err.Error(), "completed hook") {
			t.Errorf("err = %v, want one naming the job and the completed hook", err)
		}
	})
}

// The start-up snippets run once; an error from one stops Run with it.
func TestStartSnippets(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		t.Run("Once", func(t *testing.T) {
			e := newEnv(t, driver, 10)
			var dispatcherCalls atomic.Int64
			var mu sync.Mutex
			workerCalls := map[string]int{}
			e.cluster.OnDispatcherStart = func(ctx context.Context, log *slog.Logger) error {
				dispatcherCalls.Add(1)
				return nil
			}
			e.cluster.OnWorkerStart = func(ctx context.Context, log *slog.Logger, id string) error {
				mu.Lock()
				workerCalls[id]++
				mu.Unlock()
				return nil
			}
			r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
			e.waitJob("search_odd_numbers", 10, 60*time.Second)
			// On a loaded machine one worker may finish the job before the
			// other has started: wait for both to have started.
			e.waitFor(30*time.Second, "both workers' start-up snippets", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(workerCalls) == 2
			})
			r.stop(t)
			if n := dispatcherCalls.Load(); n != 1 {
				t.Errorf("dispatcher snippet ran %d times, want 1", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(workerCalls) != 2 || workerCalls["local.1"] != 1 || workerCalls["local.2"] != 1 {
				t.Errorf("worker snippet calls = %v, want once per worker", workerCalls)
			}
		})
		t.Run("Errors", func(t *testing.T) {
			e := newEnv(t, driver, 10)
			errDispatcher := errors.New("no coffee for the dispatcher")
			errWorker := errors.New("no coffee for the worker")
			e.cluster.OnDispatcherStart = func(ctx context.Context, log *slog.Logger) error { return errDispatcher }
			e.cluster.OnWorkerStart = func(ctx context.Context, log *slog.Logger, id string) error { return errWorker }
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := e.client.NewDispatcher(fastDispatcher()).Run(ctx); !errors.Is(err, errDispatcher) {
				t.Errorf("dispatcher Run = %v, want the snippet's error", err)
			}
			w, err := e.client.NewWorker("local.1", steadyWorker())
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Run(ctx); !errors.Is(err, errWorker) {
				t.Errorf("worker Run = %v, want the snippet's error", err)
			}
			if ctx.Err() != nil {
				t.Fatal("Run did not return on its own")
			}
			if n := e.count(`SELECT COUNT(*) FROM pampa_leader WHERE holder IS NOT NULL`); n != 0 {
				t.Error("the dispatcher took the lease although its snippet failed")
			}
			if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE state = 'running'`); n != 0 {
				t.Error("the worker stayed registered as running although its snippet failed")
			}
			if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id IS NOT NULL`); n != 0 {
				t.Errorf("%d rows were reserved", n)
			}
		})
	})
}

// A processing function's error is recorded with its text and retried up
// to max_try_times; a panic is recorded as one; a Set of a column the
// table lacks fails the try with a clear description. None of them stops
// the worker from going on with the rest of its queue.
func TestProcessingFailures(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 20
		var log execLog
		j := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			k, _ := task.Int64("value")
			switch k {
			case 7:
				return fmt.Errorf("boom %d", k)
			case 5:
				panic("kaboom")
			case 9:
				task.Set("is_odd", true)
				task.Set("no_such_column", 1)
				return nil
			case 11:
				task.Set("odd_checking_success", true)
				return nil
			}
			return isOdd(ctx, task)
		}))
		j.MaxTryTimes = 3
		e := newEnv(t, driver, rows, j)
		r, ws := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		rep := e.waitJob("search_odd_numbers", rows, 60*time.Second)
		r.stop(t)
		if rep.Completed != rows-4 || rep.Failed != 4 || rep.Pending != 0 {
			t.Fatalf("report = %+v, want %d completed and 4 failed", rep, rows-4)
		}
		counts := log.perKey()
		for k := int64(1); k <= rows; k++ {
			want := 1
			if k == 5 || k == 7 || k == 9 || k == 11 {
				want = 3
			}
			if counts[k] != want {
				t.Errorf("key %d ran %d times, want %d", k, counts[k], want)
			}
		}
		for _, c := range []struct {
			key  int64
			like []string
		}{
			{7, []string{"boom 7"}},
			{5, []string{"panic", "kaboom"}},
			{9, []string{"writing back columns", "no_such_column"}},
			{11, []string{"odd_checking_success", "tracking column"}},
		} {
			var desc string
			q := `SELECT odd_checking_error_description FROM numbers WHERE value = ? AND odd_checking_success = FALSE
				AND odd_checking_reservation_times = 3 AND odd_checking_end_time IS NOT NULL`
			if err := e.client.DB().QueryRow(rebindFor(t, driver, q), c.key).Scan(&desc); err != nil {
				t.Errorf("key %d: %v (%s)", c.key, err, e.rowState(c.key))
				continue
			}
			for _, s := range c.like {
				if !strings.Contains(desc, s) {
					t.Errorf("key %d: error description %q lacks %q", c.key, desc, s)
				}
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 9 AND is_odd IS NOT NULL`); n != 0 {
			t.Error("key 9: columns set beside the missing one were written although the try failed")
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value NOT IN (5, 7, 9, 11) AND is_odd = (value % 2 = 1)
			AND odd_checking_success = TRUE AND odd_checking_error_description IS NULL`); n != rows-4 {
			t.Errorf("%d other rows succeeded with their work written, want %d", n, rows-4)
		}
		st := ws["local.1"].Stats()
		if st.Failed.Load() != 12 || st.Succeeded.Load() != rows-4 {
			t.Errorf("worker stats: %d failed, %d succeeded; want 12 and %d", st.Failed.Load(), st.Succeeded.Load(), rows-4)
		}
	})
}
