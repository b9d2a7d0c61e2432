package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// newJob creates a tasks table with rows 1..n (payload "p<i>") and returns
// the statements of a job over it.
func newJob(t *testing.T, s *Store, table string, n, maxTry int) *JobSQL {
	t.Helper()
	ty := s.Dialect.Types()
	mustExec(t, s, fmt.Sprintf(`CREATE TABLE %s (
		id %s PRIMARY KEY, payload %s, rid %s, rtime %s, rtimes %s,
		started %s, ended %s, ok %s, why %s)`,
		Quote(table), ty.Int, ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text))
	for lo := 1; lo <= n; lo += 100 {
		hi := min(lo+99, n)
		var vals []string
		var args []any
		for i := lo; i <= hi; i++ {
			vals = append(vals, "(?, ?)")
			args = append(args, i, fmt.Sprintf("p%d", i))
		}
		mustExec(t, s, `INSERT INTO `+Quote(table)+` (id, payload) VALUES `+strings.Join(vals, ", "), args...)
	}
	return s.Job(JobSpec{
		Table: ParseIdent(table), PrimaryKey: "id",
		ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes", StartTime: "started", EndTime: "ended",
		Success: "ok", ErrorDescription: "why", MaxTryTimes: maxTry,
	})
}

// task is a row's tracking state.
type task struct {
	Payload  sql.NullString
	RID      sql.NullString
	HasRTime bool
	RTimes   sql.NullInt64
	Started  bool
	Ended    bool
	OK       sql.NullBool
	Why      sql.NullString
}

func getTask(t *testing.T, j *JobSQL, id int64) task {
	t.Helper()
	var r task
	err := j.s.DB.QueryRowContext(context.Background(), j.s.q(`SELECT payload, rid, rtime IS NOT NULL, rtimes,
		started IS NOT NULL, ended IS NOT NULL, ok, why FROM `+j.t+` WHERE id = ?`), id).
		Scan(&r.Payload, &r.RID, &r.HasRTime, &r.RTimes, &r.Started, &r.Ended, &r.OK, &r.Why)
	if err != nil {
		t.Fatalf("read task %d: %v", id, err)
	}
	return r
}

// snapshot is a row with every column as text, timestamps to the database's
// precision: equal snapshots mean an untouched row.
func snapshot(t *testing.T, j *JobSQL, id int64) []sql.NullString {
	t.Helper()
	cols := []string{"payload", "rid", "rtime", "rtimes", "started", "ended", "ok", "why"}
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "CAST(" + c + " AS TEXT)"
	}
	out := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range out {
		ptrs[i] = &out[i]
	}
	err := j.s.DB.QueryRowContext(context.Background(),
		j.s.q(`SELECT `+strings.Join(exprs, ", ")+` FROM `+j.t+` WHERE id = ?`), id).Scan(ptrs...)
	if err != nil {
		t.Fatalf("snapshot of task %d: %v", id, err)
	}
	return out
}

// setAgo sets a timestamp column of some rows to d before the database's now.
func setAgo(t *testing.T, j *JobSQL, col string, d time.Duration, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if n := mustExec(t, j.s, `UPDATE `+j.t+` SET `+Quote(col)+` = `+j.s.Dialect.Ago()+` WHERE id = ?`,
			j.s.Dialect.AgoArg(d), id); n != 1 {
			t.Fatalf("set %s of task %d: %d rows", col, id, n)
		}
	}
}

func reserveN(t *testing.T, j *JobSQL, worker string, n int) []int64 {
	t.Helper()
	keys, err := j.Reserve(context.Background(), j.s.DB, worker, n)
	if err != nil {
		t.Fatalf("Reserve(%s, %d): %v", worker, n, err)
	}
	return sortedInts(t, keys)
}

func reserveKeys(t *testing.T, j *JobSQL, worker string, ids ...int64) []int64 {
	t.Helper()
	keys, err := j.ReserveKeys(context.Background(), j.s.DB, worker, int64s(ids))
	if err != nil {
		t.Fatalf("ReserveKeys(%s, %v): %v", worker, ids, err)
	}
	return sortedInts(t, keys)
}

