package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// statesJob makes a job of 15 rows (tries: 2) with rows in every state:
// 1, 2 succeeded (w1); 3 failed for good and 4 failed with a try left,
// with errors holding %, _ and \; 5, 6 reserved (w3); 7 running (w4);
// 8 out of tries but never started, 9 handed back, 10..14 never tried
// (pending); 15 started with no worker, which no engine step writes (no
// state). It returns each key's state.
func statesJob(t *testing.T, s *Store) (*JobSQL, map[int64]string) {
	t.Helper()
	j := newJob(t, s, "tasks", 15, 2)
	finishTask(t, j, startTask(t, j, "w1", 1), Outcome{Success: true})
	finishTask(t, j, startTask(t, j, "w1", 2), Outcome{Success: true})
	mustExec(t, s, `UPDATE tasks SET rtimes = 1 WHERE id = 3`)
	finishTask(t, j, startTask(t, j, "w2", 3), Outcome{Error: "Disk 100% Full_now"})
	finishTask(t, j, startTask(t, j, "w2", 4), Outcome{Error: `disk 100X fullXnow in C:\Tmp`})
	reserveKeys(t, j, "w3", 5, 6)
	startTask(t, j, "w4", 7)
	mustExec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 8`)
	reserveKeys(t, j, "w5", 9)
	if _, err := j.HandBack(t.Context(), s.DB, "w5"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, `UPDATE tasks SET started = `+s.Dialect.Now()+` WHERE id = 15`)
	want := map[int64]string{1: TaskSucceeded, 2: TaskSucceeded, 3: TaskFailed, 4: TaskRetrying, 5: TaskReserved, 6: TaskReserved,
		7: TaskRunning, 15: ""}
	for k := int64(8); k <= 14; k++ {
		want[k] = TaskPending
	}
	return j, want
}

// listTasks lists tasks, failing the test on an error.
func listTasks(t *testing.T, j *JobSQL, q TaskQuery) []TaskRow {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 1000
	}
	rows, err := j.Tasks(t.Context(), j.s.DB, q)
	if err != nil {
		t.Fatalf("Tasks(%+v): %v", q, err)
	}
	return rows
}

func keysOf(t *testing.T, rows []TaskRow) []int64 {
	t.Helper()
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = toInt(t, r.Key)
	}
	return out
}

// Each state filter returns exactly the rows in that state, in key order,
// and every listed row carries the state its filter names.
func TestTasksByState(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j, want := statesJob(t, s)
		all := listTasks(t, j, TaskQuery{})
		if got := keysOf(t, all); len(got) != 15 || !slices.IsSorted(got) {
			t.Fatalf("all tasks: keys %v, want 1..15 in order", got)
		}
		for _, r := range all {
			if k := toInt(t, r.Key); r.State != want[k] {
				t.Errorf("task %d: state %q, want %q", k, r.State, want[k])
			}
		}
		for _, state := range taskStates {
			var wantKeys []int64
			for k := int64(1); k <= 15; k++ {
				if want[k] == state {
					wantKeys = append(wantKeys, k)
				}
			}
			rows := listTasks(t, j, TaskQuery{State: state})
			if got := keysOf(t, rows); !slices.Equal(got, wantKeys) {
				t.Errorf("state %s: keys %v, want %v", state, got, wantKeys)
			}
			for _, r := range rows {
				if r.State != state {
					t.Errorf("state %s lists task %v as %q", state, r.Key, r.State)
				}
			}
		}
		if _, err := j.Tasks(t.Context(), s.DB, TaskQuery{State: "Failed", Limit: 5}); err == nil || !strings.Contains(err.Error(), `"Failed"`) {
			t.Errorf("state Failed: %v, want an error naming it", err)
		}
	})
}

// A task's tracking columns come back as Go values: worker, tries, times
// (from the database clock) and error.
func TestTasksTrackingColumns(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j, _ := statesJob(t, s)
		rows := listTasks(t, j, TaskQuery{})
		recent := func(tm *time.Time) bool { return tm != nil && time.Since(*tm).Abs() < 10*time.Minute }
		failed, running, pending := rows[2], rows[6], rows[9]
		if failed.Worker != "w2" || failed.Tries != 2 || failed.Error != "Disk 100% Full_now" ||
			!recent(failed.ReservedAt) || !recent(failed.StartedAt) || !recent(failed.EndedAt) {
			t.Errorf("failed task 3 = %+v", failed)
		}
		if running.Worker != "w4" || running.Tries != 1 || running.Error != "" || !recent(running.StartedAt) || running.EndedAt != nil {
			t.Errorf("running task 7 = %+v", running)
		}
		if pending.Worker != "" || pending.Tries != 0 || pending.ReservedAt != nil || pending.StartedAt != nil {
			t.Errorf("handed-back task 10 = %+v", pending)
		}
	})
}

// Worker, key and error text filters, alone and with a state; the error
// text is matched case-insensitively, its %, _ and \ as themselves.
func TestTasksFilters(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j, _ := statesJob(t, s)
		for _, c := range []struct {
			q    TaskQuery
			want []int64
		}{
			{TaskQuery{Worker: "w3"}, []int64{5, 6}},
			{TaskQuery{Worker: "w1"}, []int64{1, 2}},
			{TaskQuery{Worker: "w3", State: TaskReserved}, []int64{5, 6}},
			{TaskQuery{Worker: "w3", State: TaskRunning}, nil},
			{TaskQuery{Worker: "w"}, nil},
			{TaskQuery{Key: int64(7)}, []int64{7}},
			{TaskQuery{Key: int64(7), State: TaskPending}, nil},
			{TaskQuery{Key: int64(99)}, nil},
			{TaskQuery{ErrorContains: "100% FULL_"}, []int64{3}},
			{TaskQuery{ErrorContains: "100_"}, nil},
			{TaskQuery{ErrorContains: "disk 100"}, []int64{3, 4}},
			{TaskQuery{ErrorContains: `c:\tMP`}, []int64{4}},
			{TaskQuery{ErrorContains: `:\`}, []int64{4}},
			{TaskQuery{ErrorContains: "disk", State: TaskRetrying}, []int64{4}},
			{TaskQuery{ErrorContains: "disk", After: int64(3)}, []int64{4}},
		} {
			if got := keysOf(t, listTasks(t, j, c.q)); !slices.Equal(got, c.want) {
				t.Errorf("Tasks(%+v) = %v, want %v", c.q, got, c.want)
			}
		}
	})
}

// Paging by key walks every row once, in the key column's order: numeric
// for integers (9 before 10), the text's for text.
func TestTasksPaging(t *testing.T) {
	t.Parallel()
	walk := func(t *testing.T, j *JobSQL, q TaskQuery) []string {
		t.Helper()
		var seen []string
		for pages := 0; ; pages++ {
			rows := listTasks(t, j, q)
			for _, r := range rows {
				seen = append(seen, fmt.Sprint(r.Key))
			}
			if len(rows) < q.Limit || pages > 100 {
				return seen
			}
			q.After = rows[len(rows)-1].Key
		}
	}
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 25, 3)
		reserveKeys(t, j, "w1", 3, 11, 20)
		var all, pending []string
		for k := 1; k <= 25; k++ {
			all = append(all, fmt.Sprint(k))
			if k != 3 && k != 11 && k != 20 {
				pending = append(pending, fmt.Sprint(k))
			}
		}
		for _, limit := range []int{1, 4, 9, 25, 26} {
			if got := walk(t, j, TaskQuery{Limit: limit}); !slices.Equal(got, all) {
				t.Errorf("pages of %d: %v, want %v", limit, got, all)
			}
		}
		if got := walk(t, j, TaskQuery{State: TaskPending, Limit: 4}); !slices.Equal(got, pending) {
			t.Errorf("pending pages of 4: %v, want %v", got, pending)
		}
		after, err := j.KeyArg(t.Context(), "9")
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(t, listTasks(t, j, TaskQuery{After: after, Limit: 2})); !slices.Equal(got, []int64{10, 11}) {
			t.Errorf("after \"9\": %v, want [10 11]", got)
		}

		tj := newTextJob(t, s, "texts", "k1", "k2", "k9", "k10", "k11", "k20", "a")
		want := []string{"a", "k1", "k10", "k11", "k2", "k20", "k9"}
		for _, limit := range []int{1, 2, 3, 7} {
			if got := walk(t, tj, TaskQuery{Limit: limit}); !slices.Equal(got, want) {
				t.Errorf("text keys, pages of %d: %v, want %v", limit, got, want)
			}
		}
	})
}

// newTextJob makes a job over a table with a text key, one row per key.
func newTextJob(t *testing.T, s *Store, table string, keys ...string) *JobSQL {
	t.Helper()
	ty := s.Dialect.Types()
	mustExec(t, s, fmt.Sprintf(`CREATE TABLE %s (id %s PRIMARY KEY, rid %s, rtime %s, rtimes %s, started %s, ended %s, ok %s, why %s)`,
		Quote(table), ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text))
	for _, k := range keys {
		mustExec(t, s, `INSERT INTO `+Quote(table)+` (id) VALUES (?)`, k)
	}
	return s.Job(JobSpec{Table: ParseIdent(table), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
		StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
}

// A key given as text is compared as the key column's type.
func TestKeyArg(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ints := newJob(t, s, "tasks", 3, 3)
		texts := newTextJob(t, s, "texts", "007", "7")
		for _, c := range []struct {
			j    *JobSQL
			text string
			want any
		}{
			{ints, "7", int64(7)}, {ints, "007", int64(7)}, {ints, "-3", int64(-3)},
			{texts, "007", "007"}, {texts, "7", "7"}, {texts, "x y", "x y"},
		} {
			if got, err := c.j.KeyArg(ctx, c.text); err != nil || got != c.want {
				t.Errorf("%s: KeyArg(%q) = %#v, %v; want %#v", c.j.spec.Table, c.text, got, err, c.want)
			}
		}
		if _, err := ints.KeyArg(ctx, "7a"); err == nil || !strings.Contains(err.Error(), `"7a" is not an integer (column id is `) {
			t.Errorf("KeyArg(7a) on an integer key: %v", err)
		}
		k, _ := texts.KeyArg(ctx, "007")
		if d, ok, err := texts.Task(ctx, s.DB, k); err != nil || !ok || d.Key != "007" {
			t.Errorf("Task(\"007\") of a text key = %+v, %v, %v", d, ok, err)
		}
	})
}

// On SQLite a key column declared with no type takes keys as they read:
// integers as integers, anything else as text.
func TestKeyArgUntypedSQLite(t *testing.T) {
	t.Parallel()
	s := openStore(t, "sqlite")
	mustExec(t, s, `CREATE TABLE raw (id PRIMARY KEY, rid TEXT, rtime TIMESTAMP, rtimes INTEGER, started TIMESTAMP, ended TIMESTAMP, ok BOOLEAN, why TEXT)`)
	mustExec(t, s, `INSERT INTO raw (id) VALUES (7), ('x')`)
	j := s.Job(JobSpec{Table: ParseIdent("raw"), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
		StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
	for _, text := range []string{"7", "x"} {
		k, err := j.KeyArg(t.Context(), text)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := j.Task(t.Context(), s.DB, k); err != nil || !ok {
			t.Errorf("Task(%q) = %v, %v; want found", text, ok, err)
		}
	}
}

// Task reads one row with its other columns, in table order (a column
// added since included), NULL as nil; a missing key is not found.
func TestTaskDetail(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j, _ := statesJob(t, s)
		// Read once before the table gains a column, as a dashboard would.
		if d, ok, err := j.Task(ctx, s.DB, int64(7)); err != nil || !ok || len(d.Other.Columns) != 1 {
			t.Fatalf("Task(7) before ALTER = %+v, %v, %v", d, ok, err)
		}
		mustExec(t, s, `ALTER TABLE tasks ADD COLUMN note `+s.Dialect.Types().Text)
		mustExec(t, s, `UPDATE tasks SET note = 'n7' WHERE id = 7`)
		mustExec(t, s, `UPDATE tasks SET payload = NULL WHERE id = 8`)
		d, ok, err := j.Task(ctx, s.DB, int64(7))
		if err != nil || !ok {
			t.Fatalf("Task(7) = %v, %v", ok, err)
		}
		if toInt(t, d.Key) != 7 || d.State != TaskRunning || d.Worker != "w4" || d.Tries != 1 ||
			!slices.Equal(d.Other.Columns, []string{"payload", "note"}) || fmt.Sprint(d.Other.Values) != "[p7 n7]" {
			t.Errorf("Task(7) = %+v", d)
		}
		if d, _, _ := j.Task(ctx, s.DB, int64(8)); d.State != TaskPending || d.Other.Values[0] != nil || d.Other.Values[1] != nil {
			t.Errorf("Task(8) = %+v, want pending with NULL payload and note", d)
		}
		if _, ok, err := j.Task(ctx, s.DB, int64(99)); ok || err != nil {
			t.Errorf("Task(99) = %v, %v; want not found", ok, err)
		}
	})
}

// timeOf reads the times either driver gives, and text a TEXT column holds.
func TestTimeOf(t *testing.T) {
	t.Parallel()
	want := time.Date(2024, 5, 1, 12, 30, 5, 123_000_000, time.UTC)
	for _, v := range []any{want, "2024-05-01 12:30:05.123", []byte("2024-05-01T12:30:05.123Z"), "2024-05-01T12:30:05.123"} {
		if got, err := timeOf(v); err != nil || got == nil || !got.Equal(want) {
			t.Errorf("timeOf(%v) = %v, %v; want %v", v, got, err, want)
		}
	}
	if got, err := timeOf(nil); got != nil || err != nil {
		t.Errorf("timeOf(nil) = %v, %v", got, err)
	}
	if _, err := timeOf("yesterday"); err == nil || !strings.Contains(err.Error(), "yesterday") {
		t.Errorf("timeOf(yesterday) = %v, want an error naming it", err)
	}
}

// withCreatedAt adds a created-at column (NULL everywhere) to j's table
// and returns the job with it, and its indexes made.
func withCreatedAt(t *testing.T, j *JobSQL) *JobSQL {
	t.Helper()
	mustExec(t, j.s, `ALTER TABLE `+j.t+` ADD COLUMN created `+j.s.Dialect.Types().Time)
	spec := j.Spec()
	spec.CreatedAt = "created"
	j = j.s.Job(spec)
	for _, ix := range j.Indexes(spec.Table.Name) {
		mustExec(t, j.s, ix.DDL)
	}
	return j
}

// OldestPending is the age of the earliest created-at among rows neither
// reserved nor started; nil without the column or with nothing pending.
func TestOldestPending(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		plain, _ := statesJob(t, s)
		if age, err := plain.OldestPending(ctx, s.DB); age != nil || err != nil {
			t.Errorf("OldestPending without the column = %v, %v; want nil", age, err)
		}
		j := withCreatedAt(t, plain)
		if age, err := j.OldestPending(ctx, s.DB); age != nil || err != nil {
			t.Errorf("OldestPending with every created-at NULL = %v, %v; want nil", age, err)
		}
		ago := func(d time.Duration, ids string) {
			mustExec(t, s, `UPDATE tasks SET created = `+s.Dialect.Ago()+` WHERE id IN (`+ids+`)`, s.Dialect.AgoArg(d))
		}
		ago(3*time.Hour, "1, 4, 5, 7") // succeeded, retrying, reserved, running: not pending
		ago(time.Hour, "9")            // handed back: pending
		ago(time.Minute, "10, 11")
		age, err := j.OldestPending(ctx, s.DB)
		if err != nil || age == nil || *age < 3590 || *age > 3700 {
			t.Errorf("OldestPending = %v, %v; want about 3600", age, err)
		}
		mustExec(t, s, `UPDATE tasks SET rid = 'w9' WHERE rid IS NULL AND started IS NULL`)
		if age, err := j.OldestPending(ctx, s.DB); age != nil || err != nil {
			t.Errorf("OldestPending with nothing pending = %v, %v; want nil", *age, err)
		}
	})
}

// On a mostly-done table, each state's list reads that state's partial
// index, the rest walks the primary key in order (no sort: LIMIT stops
// it), a key is looked up, and the oldest pending row is found through
// the created-at index. The figures agree with the report's counts.
func TestTasksPlans(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j, counts := bigJob(t, s)
		j = withCreatedAt(t, j)
		if err := j.PinIndexes(t.Context(), "tasks"); err != nil {
			t.Fatal(err)
		}
		analyzeTable(t, s, j.t)
		index := func(suffix string) string { return indexBase("tasks") + "_" + suffix }
		for _, c := range []struct {
			q     TaskQuery
			index string
		}{
			{TaskQuery{State: TaskPending}, index("pending")},
			{TaskQuery{State: TaskPending, After: int64(19900)}, index("pending")},
			{TaskQuery{State: TaskReserved}, index("inflight")},
			{TaskQuery{State: TaskRunning, Worker: "w2"}, index("inflight")},
			{TaskQuery{State: TaskRetrying}, index("failed")},
			{TaskQuery{State: TaskFailed, ErrorContains: "x"}, index("failed")},
			{TaskQuery{State: TaskSucceeded, After: int64(100)}, ""},
			{TaskQuery{}, ""},
			{TaskQuery{Key: int64(19808)}, ""},
		} {
			c.q.Limit = 50
			query, args, err := j.tasksSQL(c.q)
			if err != nil {
				t.Fatal(err)
			}
			plan := explain(t, s, query, args...)
			switch {
			case strings.Contains(plan, "Seq Scan"):
				t.Errorf("%+v reads the table:\n%s", c.q, plan)
			case c.index != "" && !strings.Contains(plan, c.index):
				t.Errorf("%+v does not read %s:\n%s", c.q, c.index, plan)
			case c.index == "" && (strings.Contains(plan, "Sort") || strings.Contains(plan, "TEMP B-TREE")):
				t.Errorf("%+v does not walk the key in order:\n%s", c.q, plan)
			}
		}
		if plan := explain(t, s, j.oldestPendingSQL()); !strings.Contains(plan, index("created")) || strings.Contains(plan, "Seq Scan") {
			t.Errorf("oldest pending does not read %s:\n%s", index("created"), plan)
		}
		got := map[string]int64{}
		for _, st := range taskStates {
			got[st] = int64(len(listTasks(t, j, TaskQuery{State: st, Limit: 20_000})))
		}
		if got[TaskReserved] != counts.Reserved || got[TaskRunning] != counts.Running || got[TaskFailed] != counts.Failed ||
			got[TaskSucceeded] != counts.Succeeded || got[TaskPending]+got[TaskRetrying] != counts.Pending() {
			t.Errorf("tasks by state %v disagree with the counts %+v (pending %d)", got, counts, counts.Pending())
		}
	})
}
