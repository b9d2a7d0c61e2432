package store

import (
	"slices"
	"strings"
	"testing"
)

// sqlitePlan returns SQLite's query plan for a statement, one line per step.
func sqlitePlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.DB.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n")
}

// TestPendingIndexPinned: on SQLite, with statistics taken while every row
// was pending, the planner walks the table in key order to pick pending
// rows, stepping over every finished row once most are done. Pinned to
// the pending index, it reads only pending rows.
func TestPendingIndexPinned(t *testing.T) {
	t.Parallel()
	s := openStore(t, "sqlite")
	j := newJob(t, s, "tasks", 2000, 3)
	// Without the index there is nothing to pin: no error, no change.
	if err := j.PinIndexes(t.Context(), "job"); err != nil || j.pendingFrom != j.t {
		t.Fatalf("PinIndexes without the index: %v, reads from %s", err, j.pendingFrom)
	}
	for _, ix := range j.Indexes("job") {
		mustExec(t, s, ix.DDL)
	}
	mustExec(t, s, `ANALYZE`)
	plan := func() string { return sqlitePlan(t, s, j.reserveSharesSQL(1), 3, 10, 10, "w", 0, 10) }
	if p := plan(); strings.Contains(p, "USING INDEX") {
		t.Logf("unpinned plan already uses an index (the planner changed?):\n%s", p)
	}
	name := j.Indexes("job")[0].Name
	if err := j.PinIndexes(t.Context(), "job"); err != nil {
		t.Fatal(err)
	}
	if p := plan(); !strings.Contains(p, "USING INDEX "+name) {
		t.Fatalf("pinned plan does not read the pending index %s:\n%s", name, p)
	}
	if got := reserveShares(t, j, Share{"w", 10}); !slices.Equal(got, []int{10}) {
		t.Fatalf("pinned ReserveShares got %v", got)
	}
	var n int
	if err := s.DB.QueryRowContext(t.Context(), j.countPending, 3, 5000).Scan(&n); err != nil || n != 1990 {
		t.Fatalf("pinned pending count = %d, %v; want 1990", n, err)
	}
}

// TestFinishManyPlanSQLite: statistics taken while nothing was in flight
// show the in-flight index empty; a batched finish must still look its
// rows up by key, not scan the rows in flight once per row of the batch.
func TestFinishManyPlanSQLite(t *testing.T) {
	t.Parallel()
	s := openStore(t, "sqlite")
	mustExec(t, s, `CREATE TABLE tasks (id BIGINT PRIMARY KEY, rid TEXT, rtime TIMESTAMP, rtimes INTEGER,
		started TIMESTAMP, ended TIMESTAMP, ok BOOLEAN, why TEXT, out TEXT)`)
	mustExec(t, s, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) INSERT INTO tasks (id) SELECT x FROM c`)
	j := s.Job(JobSpec{Table: ParseIdent("tasks"), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
		StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
	for _, ix := range j.Indexes("job") {
		mustExec(t, s, ix.DDL)
	}
	mustExec(t, s, `ANALYZE`)
	args := make([]any, 128*6)
	p := sqlitePlan(t, s, j.finishManySQL([]string{"out"}, nil, 128, false), args...)
	if strings.Contains(p, "_inflight") || !strings.Contains(p, "SEARCH r USING") {
		t.Fatalf("batched finish does not look rows up by key:\n%s", p)
	}
}
