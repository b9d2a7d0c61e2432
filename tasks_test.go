package pampa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/store"
)

// stateKeys is each key's state in a table that setStates(e, 60) made,
// with errors holding %, _ and mixed case on the failed tries.
func stateKeys(e *testEnv) map[int64]string {
	e.t.Helper()
	setStates(e, 60)
	e.exec(`UPDATE numbers SET odd_checking_error_description = ? WHERE value = 56`, "Quota 100% used_up")
	e.exec(`UPDATE numbers SET odd_checking_error_description = ? WHERE value = 57`, "quota 100x usedXup")
	want := map[int64]string{51: StateReserved, 52: StateReserved, 53: StateReserved, 54: StateRunning, 55: StateRunning,
		56: StateFailed, 57: StateRetrying, 58: StatePending, 59: StatePending, 60: StatePending}
	for k := int64(1); k <= 50; k++ {
		want[k] = StateSucceeded
	}
	return want
}

func infoKeys(t *testing.T, tasks []TaskInfo) []int64 {
	t.Helper()
	out := make([]int64, len(tasks))
	for i, task := range tasks {
		k, ok := task.Key.(int64)
		if !ok {
			t.Fatalf("key %#v is not an int64", task.Key)
		}
		out[i] = k
	}
	return out
}

// Tasks filters by state, worker, key and error text, pages by key
// given as text, and refuses bad filters with errors naming the job and
// the value.
func TestTasksAPI(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 60)
		want := stateKeys(e)
		ctx := context.Background()
		job := "search_odd_numbers"
		list := func(f TaskFilter) []TaskInfo {
			t.Helper()
			tasks, err := e.client.Tasks(ctx, job, f)
			if err != nil {
				t.Fatalf("Tasks(%+v): %v", f, err)
			}
			return tasks
		}
		for _, state := range []string{StatePending, StateRetrying, StateReserved, StateRunning, StateSucceeded, StateFailed} {
			var wantKeys []int64
			for k := int64(1); k <= 60; k++ {
				if want[k] == state {
					wantKeys = append(wantKeys, k)
				}
			}
			if got := infoKeys(t, list(TaskFilter{State: state, Limit: 100})); !slices.Equal(got, wantKeys) {
				t.Errorf("state %s: %v, want %v", state, got, wantKeys)
			}
		}
		var walked []int64
		for f := (TaskFilter{Limit: 7}); ; {
			page := list(f)
			walked = append(walked, infoKeys(t, page)...)
			if len(page) < f.Limit {
				break
			}
			f.After = fmt.Sprint(page[len(page)-1].Key)
		}
		if len(walked) != 60 || !slices.IsSorted(walked) || walked[8] != 9 || walked[9] != 10 {
			t.Errorf("pages of 7 walked %v, want 1..60 in order", walked)
		}
		for _, c := range []struct {
			f    TaskFilter
			want []int64
		}{
			{TaskFilter{Worker: "local.2"}, []int64{51, 52, 53, 54, 55}},
			{TaskFilter{Worker: "local.2", State: StateRunning}, []int64{54, 55}},
			{TaskFilter{Key: "57"}, []int64{57}},
			{TaskFilter{Key: "057", State: StateRetrying}, []int64{57}},
			{TaskFilter{Key: "61"}, []int64{}},
			{TaskFilter{ErrorContains: "100% USED_"}, []int64{56}},
			{TaskFilter{ErrorContains: "QUOTA"}, []int64{56, 57}},
			{TaskFilter{After: "55", State: StateSucceeded}, []int64{}},
		} {
			if got := infoKeys(t, list(c.f)); !slices.Equal(got, c.want) {
				t.Errorf("Tasks(%+v) = %v, want %v", c.f, got, c.want)
			}
		}

		if got := list(TaskFilter{}); len(got) != DefaultTaskLimit {
			t.Errorf("limit 0 listed %d, want %d", len(got), DefaultTaskLimit)
		}
		if got := list(TaskFilter{Limit: MaxTaskLimit}); len(got) != 60 {
			t.Errorf("limit %d listed %d, want all 60", MaxTaskLimit, len(got))
		}
		for _, c := range []struct {
			f    TaskFilter
			want string
		}{
			{TaskFilter{Limit: MaxTaskLimit + 1}, "limit 1001"},
			{TaskFilter{Limit: -1}, "limit -1"},
			{TaskFilter{State: "done"}, `state "done"`},
			{TaskFilter{Key: "x"}, `key: "x" is not an integer`},
			{TaskFilter{After: "5.5"}, `after: "5.5" is not an integer`},
		} {
			_, err := e.client.Tasks(ctx, job, c.f)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), job) {
				t.Errorf("Tasks(%+v) = %v, want an error naming the job and %s", c.f, err, c.want)
			}
			if badKey := c.f.Key != "" || c.f.After != ""; errors.Is(err, ErrBadKey) != badKey {
				t.Errorf("Tasks(%+v) = %v: errors.Is(err, ErrBadKey) should be %v", c.f, err, badKey)
			}
		}
		if _, err := e.client.Tasks(ctx, "nope", TaskFilter{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Tasks of an unknown job = %v, want ErrNotFound", err)
		}
	})
}