func claimRows(t *testing.T, j *JobSQL, worker string, n int) []Row {
	t.Helper()
	rows, err := j.Claim(context.Background(), j.s.DB, worker, n)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", worker, n, err)
	}
	return rows
}

// start reserves and claims one row for worker and returns its fence.
func startTask(t *testing.T, j *JobSQL, worker string, id int64) Fence {
	t.Helper()
	if got := reserveKeys(t, j, worker, id); !slices.Equal(got, []int64{id}) {
		t.Fatalf("reserve task %d for %s: got %v", id, worker, got)
	}
	var try int64
	for _, r := range claimRows(t, j, worker, 1000) {
		if k, _ := r.Get("id"); toInt(t, k) == id {
			v, _ := r.Get("rtimes")
			try = toInt(t, v)
		}
	}
	if try == 0 {
		t.Fatalf("task %d not claimed by %s", id, worker)
	}
	return Fence{Key: id, Worker: worker, Try: try}
}

func finishTask(t *testing.T, j *JobSQL, f Fence, o Outcome) bool {
	t.Helper()
	applied, err := j.Finish(context.Background(), j.s.DB, f, o)
	if err != nil {
		t.Fatalf("Finish(%+v): %v", f, err)
	}
	return applied
}

func int64s(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

func toInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	}
	t.Fatalf("value %v has type %T, want an integer", v, v)
	return 0
}

func wantKeys(t *testing.T, what string, got []int64, want ...int64) {
	t.Helper()
	if want == nil {
		want = []int64{}
	}
	if got == nil {
		got = []int64{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestReserve(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 10, 3)
		// Row 2 used all its tries; row 4 is already someone's.
		mustExec(t, s, `UPDATE tasks SET rtimes = 3 WHERE id = 2`)
		wantKeys(t, "ReserveKeys(w0, 4)", reserveKeys(t, j, "w0", 4), 4)

		wantKeys(t, "Reserve(w1, 3)", reserveN(t, j, "w1", 3), 1, 3, 5)
		for _, id := range []int64{1, 3, 5} {
			r := getTask(t, j, id)
			if r.RID.String != "w1" || !r.HasRTime || r.Started || r.RTimes.Valid {
				t.Fatalf("task %d after Reserve = %+v, want rid w1, rtime set, not started, no try", id, r)
			}
		}
		if r := getTask(t, j, 2); r.RID.Valid || r.HasRTime {
			t.Fatalf("tried-out task 2 was reserved: %+v", r)
		}
		if r := getTask(t, j, 4); r.RID.String != "w0" {
			t.Fatalf("task 4 moved from w0: %+v", r)
		}
		wantKeys(t, "Reserve(w2, 3)", reserveN(t, j, "w2", 3), 6, 7, 8)
		wantKeys(t, "Reserve(w3, 10)", reserveN(t, j, "w3", 10), 9, 10)
		wantKeys(t, "Reserve with nothing pending", reserveN(t, j, "w4", 10))
		// A row tried fewer than MaxTryTimes times is pending again.
		mustExec(t, s, `UPDATE tasks SET rtimes = 2, rid = NULL, rtime = NULL WHERE id = 7`)
		wantKeys(t, "Reserve of a row with a try left", reserveN(t, j, "w4", 10), 7)
	})
}

func TestReserveKeys(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 5, 3)
		wantKeys(t, "ReserveKeys(w1, 1, 2)", reserveKeys(t, j, "w1", 1, 2), 1, 2)
		wantKeys(t, "ReserveKeys(w2, 2, 3, 99)", reserveKeys(t, j, "w2", 2, 3, 99), 3)
		if r := getTask(t, j, 2); r.RID.String != "w1" {
			t.Fatalf("task 2 = %+v, want still w1's", r)
		}
		if r := getTask(t, j, 3); r.RID.String != "w2" || !r.HasRTime {
			t.Fatalf("task 3 = %+v, want w2's with rtime", r)
		}
		keys, err := j.ReserveKeys(t.Context(), s.DB, "w1", nil)
		if err != nil || len(keys) != 0 {
			t.Fatalf("ReserveKeys(no keys) = %v, %v", keys, err)
		}
	})
}

