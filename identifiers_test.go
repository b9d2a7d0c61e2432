package pampa

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// quotedJob is a job whose table, key, tracking and user columns all need
// quoting: spaces, mixed case, a reserved word, '?' (a placeholder to a
// careless rebinding) and '"' (the quote itself).
func quotedJob(fn ProcessFunc) Job {
	return Job{
		Name: "Order Lines: ship?", Table: "Order Lines", PrimaryKey: "Order ID",
		Fields: TrackingFields{
			ReservationID: "Reserved By?", ReservationTime: `Reserved "At"`,
			ReservationTimes: "Tries", StartTime: "select", EndTime: "Ended At?",
			Success: "OK?", ErrorDescription: `Why "Not"?`,
		},
		Process: fn,
	}
}

// TestIdentifiersNeedingQuotes runs a job end to end, through setup, a
// dispatcher and workers as production runs them, on a table whose every
// name needs quoting.
func TestIdentifiersNeedingQuotes(t *testing.T) {
	t.Parallel()
	const rows = 40
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			var ran atomic.Int64
			j := quotedJob(func(ctx context.Context, task *Task) error {
				ran.Add(1)
				task.Set("Total Amount?", fmt.Sprintf("shipped %v", task.Key()))
				return nil
			})
			c := &Cluster{Database: databaseFor(t, driver)}
			if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 4}); err != nil {
				t.Fatal(err)
			}
			if err := c.AddJob(j); err != nil {
				t.Fatalf("AddJob: %v", err)
			}
			admin, err := Connect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			q := func(s string) string { return rebindFor(t, driver, s) }
			if _, err := admin.DB().Exec(`CREATE TABLE "Order Lines" ("Order ID" integer PRIMARY KEY, "Total Amount?" text)`); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= rows; i++ {
				if _, err := admin.DB().Exec(q(`INSERT INTO "Order Lines" ("Order ID") VALUES (?)`), i); err != nil {
					t.Fatal(err)
				}
			}
			changes, err := Setup(context.Background(), c, SetupOptions{Notify: true})
			if err != nil {
				t.Fatalf("setup: %v", err)
			}
			if !strings.Contains(fmt.Sprint(changes), `added column Why "Not"?`) || !strings.Contains(fmt.Sprint(changes), "created index") {
				t.Fatalf("setup changes = %v; want the columns added and the indexes created", changes)
			}
			cl, err := Open(context.Background(), c)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { cl.Close() })
			e := &testEnv{t: t, cluster: c, client: cl}
			r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
			rep := e.waitJob(j.Name, rows, 60*time.Second)
			r.stop(t)
			if rep.Completed != rows || rep.Failed != 0 {
				t.Fatalf("report = %+v; want all %d tasks completed", rep, rows)
			}
			var done int
			err = admin.DB().QueryRow(q(`SELECT COUNT(*) FROM "Order Lines" WHERE "OK?" = ? AND "Ended At?" IS NOT NULL
				AND "select" IS NOT NULL AND "Reserved ""At""" IS NOT NULL AND "Tries" = 1 AND "Why ""Not""?" IS NULL
				AND "Total Amount?" = 'shipped ' || CAST("Order ID" AS TEXT)`), true).Scan(&done)
			if err != nil || done != rows {
				t.Fatalf("%d rows succeeded with their outcome written (%v), want %d", done, err, rows)
			}
			if ran.Load() != rows {
				t.Errorf("the processing function ran %d times, want %d", ran.Load(), rows)
			}
		})
	}
}

// TestIdentifierValidation: names that cannot be quoted safely, or that
// the database would cut short, are refused naming the job, field and
// value; names that merely need quoting are accepted.
func TestIdentifierValidation(t *testing.T) {
	t.Parallel()
	validate := func(j Job) error { j = j.WithDefaults(); return j.Validate() }
	if err := validate(quotedJob(isOdd)); err != nil {
		t.Fatalf("a job whose names need quoting: %v", err)
	}
	for _, table := range []string{"app.Order Lines", `"my.table"`, `app."my.table"`, "select", "numbers; DROP TABLE numbers", `numbers"`} {
		j := quotedJob(isOdd)
		j.Table = table
		if err := validate(j); err != nil {
			t.Errorf("table %q: %v", table, err)
		}
	}
	bad := []struct {
		field, value, why string
		set               func(j *Job, v string)
	}{
		{"table", "a\x00b", "NUL", func(j *Job, v string) { j.Table = v }},
		{"table", "a.b.c", "more than one dot", func(j *Job, v string) { j.Table = v }},
		{"table", `"open`, "no closing double quote", func(j *Job, v string) { j.Table = v }},
		{"table", "app.", "empty name", func(j *Job, v string) { j.Table = v }},
		{"field_primary_key", "id\x00", "NUL", func(j *Job, v string) { j.PrimaryKey = v }},
		{"field_primary_key", strings.Repeat("k", 256), "over the database's limit of 255", func(j *Job, v string) { j.PrimaryKey = v }},
		{"field_end_time", "\xffend", "UTF-8", func(j *Job, v string) { j.Fields.EndTime = v }},
	}
	for _, b := range bad {
		j := quotedJob(isOdd)
		b.set(&j, b.value)
		err := validate(j)
		if err == nil || !strings.Contains(err.Error(), b.field) || !strings.Contains(err.Error(), fmt.Sprintf("%q", b.value)) ||
			!strings.Contains(err.Error(), b.why) || !strings.Contains(err.Error(), j.Name) {
			t.Errorf("%s = %q: %v; want an error naming the job, field, value and %q", b.field, b.value, err, b.why)
		}
	}
	// PostgreSQL keeps 63 bytes of a name: a longer one is refused on
	// connecting, before anything reaches the database.
	j := quotedJob(isOdd)
	j.Fields.StartTime = strings.Repeat("s", 64)
	c := &Cluster{Database: databaseFor(t, DriverPostgres)}
	if err := c.AddJob(j); err != nil {
		t.Fatalf("AddJob: %v", err)
	}
	_, err := Connect(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "field_start_time") || !strings.Contains(err.Error(), "limit of 63") {
		t.Fatalf("connect with a 64-byte column name on PostgreSQL = %v; want it refused", err)
	}
	if _, err := store.ParseTable(`"x"y`); err == nil {
		t.Error(`ParseTable("x"y) accepted`)
	}
}
