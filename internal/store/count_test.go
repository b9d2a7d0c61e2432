package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// bigJob makes a table of 20,000 tasks with the indexes of `pampa setup`,
// 99% succeeded, and the rest in every other state (tries: 3):
// 19801..19805 reserved, 19806..19807 running, 19808 failed for good,
// 19809 failed with a try left, 19810 out of tries but never started, the
// other 190 never tried. It is analysed. want is its exact count.
func bigJob(t *testing.T, s *Store) (j *JobSQL, want Counts) {
	t.Helper()
	if s.Dialect.Name() != "sqlite" {
		s.DB.SetMaxOpenConns(1) // one backend: its statistics are reported together
	}
	j = newJob(t, s, "tasks", 0, 3)
	for _, ix := range j.Indexes("tasks") {
		mustExec(t, s, ix.DDL)
	}
	if s.Dialect.Name() != "sqlite" {
		// The statistics are the test's own ANALYZE's: an autovacuum
		// pass racing the updates below (as it did in a loaded suite run)
		// would move the live-row count it compares against.
		mustExec(t, s, `ALTER TABLE tasks SET (autovacuum_enabled = false)`)
	}
	mustExec(t, s, `INSERT INTO tasks (id, payload)
		WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) SELECT n, 'p' FROM g`)
	now := s.Dialect.Now()
	mustExec(t, s, fmt.Sprintf(`UPDATE tasks SET rid = 'done', rtimes = 1, started = %s, ended = %s, ok = TRUE WHERE id <= 19800`, now, now))
	reserveKeys(t, j, "w1", 19801, 19802, 19803, 19804, 19805)
	startTask(t, j, "w2", 19806)
	startTask(t, j, "w2", 19807)
	mustExec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 19808`)
	finishTask(t, j, startTask(t, j, "w3", 19808), Outcome{Error: "x"})
	finishTask(t, j, startTask(t, j, "w3", 19809), Outcome{Error: "x"})
	mustExec(t, s, `UPDATE tasks SET rtimes = 3 WHERE id = 19810`)
	if s.Dialect.Name() != "sqlite" {
		// The live-row count must have every change before ANALYZE sets
		// it, or changes reported after it would count twice (see
		// estimateRows). A backend may hold its statistics for seconds
		// before reporting them: the table was written on one connection
		// (see above), which is told to report now.
		mustExec(t, s, `SELECT pg_stat_force_next_flush()`)
		for n, deadline := int64(0), time.Now().Add(20*time.Second); n < 20000; time.Sleep(100 * time.Millisecond) {
			if err := s.DB.QueryRowContext(t.Context(), `SELECT pg_stat_get_live_tuples('tasks'::regclass)`).Scan(&n); err != nil || time.Now().After(deadline) {
				t.Fatalf("live rows of tasks: %d, %v", n, err)
			}
		}
	}
	mustExec(t, s, `ANALYZE`)
	return j, Counts{Total: 20000, Succeeded: 19800, Failed: 1, Reserved: 5, Running: 2}
}

// Each state is counted exactly, on every database, and each through its
// partial index: only Total reads the whole table.
func TestReportCountsThroughPartialIndexes(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j, want := bigJob(t, s)
		for _, min := range []int64{0, 10_000} { // SQLite and CockroachDB never estimate
			c, err := j.CountEstimate(ctx, s.DB, min)
			if err != nil {
				t.Fatal(err)
			}
			if s.Dialect.Name() == "postgres" && min > 0 {
				continue // TestReportCountEstimate
			}
			if c != want || c.Pending() != 192 {
				t.Errorf("CountEstimate(%d) = %+v (pending %d), want %+v (pending 192)", min, c, c.Pending(), want)
			}
		}
		for _, total := range []bool{false, true} {
			plan := explain(t, s, j.countSQL(total, ""))
			failures := 0 // the failed rows are counted through either index of them
			for _, ix := range j.Indexes("tasks") {
				switch {
				case strings.HasSuffix(ix.Name, "_failed") || retryIndexName.MatchString(ix.Name):
					if strings.Contains(plan, ix.Name) {
						failures++
					}
				case !strings.Contains(plan, ix.Name):
					t.Errorf("count (total %v) does not use index %s:\n%s", total, ix.Name, plan)
				}
			}
			if failures == 0 {
				t.Errorf("count (total %v) reads the failed rows through neither the failed nor the retry index:\n%s", total, plan)
			}
			if !total && (strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "SCAN tasks\n")) {
				t.Errorf("count (total %v) reads the table:\n%s", total, plan)
			}
		}
	})
}

// explain returns a statement's plan, one line per node.
func explain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	prefix := "EXPLAIN "
	if s.Dialect.Name() == "sqlite" {
		prefix = "EXPLAIN QUERY PLAN "
	}
	rows, err := s.DB.QueryContext(t.Context(), prefix+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s\n", vals[len(vals)-1]) // SQLite: id, parent, notused, detail
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// On PostgreSQL, a table the statistics put at estimateMin rows or more
// gets its Total from them; every other state is still exact, and the
// estimate does not drift as tries update rows.
func TestReportCountEstimate(t *testing.T) {
	t.Parallel()
	s := openStore(t, "postgres")
	ctx := t.Context()
	j, want := bigJob(t, s)
	check := func(when string) {
		t.Helper()
		c, err := j.CountEstimate(ctx, s.DB, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Estimated || c.Failed != want.Failed || c.Reserved != want.Reserved || c.Running != want.Running || c.Pending() != 192 {
			t.Errorf("%s: CountEstimate = %+v (pending %d), want estimated, exact %+v (pending 192)", when, c, c.Pending(), want)
		}
		if c.Total < 19_600 || c.Total > 20_400 || c.Succeeded != c.Total-200 {
			t.Errorf("%s: Total %d, Succeeded %d: want within 2%% of 20000, and Total less the 200 others", when, c.Total, c.Succeeded)
		}
	}
	check("analysed")
	// Three updates per row, as a try makes (reserve, claim, finish), each
	// leaving a dead version: the table grows, its rows do not.
	for _, w := range []string{"a", "b", "c"} {
		mustExec(t, s, `UPDATE tasks SET rid = ? WHERE id <= 10000`, w)
	}
	check("after updates")

	for _, min := range []int64{0, 1_000_000} {
		if c, err := j.CountEstimate(ctx, s.DB, min); err != nil || c != want {
			t.Errorf("CountEstimate(%d) = %+v, %v; want exact %+v", min, c, err, want)
		}
	}
	// Rows the statistics may not know of yet: still counted as pending,
	// and Total holds at least the rows counted.
	mustExec(t, s, `INSERT INTO tasks (id, payload)
		WITH RECURSIVE g(n) AS (SELECT 20001 UNION ALL SELECT n + 1 FROM g WHERE n < 50000) SELECT n, 'p' FROM g`)
	c, err := j.CountEstimate(ctx, s.DB, 10_000)
	if err != nil || c.Pending() != 30_192 || c.Succeeded < 0 || c.Total < 30_200 {
		t.Errorf("after an insert: CountEstimate = %+v (pending %d), %v; want pending 30192", c, c.Pending(), err)
	}
}

// On SQLite, a report of a large table counts it once, then carries that
// count forward by the rows added since (read above the largest rowid it
// saw) for rowidFresh, and counts it again after that; the other states
// are exact on every call.
func TestSQLiteCountsAddedRows(t *testing.T) {
	t.Parallel()
	s := openStore(t, "sqlite")
	ctx := t.Context()
	j, want := bigJob(t, s)
	count := func(min int64) Counts {
		t.Helper()
		c, err := j.CountEstimate(ctx, s.DB, min)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count(10_000); c != want {
		t.Fatalf("first count = %+v, want exact %+v", c, want)
	}
	want.Estimated = true
	if c := count(10_000); c != want {
		t.Errorf("second count = %+v, want %+v carried forward", c, want)
	}
	plan := explain(t, s, fmt.Sprintf(`SELECT COUNT(*), MAX(%[1]s) FROM tasks WHERE %[1]s > ?`, j.rowids.column), 20000)
	if !strings.Contains(plan, "rowid>?") {
		t.Errorf("the rows added are not read as a rowid range:\n%s", plan)
	}

	mustExec(t, s, `INSERT INTO tasks (id, payload)
		WITH RECURSIVE g(n) AS (SELECT 20001 UNION ALL SELECT n + 1 FROM g WHERE n < 50000) SELECT n, 'p' FROM g`)
	if c := count(10_000); !c.Estimated || c.Total != 50_000 || c.Pending() != 30_192 || c.Succeeded != want.Succeeded {
		t.Errorf("after an insert: %+v (pending %d), want estimated, total 50000, pending 30192", c, c.Pending())
	}
	// A delete is not seen until the count is due again.
	mustExec(t, s, `DELETE FROM tasks WHERE id <= 100`)
	if c := count(10_000); c.Total != 50_000 || !c.Estimated {
		t.Errorf("after a delete, before the count is due: %+v, want the estimate of 50000", c)
	}
	if c := count(0); c.Total != 49_900 || c.Estimated {
		t.Errorf("exact count after a delete: %+v, want 49900, not estimated", c)
	}
	j.rowids.mu.Lock()
	j.rowids.at = j.rowids.at.Add(-rowidFresh - time.Second)
	j.rowids.mu.Unlock()
	if c := count(10_000); c.Total != 49_900 || c.Estimated {
		t.Errorf("once the count is due: %+v, want 49900 counted", c)
	}
	if c := count(100_000); c.Estimated {
		t.Errorf("a threshold above the table's rows: %+v, want counted", c)
	}
}

// Tables whose rowid cannot be read are always counted: WITHOUT ROWID,
// or with columns named after every name of the rowid. A column named
// rowid leaves the estimate to _rowid_.
func TestSQLiteCountsWithoutRowid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ddl, column string }{
		{"without rowid", `CREATE TABLE t (id INTEGER PRIMARY KEY, rid TEXT, rtime TEXT, rtimes INTEGER, started TEXT, ended TEXT, ok BOOLEAN, why TEXT) WITHOUT ROWID`, "-"},
		{"every name taken", `CREATE TABLE t (id INTEGER PRIMARY KEY, rowid INTEGER, _rowid_ INTEGER, oid INTEGER, rid TEXT, rtime TEXT, rtimes INTEGER, started TEXT, ended TEXT, ok BOOLEAN, why TEXT)`, "-"},
		{"a column named rowid", `CREATE TABLE t (id INTEGER PRIMARY KEY, rowid INTEGER, rid TEXT, rtime TEXT, rtimes INTEGER, started TEXT, ended TEXT, ok BOOLEAN, why TEXT)`, "_rowid_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, "sqlite")
			mustExec(t, s, tc.ddl)
			j := s.Job(JobSpec{Table: Ident{Name: "t"}, PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime",
				ReservationTimes: "rtimes", StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
			mustExec(t, s, `INSERT INTO t (id) WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100) SELECT n FROM g`)
			for i := range 2 {
				c, err := j.CountEstimate(t.Context(), s.DB, 10)
				if err != nil || c.Total != 100 || c.Estimated != (i == 1 && tc.column != "-") {
					t.Errorf("count %d = %+v, %v; want 100, estimated only on a second count through a rowid", i+1, c, err)
				}
			}
			if j.rowids.column != tc.column {
				t.Errorf("rowid read as %q, want %q", j.rowids.column, tc.column)
			}
		})
	}
}