// TestReserveConcurrently races dispatchers reserving for different workers:
// no row may be reserved twice (invariant 1), and none may be left behind.
func TestReserveConcurrently(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		// A few rounds: a double reservation needs two statements to
		// overlap, which one round may not happen to produce.
		for round := range 3 {
			raceReserve(t, s, fmt.Sprintf("tasks%d", round))
		}
	})
}

func raceReserve(t *testing.T, s *Store, table string) {
	t.Helper()
	const rows, goroutines, batch = 300, 6, 7
	j := newJob(t, s, table, rows, 3)
	got := make([][]int64, goroutines)
	errs := make([]error, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		worker := fmt.Sprintf("w%d", g)
		wg.Go(func() {
			<-start
			for {
				var keys []any
				err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
					var err error
					keys, err = j.Reserve(ctx, tx, worker, batch)
					return err
				})
				if err != nil {
					errs[g] = err
					return
				}
				if len(keys) == 0 {
					return
				}
				if len(keys) > batch {
					errs[g] = fmt.Errorf("Reserve(%d) took %d rows", batch, len(keys))
					return
				}
				for _, k := range keys {
					got[g] = append(got[g], k.(int64))
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Errorf("%s: goroutine %d: Reserve: %v", table, g, err)
		}
	}
	owner := map[int64]int{}
	for g, keys := range got {
		for _, k := range keys {
			if prev, dup := owner[k]; dup {
				t.Fatalf("%s: task %d reserved by goroutine %d and goroutine %d", table, k, prev, g)
			}
			owner[k] = g
		}
	}
	if len(owner) != rows {
		t.Fatalf("%s: %d tasks reserved, want all %d", table, len(owner), rows)
	}
	// The table agrees with what each reserve returned.
	res, err := s.DB.QueryContext(t.Context(), `SELECT id, rid FROM `+Quote(table))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for res.Next() {
		var id int64
		var rid sql.NullString
		if err := res.Scan(&id, &rid); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("w%d", owner[id]); rid.String != want {
			t.Fatalf("%s: task %d has rid %q, but Reserve returned it to %s", table, id, rid.String, want)
		}
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 8, 3)
		wantKeys(t, "reserve w1", reserveKeys(t, j, "w1", 3, 4, 5), 3, 4, 5)
		wantKeys(t, "reserve w2", reserveKeys(t, j, "w2", 6), 6)
		// Reservation order differs from key order: 5, then 3, then 4.
		setAgo(t, j, "rtime", 3*time.Second, 5)
		setAgo(t, j, "rtime", 2*time.Second, 3)
		setAgo(t, j, "rtime", 1*time.Second, 4)
		// Leftovers of an earlier failed try are cleared by the claim.
		mustExec(t, s, `UPDATE tasks SET ok = FALSE, why = 'old' WHERE id = 3`)

		rows := claimRows(t, j, "w1", 2)
		var ids []int64
		for _, r := range rows {
			k, ok := r.Get("id")
			if !ok {
				t.Fatalf("claimed row has no id column: %v", r.Columns)
			}
			id := toInt(t, k)
			ids = append(ids, id)
			if p, _ := r.Get("payload"); fmt.Sprint(p) != fmt.Sprintf("p%d", id) {
				t.Fatalf("row %d payload = %v", id, p)
			}
			if n, _ := r.Get("rtimes"); toInt(t, n) != 1 {
				t.Fatalf("row %d rtimes = %v, want 1", id, n)
			}
			if w, _ := r.Get("rid"); fmt.Sprint(w) != "w1" {
				t.Fatalf("row %d rid = %v", id, w)
			}
			if st, _ := r.Get("started"); st == nil {
				t.Fatalf("row %d started is NULL in the returned row", id)
			}
			if _, ok := r.Get("no_such_column"); ok {
				t.Fatal("Get found a column that does not exist")
			}
			if len(r.Columns) != 9 {
				t.Fatalf("row has columns %v, want all 9", r.Columns)
			}
		}
		slices.Sort(ids)
		wantKeys(t, "Claim(w1, 2), oldest reservations", ids, 3, 5)
		for _, id := range []int64{3, 5} {
			r := getTask(t, j, id)
			if !r.Started || r.Ended || r.RTimes.Int64 != 1 || r.OK.Valid {
				t.Fatalf("task %d after Claim = %+v", id, r)
			}
		}
		// Only unstarted rows of w1 remain to claim.
		rows = claimRows(t, j, "w1", 10)
		if len(rows) != 1 {
			t.Fatalf("second Claim(w1) returned %d rows, want 1", len(rows))
		}
		if k, _ := rows[0].Get("id"); toInt(t, k) != 4 {
			t.Fatalf("second Claim(w1) took %v, want 4", k)
		}
		if rows := claimRows(t, j, "w1", 10); len(rows) != 0 {
			t.Fatalf("third Claim(w1) returned %d rows, want none", len(rows))
		}
		if r := getTask(t, j, 6); r.Started {
			t.Fatal("Claim(w1) started w2's task")
		}
		if r := getTask(t, j, 1); r.Started || r.RID.Valid {
			t.Fatal("Claim started an unreserved task")
		}
		if rows := claimRows(t, j, "w9", 10); len(rows) != 0 {
			t.Fatalf("Claim for a worker without reservations returned %d rows", len(rows))
		}
	})
}