// Task reads one task with the row's other columns, NULL told apart from
// empty text; a missing key is ErrNoTask, naming the job and the key.
func TestTaskAPI(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 60)
		stateKeys(e)
		ctx := context.Background()
		d, err := e.client.Task(ctx, "search_odd_numbers", "56")
		if err != nil {
			t.Fatal(err)
		}
		if d.Key != int64(56) || d.State != StateFailed || d.Tries != 3 || d.Worker != "local.1" || d.Error != "Quota 100% used_up" ||
			d.EndedAt == nil || time.Since(*d.EndedAt).Abs() > 10*time.Minute || len(d.Columns) != 1 ||
			d.Columns[0] != (TaskColumn{Name: "is_odd", Null: true}) {
			t.Errorf("Task(56) = %+v", d)
		}
		data, _ := json.Marshal(d)
		for _, key := range []string{`"key":56`, `"state":"failed"`, `"columns":[{"name":"is_odd","value":"","null":true,"truncated":false}]`} {
			if !strings.Contains(string(data), key) {
				t.Errorf("JSON %s lacks %s", data, key)
			}
		}
		if d, err := e.client.Task(ctx, "search_odd_numbers", "58"); err != nil || d.State != StatePending || d.ReservedAt != nil || d.StartedAt != nil {
			t.Errorf("Task(58) = %+v, %v; want pending with no times", d, err)
		}
		_, err = e.client.Task(ctx, "search_odd_numbers", "999")
		if !errors.Is(err, ErrNoTask) || !strings.Contains(err.Error(), `job "search_odd_numbers": task "999"`) {
			t.Errorf("Task(999) = %v, want ErrNoTask naming the job and key", err)
		}
		if _, err := e.client.Task(ctx, "search_odd_numbers", "nine"); err == nil || errors.Is(err, ErrNoTask) || !strings.Contains(err.Error(), `"nine"`) {
			t.Errorf("Task(nine) = %v, want an error about the key", err)
		}
		if k, err := e.client.ParseKey(ctx, "search_odd_numbers", "007"); err != nil || k != int64(7) {
			t.Errorf("ParseKey(007) = %#v, %v; want 7", k, err)
		}
	})
}

// A column's value is text, cut to TaskColumnMax bytes without splitting
// a character.
func TestTaskColumn(t *testing.T) {
	t.Parallel()
	long := "a" + strings.Repeat("é", 600) // é at odd offsets: byte 1024 is inside one
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    any
		want TaskColumn
	}{
		{nil, TaskColumn{Name: "c", Null: true}},
		{"", TaskColumn{Name: "c"}},
		{int64(5), TaskColumn{Name: "c", Value: "5"}},
		{true, TaskColumn{Name: "c", Value: "true"}},
		{at, TaskColumn{Name: "c", Value: "2024-05-01T12:00:00Z"}},
		{[]byte("plain"), TaskColumn{Name: "c", Value: "plain"}},
		{[]byte{0xff, 0x00}, TaskColumn{Name: "c", Value: `\xff00`}},
		{strings.Repeat("x", TaskColumnMax), TaskColumn{Name: "c", Value: strings.Repeat("x", TaskColumnMax)}},
		{long, TaskColumn{Name: "c", Value: long[:TaskColumnMax-1], Truncated: true}},
	} {
		if got := taskColumn("c", c.v); got != c.want {
			t.Errorf("taskColumn(%.20v) = %+.40v, want %+.40v", c.v, got, c.want)
		}
	}
}

