package pampa

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// scheduledJob is oddJob with a run-at column.
func scheduledJob() Job {
	j := oddJob()
	j.RunAt = "run_at"
	return j
}

// schedule sets the run-at of key to now plus in, by the database's clock.
func (e *testEnv) schedule(key int, in time.Duration) {
	d := e.client.store.Dialect
	e.exec(`UPDATE numbers SET run_at = `+d.Ago()+` WHERE value = ?`, d.AgoArg(-in), key)
}

// Setup adds the run-at column and the scheduled index; a row whose run-at
// is in the future is scheduled, not pending, in the report, the task
// listing, the elastic assignment's count and the reserving statement; a
// run-at in the past or NULL is due.
func TestScheduledRowsAreNotPending(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := scheduledJob()
		e := newEnv(t, driver, 6, job)
		ctx := context.Background()
		cols, _, err := e.client.store.Dialect.Columns(ctx, e.client.DB(), store.ParseIdent("numbers"))
		if err != nil || !slices.ContainsFunc(cols, func(c store.Column) bool { return c.Name == "run_at" }) {
			t.Fatalf("columns after setup: %v, %v; want run_at added", cols, err)
		}
		var index string
		for _, ix := range e.jobSQL(job.Name).Indexes(job.Name) {
			if strings.HasSuffix(ix.Name, "_scheduled") {
				index = ix.Name
			}
		}
		if ok, err := e.client.store.IndexExists(ctx, store.ParseIdent("numbers"), index); index == "" || err != nil || !ok {
			t.Errorf("scheduled index %q made by setup: %v, %v", index, ok, err)
		}
		e.schedule(1, time.Hour)
		e.schedule(2, time.Minute)
		e.schedule(3, -time.Minute) // due
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1' WHERE value = 6`)
		r := e.report(job.Name)
		if r.Pending != 3 || r.Scheduled != 2 || r.Reserved != 1 || r.Total != 6 {
			t.Errorf("report %+v, want 3 pending, 2 scheduled, 1 reserved of 6", r)
		}
		listed := func(state string) []any {
			tasks, err := e.client.Tasks(ctx, job.Name, TaskFilter{State: state, Limit: 10})
			if err != nil {
				t.Fatalf("tasks %s: %v", state, err)
			}
			var keys []any
			for _, tk := range tasks {
				if tk.State != state {
					t.Errorf("task %v listed as %s has state %q", tk.Key, state, tk.State)
				}
				keys = append(keys, tk.Key)
			}
			return keys
		}
		if got := listed(StateScheduled); !slices.Equal(got, []any{int64(1), int64(2)}) {
			t.Errorf("scheduled tasks %v, want [1 2]", got)
		}
		if got := listed(StatePending); !slices.Equal(got, []any{int64(3), int64(4), int64(5)}) {
			t.Errorf("pending tasks %v, want [3 4 5]", got)
		}
		js := e.jobSQL(job.Name)
		if n, err := js.CountPending(ctx, e.client.DB(), 100); err != nil || n != 3 {
			t.Errorf("CountPending = %d, %v; want 3", n, err)
		}
		keys, err := js.Reserve(ctx, e.client.DB(), "local.2", 10)
		slices.SortFunc(keys, func(a, b any) int { return int(a.(int64) - b.(int64)) })
		if err != nil || !slices.Equal(keys, []any{int64(3), int64(4), int64(5)}) {
			t.Errorf("Reserve = %v, %v; want [3 4 5]", keys, err)
		}
	})
}