func TestFinish(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 4, 3)

		f := startTask(t, j, "w1", 1)
		if f.Try != 1 {
			t.Fatalf("first try = %d, want 1", f.Try)
		}
		before := snapshot(t, j, 1)
		for _, bad := range []Fence{
			{Key: f.Key, Worker: "w2", Try: f.Try},
			{Key: f.Key, Worker: f.Worker, Try: f.Try + 1},
			{Key: f.Key, Worker: f.Worker, Try: 0},
			{Key: int64(2), Worker: f.Worker, Try: f.Try},
		} {
			if finishTask(t, j, bad, Outcome{Success: true, Set: map[string]any{"payload": "stolen"}}) {
				t.Fatalf("Finish with fence %+v applied", bad)
			}
		}
		if after := snapshot(t, j, 1); !slices.Equal(before, after) {
			t.Fatalf("a refused Finish changed the row: %v → %v", before, after)
		}

		if !finishTask(t, j, f, Outcome{Success: true, Set: map[string]any{"payload": "done"}}) {
			t.Fatal("Finish with the right fence not applied")
		}
		r := getTask(t, j, 1)
		if !r.Ended || !r.OK.Valid || !r.OK.Bool || r.Why.Valid || r.Payload.String != "done" || r.RID.String != "w1" {
			t.Fatalf("task 1 after success = %+v", r)
		}
		done := snapshot(t, j, 1)
		if finishTask(t, j, f, Outcome{Success: false, Error: "again"}) {
			t.Fatal("second Finish of the same try applied")
		}
		if after := snapshot(t, j, 1); !slices.Equal(done, after) {
			t.Fatalf("second Finish changed the row: %v → %v", done, after)
		}

		// Failure stores the error; the next successful try clears it.
		f = startTask(t, j, "w1", 2)
		if !finishTask(t, j, f, Outcome{Success: false, Error: "boom: it broke"}) {
			t.Fatal("failing Finish not applied")
		}
		r = getTask(t, j, 2)
		if !r.Ended || !r.OK.Valid || r.OK.Bool || r.Why.String != "boom: it broke" {
			t.Fatalf("task 2 after failure = %+v", r)
		}
		setAgo(t, j, "ended", time.Hour, 2)
		relaunched, err := j.RelaunchFailed(t.Context(), s.DB, Backoff{Base: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchFailed", sortedInts(t, relaunched), 2)
		f = startTask(t, j, "w1", 2)
		if f.Try != 2 {
			t.Fatalf("second try = %d, want 2", f.Try)
		}
		if !finishTask(t, j, f, Outcome{Success: true}) {
			t.Fatal("Finish of the second try not applied")
		}
		if r := getTask(t, j, 2); !r.OK.Bool || r.Why.Valid || r.RTimes.Int64 != 2 {
			t.Fatalf("task 2 after a successful retry = %+v, want ok, why cleared, 2 tries", r)
		}

		// Several user columns in one statement, error text with quotes.
		f = startTask(t, j, "w1", 3)
		if !finishTask(t, j, f, Outcome{Success: false, Error: `it's "bad"`, Set: map[string]any{"payload": "partial", "rtime": nil}}) {
			t.Fatal("Finish with Set not applied")
		}
		if r := getTask(t, j, 3); r.Payload.String != "partial" || r.HasRTime || r.Why.String != `it's "bad"` {
			t.Fatalf("task 3 after Finish with Set = %+v", r)
		}
	})
}

