package pampa

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// setStates puts numbers 1..n in every state (max_try_times 3): all but the
// last 10 succeeded; then 3 reserved, 2 running, 1 failed for good, 1
// failed with tries left, 3 never tried. It returns the exact report.
func setStates(e *testEnv, n int) JobReport {
	e.t.Helper()
	e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 1,
		odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = TRUE
		WHERE value <= ?`, n-10)
	e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.2' WHERE value > ? AND value <= ?`, n-10, n-5)
	e.exec(`UPDATE numbers SET odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_reservation_times = 1
		WHERE value > ? AND value <= ?`, n-7, n-5)
	e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = ?,
		odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = FALSE
		WHERE value IN (?, ?)`, 3, n-4, n-3)
	e.exec(`UPDATE numbers SET odd_checking_reservation_times = 1 WHERE value = ?`, n-3)
	return JobReport{Job: "search_odd_numbers", Total: int64(n), Completed: int64(n - 10), Pending: 4, Failed: 1, Reserved: 3, Running: 2}
}

// A small table is counted exactly, whether asked for or not.
func TestReportExact(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 50)
		want := setStates(e, 50)
		ctx := context.Background()
		for _, opts := range []ReportOptions{{}, {Exact: true}, {Jobs: []string{"search_odd_numbers"}, Exact: true}} {
			got, err := e.client.ReportWith(ctx, opts)
			if err != nil || len(got) != 1 || got[0] != want {
				t.Errorf("ReportWith(%+v) = %+v, %v; want [%+v]", opts, got, err, want)
			}
		}
		if got := e.report("search_odd_numbers"); got != want {
			t.Errorf("JobReport = %+v, want %+v", got, want)
		}
		if _, err := e.client.ReportWith(ctx, ReportOptions{Jobs: []string{"nope"}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReportWith of an unknown job: %v, want ErrNotFound", err)
		}
	})
}

// TasksHeld counts reserved and running tasks per worker; ended ones, even
// with the worker's id still on them, are not held.
func TestTasksHeld(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 50)
		setStates(e, 50) // local.2: 2 reserved, 3 running; local.1: only ended rows
		held, err := e.client.TasksHeld(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(held) != 1 || held["local.2"] != 5 {
			t.Errorf("TasksHeld = %v, want map[local.2:5]", held)
		}
	})
}

// On PostgreSQL a table the statistics put at the threshold or above gets
// an estimated Total and Completed, the other figures exact; Exact, or
// hooks giving both figures, count instead.
func TestReportEstimatesLargeTables(t *testing.T) {
	t.Parallel()
	const rows = 20_000
	ctx := context.Background()
	newBig := func(t *testing.T, j Job) (*testEnv, JobReport) {
		e := newEnv(t, DriverPostgres, 0, j)
		e.exec(`INSERT INTO numbers (value) SELECT g FROM generate_series(1, ?::int) g`, rows)
		want := setStates(e, rows)
		e.exec(`ANALYZE numbers`)
		return e, want
	}
	t.Run("estimated", func(t *testing.T) {
		t.Parallel()
		e, want := newBig(t, oddJob())
		got, err := e.client.ReportWith(ctx, ReportOptions{estimateMin: 10_000})
		if err != nil || len(got) != 1 {
			t.Fatalf("ReportWith = %+v, %v", got, err)
		}
		r := got[0]
		if !r.Estimated || r.Pending != want.Pending || r.Failed != want.Failed || r.Reserved != want.Reserved || r.Running != want.Running {
			t.Errorf("estimated report = %+v, want Estimated and the unfinished states of %+v", r, want)
		}
		if r.Total < rows*98/100 || r.Total > rows*102/100 || r.Completed != r.Total-10 {
			t.Errorf("estimated Total %d, Completed %d: want within 2%% of %d, and Total less the 10 unfinished", r.Total, r.Completed, rows)
		}
		data, _ := json.Marshal(r)
		if !strings.Contains(string(data), `"estimated":true`) {
			t.Errorf("JSON %s lacks \"estimated\":true", data)
		}
		for _, opts := range []ReportOptions{{Exact: true, estimateMin: 10_000}, {}} { // {}: 20,000 rows are too few
			if got, err := e.client.ReportWith(ctx, opts); err != nil || len(got) != 1 || got[0] != want {
				t.Errorf("ReportWith(%+v) = %+v, %v; want exact [%+v]", opts, got, err, want)
			}
		}
	})
	t.Run("hooks", func(t *testing.T) {
		t.Parallel()
		j := oddJob()
		j.Hooks.TotalSQL, j.Hooks.CompletedSQL = `SELECT 7`, `SELECT 5`
		e, want := newBig(t, j)
		got, err := e.client.ReportWith(ctx, ReportOptions{estimateMin: 10_000})
		want.Total, want.Completed = 7, 5
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("ReportWith = %+v, %v; want [%+v], not estimated: the hooks give both figures", got, err, want)
		}
	})
}

// On SQLite a large table is counted once; the next reports carry the
// count forward by the rows added since, marked estimated, their other
// figures exact; Exact counts again.
func TestReportCarriesSQLiteCountForward(t *testing.T) {
	t.Parallel()
	const rows = 20_000
	ctx := context.Background()
	e := newEnv(t, DriverSQLite, rows)
	want := setStates(e, rows)
	report := func(opts ReportOptions) JobReport {
		t.Helper()
		got, err := e.client.ReportWith(ctx, opts)
		if err != nil || len(got) != 1 {
			t.Fatalf("ReportWith(%+v) = %+v, %v", opts, got, err)
		}
		return got[0]
	}
	if r := report(ReportOptions{estimateMin: 10_000}); r != want {
		t.Errorf("first report = %+v, want counted %+v", r, want)
	}
	e.exec(`INSERT INTO numbers (value) VALUES (?), (?)`, rows+1, rows+2)
	want.Total, want.Pending = rows+2, want.Pending+2
	est := want
	est.Estimated = true
	if r := report(ReportOptions{estimateMin: 10_000}); r != est {
		t.Errorf("second report = %+v, want %+v", r, est)
	}
	if r := report(ReportOptions{Exact: true}); r != want {
		t.Errorf("exact report = %+v, want %+v", r, want)
	}
}