// createNotedNumbers makes a numbers table whose rows carry a note and a
// created_at filled by its DEFAULT.
func createNotedNumbers(t *testing.T, db Database, rows int) {
	t.Helper()
	cl, err := connect(context.Background(), &Cluster{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.DB().Exec(`CREATE TABLE numbers (value integer PRIMARY KEY, is_odd boolean, note text,
		created_at ` + cl.store.Dialect.Types().Time + ` DEFAULT CURRENT_TIMESTAMP)`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= rows; v++ {
		if _, err := cl.DB().Exec(cl.store.Dialect.Rebind(`INSERT INTO numbers (value) VALUES (?)`), v); err != nil {
			t.Fatal(err)
		}
	}
}

// newCreatedEnv is newEnv over createNotedNumbers' table.
func newCreatedEnv(t *testing.T, driver string, rows int, jobs ...Job) *testEnv {
	t.Helper()
	db := databaseFor(t, driver)
	createNotedNumbers(t, db, rows)
	return newEnvOn(t, db, 0, jobs...)
}

// The row's own columns as Task shows them, a long one cut on a
// character boundary.
func TestTaskLongColumn(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newCreatedEnv(t, driver, 3)
		e.exec(`UPDATE numbers SET note = ? WHERE value = 2`, "a"+strings.Repeat("é", 600))
		d, err := e.client.Task(context.Background(), "search_odd_numbers", "2")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range d.Columns {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"is_odd", "note", "created_at"}) {
			t.Fatalf("columns %v, want is_odd, note, created_at", names)
		}
		note, created := d.Columns[1], d.Columns[2]
		if !note.Truncated || len(note.Value) != TaskColumnMax-1 || !utf8.ValidString(note.Value) {
			t.Errorf("note: truncated %v, %d bytes, valid UTF-8 %v; want cut to %d", note.Truncated, len(note.Value), utf8.ValidString(note.Value), TaskColumnMax-1)
		}
		if tm, err := time.Parse(time.RFC3339Nano, created.Value); err != nil || created.Null || time.Since(tm).Abs() > 10*time.Minute {
			t.Errorf("created_at = %+v (%v), want a recent RFC 3339 time", created, err)
		}
	})
}

// With field_created_at, setup indexes it and the report gives the age of
// the oldest task neither reserved nor started; without the option, or
// with nothing pending, there is none.
func TestReportOldestPending(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := oddJob()
		job.CreatedAt = "created_at"
		plain := oddJob()
		plain.Name, plain.Fields = "plain", TrackingFields{ReservationID: "p_id", ReservationTime: "p_time", ReservationTimes: "p_times",
			StartTime: "p_start", EndTime: "p_end", Success: "p_success", ErrorDescription: "p_error"}
		e := newCreatedEnv(t, driver, 5, job, plain)
		d := e.client.store.Dialect
		e.exec(`UPDATE numbers SET created_at = `+d.Ago()+` WHERE value = 1`, d.AgoArg(2*time.Hour))
		e.exec(`UPDATE numbers SET created_at = `+d.Ago()+` WHERE value = 3`, d.AgoArg(time.Hour))
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1' WHERE value = 1`) // reserved: not pending
		r := e.report(job.Name)
		if r.OldestPending == nil || *r.OldestPending < 3590 || *r.OldestPending > 3700 {
			t.Errorf("OldestPending = %v, want about 3600", r.OldestPending)
		}
		if p := e.report("plain"); p.OldestPending != nil {
			t.Errorf("OldestPending of a job without field_created_at = %v, want nil", *p.OldestPending)
		}
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1'`)
		r = e.report(job.Name)
		data, _ := json.Marshal(r)
		if r.OldestPending != nil || !strings.Contains(string(data), `"oldest_pending_seconds":null`) {
			t.Errorf("nothing pending: OldestPending = %v, JSON %s; want null", r.OldestPending, data)
		}
		var index string
		for _, ix := range e.jobSQL(job.Name).Indexes(job.Name) {
			if strings.HasSuffix(ix.Name, "_created") {
				index = ix.Name
			}
		}
		if ok, err := e.client.store.IndexExists(context.Background(), store.ParseIdent("numbers"), index); err != nil || !ok {
			t.Errorf("created-at index %q made by setup: %v, %v", index, ok, err)
		}
	})
}

// field_created_at must name a timestamp column of the table: Setup and
// Open say so, naming the job, field and value, and Setup writes nothing.
func TestCreatedAtChecked(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		for _, column := range []string{"born", "is_odd"} {
			job := oddJob()
			job.CreatedAt = column
			c := &Cluster{Database: databaseFor(t, driver)}
			if err := c.AddJob(job); err != nil {
				t.Fatal(err)
			}
			createNotedNumbers(t, c.Database, 1)
			ctx := context.Background()
			_, err := Setup(ctx, c, SetupOptions{})
			ce := wantConfigError(t, err, job.Name, "field_created_at", column)
			if column == "is_odd" && !strings.Contains(ce.Reason, "want timestamp") {
				t.Errorf("reason %q, want the type named", ce.Reason)
			}
			cl, err := Connect(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			cols, _, err := cl.store.Dialect.Columns(ctx, cl.DB(), store.ParseIdent("numbers"))
			cl.Close()
			if err != nil || len(cols) != 4 {
				t.Errorf("columns after a refused setup: %v, %v; want the 4 it had", cols, err)
			}
			_, err = Open(ctx, c)
			wantConfigError(t, err, job.Name, "field_created_at", column)
		}
	})
}