// TestFinishFencedAfterHandOn checks invariant 2: once a try has been handed
// on, its worker's late result is dropped and the row left as it is.
func TestFinishFencedAfterHandOn(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 3, 3)
		late := Outcome{Success: true, Set: map[string]any{"payload": "late"}}
		refused := func(what string, f Fence, id int64) {
			t.Helper()
			before := snapshot(t, j, id)
			if finishTask(t, j, f, late) {
				t.Fatalf("%s: late Finish %+v applied", what, f)
			}
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Fatalf("%s: late Finish changed the row: %v → %v", what, before, after)
			}
		}

		// Handed back before it started: nothing to finish.
		wantKeys(t, "reserve", reserveKeys(t, j, "w1", 1), 1)
		if n, err := j.HandBack(ctx, s.DB, "w1"); err != nil || n != 1 {
			t.Fatalf("HandBack = %d, %v", n, err)
		}
		refused("after HandBack", Fence{Key: int64(1), Worker: "w1", Try: 0}, 1)
		refused("after HandBack", Fence{Key: int64(1), Worker: "w1", Try: 1}, 1)

		// Running, then its worker is declared gone and the try relaunched.
		f := startTask(t, j, "w1", 2)
		released, relaunched, failed, err := j.RecoverWorkers(ctx, s.DB, []string{"w1"}, "worker w1 died")
		if err != nil {
			t.Fatal(err)
		}
		if released != 0 || len(failed) != 0 {
			t.Fatalf("RecoverWorkers released %d, failed %v; want 0, none", released, failed)
		}
		wantKeys(t, "relaunched", sortedInts(t, relaunched), 2)
		refused("after RecoverWorkers", f, 2)

		// Reserved again for the same worker id, not started yet.
		wantKeys(t, "re-reserve", reserveKeys(t, j, "w1", 2), 2)
		refused("after re-reservation to the same worker", f, 2)

		// Started again: the old try stays fenced out, the new one lands.
		rows := claimRows(t, j, "w1", 10)
		if len(rows) != 1 {
			t.Fatalf("claimed %d rows, want task 2", len(rows))
		}
		try, _ := rows[0].Get("rtimes")
		f2 := Fence{Key: int64(2), Worker: "w1", Try: toInt(t, try)}
		if f2.Try != 2 {
			t.Fatalf("new try = %d, want 2", f2.Try)
		}
		refused("after the task started its next try", f, 2)
		if !finishTask(t, j, f2, Outcome{Success: true}) {
			t.Fatal("the current try's Finish not applied")
		}
		if r := getTask(t, j, 2); !r.OK.Bool || r.Payload.String != "p2" {
			t.Fatalf("task 2 = %+v, want succeeded with its payload untouched", r)
		}

		// Expired and taken by another worker.
		f = startTask(t, j, "w1", 3)
		setAgo(t, j, "started", time.Hour, 3)
		if _, _, err := j.RecoverExpired(ctx, s.DB, time.Minute, "expired"); err != nil {
			t.Fatal(err)
		}
		f2 = startTask(t, j, "w2", 3)
		refused("after expiry and a try by another worker", f, 3)
		if !finishTask(t, j, f2, Outcome{Success: true}) {
			t.Fatal("the new worker's Finish not applied")
		}
	})
}

