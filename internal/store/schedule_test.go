package store

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// scheduledJob is newJob's table with a run-at column, and its job.
func scheduledJob(t *testing.T, s *Store, table string, n int) *JobSQL {
	t.Helper()
	j := newJob(t, s, table, n, 3)
	mustExec(t, s, `ALTER TABLE `+j.t+` ADD COLUMN run_at `+s.Dialect.Types().Time)
	spec := j.Spec()
	spec.RunAt = "run_at"
	return s.Job(spec)
}

// With a run-at column, no hot statement reads the whole table, and the
// scheduled index holds the pending rows that have a run-at.
func TestExplainWithRunAt(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const n = 5000
		var plain *JobSQL
		j := explainTableOf(t, s, "sched", n, true, func(j *JobSQL) *JobSQL {
			plain = j
			mustExec(t, s, `ALTER TABLE `+j.t+` ADD COLUMN run_at `+s.Dialect.Types().Time)
			spec := j.Spec()
			spec.RunAt = "run_at"
			return s.Job(spec)
		})
		var ddl string
		for _, ix := range j.Indexes("sched") {
			if strings.HasSuffix(ix.Name, "_scheduled") {
				ddl = ix.DDL
			}
		}
		if !strings.Contains(ddl, `"run_at" IS NOT NULL`) || strings.Contains(strings.ToLower(ddl), "now") {
			t.Errorf("scheduled index %q: want pending rows with a run-at, no clock", ddl)
		}
		mustExec(t, s, `UPDATE `+j.t+` SET run_at = `+s.Dialect.Ago()+` WHERE id > ?`, s.Dialect.AgoArg(-time.Hour), n*99/100+n/200)
		analyzeTable(t, s, j.t)
		plans, err := j.Explain(t.Context(), "w1")
		if err != nil {
			t.Fatalf("Explain: %v", err)
		}
		for _, p := range plans {
			if p.ScansTable {
				t.Errorf("%s scans the table:\n  %s", p.Name, strings.Join(p.Lines, "\n  "))
			}
		}
		c, err := j.Count(t.Context(), s.DB)
		if err != nil || c.Scheduled != int64(n/200) || c.Pending() != int64(2*n/100+n/200) {
			t.Errorf("counts %+v (pending %d), %v; want %d scheduled, %d pending", c, c.Pending(), err, n/200, 2*n/100+n/200)
		}
		if in, err := j.NextDue(t.Context(), s.DB); err != nil || in == nil || *in < 59*time.Minute || *in > time.Hour {
			t.Errorf("NextDue = %v, %v; want about an hour", in, err)
		}
		mustExec(t, s, `UPDATE `+j.t+` SET run_at = `+s.Dialect.Ago()+` WHERE run_at IS NOT NULL`, s.Dialect.AgoArg(time.Minute))
		if in, err := j.NextDue(t.Context(), s.DB); err != nil || in != nil {
			t.Errorf("NextDue with every run-at past = %v, %v; want none", in, err)
		}
		if in, err := plain.NextDue(t.Context(), s.DB); err != nil || in != nil {
			t.Errorf("NextDue without a run-at column = %v, %v; want none", in, err)
		}
	})
}

// Reschedule moves pending rows, scheduled or not; a reserved, running or
// finished row is left alone; a time in the past makes a row due now.
func TestReschedule(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := scheduledJob(t, s, "resched", 5)
		now := s.Dialect.Now()
		mustExec(t, s, `UPDATE "resched" SET rid = 'w1', rtime = `+now+`, rtimes = 1, started = `+now+` WHERE id = 1`) // running
		mustExec(t, s, `UPDATE "resched" SET rid = 'w1', rtime = `+now+` WHERE id = 2`)                                // reserved
		mustExec(t, s, `UPDATE "resched" SET rid = 'w1', rtimes = 1, started = `+now+`, ended = `+now+`, ok = TRUE WHERE id = 3`)
		moved, err := j.Reschedule(t.Context(), s.DB, time.Hour, []any{1, 2, 3, 4, 5})
		slices.SortFunc(moved, func(a, b any) int { return int(a.(int64) - b.(int64)) })
		if err != nil || !slices.Equal(moved, []any{int64(4), int64(5)}) {
			t.Fatalf("Reschedule = %v, %v; want [4 5]", moved, err)
		}
		var unmoved int
		if err := s.DB.QueryRow(`SELECT COUNT(*) FROM "resched" WHERE id <= 3 AND run_at IS NULL`).Scan(&unmoved); err != nil || unmoved != 3 {
			t.Errorf("rows not pending with a run-at set: %d left alone, %v; want 3", unmoved, err)
		}
		if keys, err := j.Reserve(t.Context(), s.DB, "w2", 5); err != nil || len(keys) != 0 {
			t.Errorf("Reserve with every pending row an hour ahead = %v, %v; want none", keys, err)
		}
		if moved, err := j.Reschedule(t.Context(), s.DB, -time.Minute, []any{5}); err != nil || len(moved) != 1 {
			t.Fatalf("Reschedule to the past = %v, %v", moved, err)
		}
		if keys, err := j.Reserve(t.Context(), s.DB, "w2", 5); err != nil || !slices.Equal(keys, []any{int64(5)}) {
			t.Errorf("Reserve after a move to the past = %v, %v; want [5]", keys, err)
		}
		if _, err := newJob(t, s, "plain", 1, 3).Reschedule(t.Context(), s.DB, 0, []any{1}); err == nil {
			t.Error("Reschedule of a job without a run-at column: no error")
		}
	})
}