// A task scheduled 1.5 s ahead starts at its run-at or after, never
// before, by the database's clock, and within half a second of it, though
// the dispatcher's Delay is 10 s: it wakes for the next due time. The
// others run at once.
func TestScheduledTaskStartsOnTime(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 4, scheduledJob())
		e.schedule(2, 1500*time.Millisecond)
		dopts := steadyDispatcher()
		dopts.Delay, dopts.MaintenanceEvery = 10*time.Second, 10*time.Second
		if r := e.report("search_odd_numbers"); r.Scheduled != 1 || r.Pending != 3 {
			t.Errorf("before the run: %+v, want 1 scheduled, 3 pending", r)
		}
		e.startIDs(dopts, steadyWorker(), "local.1")
		e.waitJob("search_odd_numbers", 4, 10*time.Second)
		d := e.client.store.Dialect
		var late float64 // the start less the run-at, in seconds
		err := e.client.DB().QueryRow(rebindFor(t, driver, `SELECT `+d.SecondsSince("run_at")+` - `+d.SecondsSince("odd_checking_start_time")+
			` FROM numbers WHERE value = 2`)).Scan(&late)
		if err != nil {
			t.Fatal(err)
		}
		// SQLite keeps milliseconds: equal times may differ by a rounding.
		if late < -0.0005 {
			t.Errorf("task 2 started %.3f s before its run-at", -late)
		}
		if late > 0.5 {
			t.Errorf("task 2 started %.3f s after its run-at, want within half a second", late)
		}
	})
}

// Without field_run_at, no statement names a run-at and setup adds no
// such column or index.
func TestRunAtUnsetChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, DriverSQLite, 1)
	js := e.jobSQL("search_odd_numbers")
	for _, ix := range js.Indexes("search_odd_numbers") {
		if strings.Contains(ix.Name, "scheduled") {
			t.Errorf("index %s without field_run_at", ix.Name)
		}
	}
	if r := e.report("search_odd_numbers"); r.Scheduled != 0 || r.Pending != 1 {
		t.Errorf("report %+v, want 1 pending, 0 scheduled", r)
	}
}

// Client.Reschedule moves a pending task to the future (scheduled) and
// back to the past (pending, due now), leaves a running one alone, and
// refuses a job without field_run_at, naming it.
func TestClientReschedule(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 3, scheduledJob())
		ctx := context.Background()
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_start_time = ` + e.client.store.Dialect.Now() + ` WHERE value = 1`)
		moved, err := e.client.Reschedule(ctx, "search_odd_numbers", time.Now().Add(time.Hour), int64(1), int64(2))
		if err != nil || !slices.Equal(moved, []any{int64(2)}) {
			t.Fatalf("Reschedule = %v, %v; want [2] (1 is running)", moved, err)
		}
		if r := e.report("search_odd_numbers"); r.Scheduled != 1 || r.Pending != 1 || r.Running != 1 {
			t.Errorf("after a move an hour ahead: %+v, want 1 scheduled, 1 pending, 1 running", r)
		}
		if _, err := e.client.Reschedule(ctx, "search_odd_numbers", time.Now().Add(-time.Hour), int64(2)); err != nil {
			t.Fatal(err)
		}
		if r := e.report("search_odd_numbers"); r.Scheduled != 0 || r.Pending != 2 {
			t.Errorf("after a move to the past: %+v, want 0 scheduled, 2 pending", r)
		}
	})
	e := newEnv(t, DriverSQLite, 1)
	_, err := e.client.Reschedule(context.Background(), "search_odd_numbers", time.Now(), int64(1))
	wantConfigError(t, err, "search_odd_numbers", "field_run_at", "")
}

// With field_run_at, a failed try's backoff is its next try's run-at: the
// relaunch pass makes the task scheduled at once, and it runs again 1 s ±
// 20% after the failure, not at the pass's cadence.
func TestRetryBackoffAsRunAt(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := scheduledJob()
		job.MaxTryTimes, job.RetryBackoff, job.RetryBackoffMax = 2, time.Second, time.Minute
		var failedAt time.Time
		var again time.Duration
		job.Process = func(ctx context.Context, t *Task) error {
			if t.Try() == 1 {
				failedAt = time.Now()
				return errors.New("first try fails")
			}
			again = time.Since(failedAt)
			return nil
		}
		e := newEnv(t, driver, 1, job)
		e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		e.waitState(5*time.Second, "the first try failed and rescheduled", job.Name, func() bool {
			return e.report(job.Name).Scheduled == 1
		})
		if r := e.waitJob(job.Name, 1, 10*time.Second); r.Completed != 1 {
			t.Fatalf("report %+v, want the second try to succeed", r)
		}
		if again < 790*time.Millisecond || again > 1700*time.Millisecond {
			t.Errorf("second try started %s after the failure, want 1 s ± 20%% plus the hand-off", again)
		}
	})
}