// dbClock reads the database's own clock, independently of the dialect's
// Now expression.
func dbClock(t *testing.T, s *Store) any {
	t.Helper()
	if s.Dialect.Name() == "sqlite" {
		var v string
		if err := s.DB.QueryRowContext(t.Context(), `SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	var v time.Time
	if err := s.DB.QueryRowContext(t.Context(), `SELECT clock_timestamp()`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// betweenClock checks that a timestamp column of a row lies between two
// readings of the database clock, comparing in SQL.
func betweenClock(t *testing.T, j *JobSQL, id int64, col string, lo, hi any) {
	t.Helper()
	var n int
	err := j.s.DB.QueryRowContext(t.Context(), j.s.q(`SELECT COUNT(*) FROM `+j.t+
		` WHERE id = ? AND `+Quote(col)+` >= ? AND `+Quote(col)+` <= ?`), id, lo, hi).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		var v sql.NullString
		_ = j.s.DB.QueryRowContext(t.Context(), j.s.q(`SELECT CAST(`+Quote(col)+` AS TEXT) FROM `+j.t+` WHERE id = ?`), id).Scan(&v)
		t.Fatalf("task %d %s = %v, not between database clock readings %v and %v", id, col, v, lo, hi)
	}
}

// TestTextKeys runs a task's life cycle on a table keyed by text.
func TestTextKeys(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ty := s.Dialect.Types()
		mustExec(t, s, fmt.Sprintf(`CREATE TABLE "Orders" ("Order Ref" %s PRIMARY KEY, "Who" %s, "At" %s,
			"Tries" %s, "Began" %s, "Done" %s, "Ok" %s, "Why" %s)`,
			ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text))
		mustExec(t, s, `INSERT INTO "Orders" ("Order Ref") VALUES ('b-2'), ('a-1'), ('it''s-3')`)
		j := s.Job(JobSpec{Table: ParseIdent("Orders"), PrimaryKey: "Order Ref", ReservationID: "Who", ReservationTime: "At", ReservationTimes: "Tries",
			StartTime: "Began", EndTime: "Done", Success: "Ok", ErrorDescription: "Why", MaxTryTimes: 2})
		keys, err := j.Reserve(ctx, s.DB, "w1", 2)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range keys {
			str, ok := k.(string)
			if !ok {
				t.Fatalf("key %v is %T, want string", k, k)
			}
			got = append(got, str)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"a-1", "b-2"}) {
			t.Fatalf("Reserve = %q, want [a-1 b-2]", got)
		}
		rows, err := j.Claim(ctx, s.DB, "w1", 5)
		if err != nil || len(rows) != 2 {
			t.Fatalf("Claim = %d rows, %v", len(rows), err)
		}
		for _, r := range rows {
			k, _ := r.Get("Order Ref")
			try, _ := r.Get("Tries")
			applied, err := j.Finish(ctx, s.DB, Fence{Key: k, Worker: "w1", Try: toInt(t, try)}, Outcome{Success: true})
			if err != nil || !applied {
				t.Fatalf("Finish(%v) = %v, %v", k, applied, err)
			}
		}
		keys, err = j.ReserveKeys(ctx, s.DB, "w2", []any{"it's-3", "a-1"})
		if err != nil || len(keys) != 1 || keys[0] != "it's-3" {
			t.Fatalf("ReserveKeys = %v, %v; want [it's-3]", keys, err)
		}
		c, err := j.Count(ctx, s.DB)
		if err != nil || c != (Counts{Total: 3, Succeeded: 2, Reserved: 1}) {
			t.Fatalf("Count = %+v, %v", c, err)
		}
	})
}
