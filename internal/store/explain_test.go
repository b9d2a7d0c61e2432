package store

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// explainTable makes a table of n rows, mostly done: 2% failed with tries
// left, 1% in flight for worker w9 (half of it running), 1% pending; with
// the indexes of `pampa setup` when indexed, and analysed.
func explainTable(t *testing.T, s *Store, table string, n int, indexed bool) *JobSQL {
	t.Helper()
	j := newJob(t, s, table, n, 3)
	now := s.Dialect.Now()
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w0', rtime = `+now+`, rtimes = 1, started = `+now+`, ended = `+now+`, ok = TRUE WHERE id <= ?`, n*96/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w0', rtime = `+now+`, rtimes = 1, started = `+now+`, ended = `+s.Dialect.Ago()+`, ok = FALSE, why = 'boom' WHERE id > ? AND id <= ?`,
		s.Dialect.AgoArg(2*time.Minute), n*96/100, n*98/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w9', rtime = `+now+` WHERE id > ? AND id <= ?`, n*98/100, n*99/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rtimes = 1, started = `+now+` WHERE id > ? AND id <= ?`, n*98/100, n*98/100+n/200)
	if indexed {
		for _, ix := range j.Indexes(table) {
			mustExec(t, s, ix.DDL)
		}
		if err := j.PinPendingIndex(t.Context(), table); err != nil {
			t.Fatal(err)
		}
	}
	analyzeTable(t, s, j.t)
	return j
}

// analyzeTable refreshes the planner's statistics of this table only (the
// others are other tests'). On PostgreSQL a VACUUM too, so that the
// visibility map, which prices index-only scans, does not depend on
// whether autovacuum has been by since the last writes.
func analyzeTable(t *testing.T, s *Store, table string) {
	t.Helper()
	analyze := `ANALYZE `
	if s.Dialect.Name() != "sqlite" {
		analyze = `VACUUM ANALYZE ` // outside a transaction, as VACUUM must be
	}
	if _, err := s.DB.ExecContext(t.Context(), analyze+table); err != nil {
		t.Fatalf("%s%s: %v", analyze, table, err)
	}
}

// tableText is every row of the table, as text.
func tableText(t *testing.T, j *JobSQL) string {
	t.Helper()
	var cols []string
	for _, c := range []string{"id", "payload", "rid", "rtime", "rtimes", "started", "ended", "ok", "why"} {
		cols = append(cols, "COALESCE(CAST("+c+" AS TEXT), '-')")
	}
	rows, err := j.s.DB.QueryContext(t.Context(), `SELECT `+strings.Join(cols, " || ' ' || ")+` FROM `+j.t+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		b.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestExplainHotQueries: on a mostly-done table with the setup indexes, no
// hot statement reads the whole table, and explaining (on PostgreSQL, with
// EXPLAIN ANALYZE, which runs the writes) leaves every row as it was.
func TestExplainHotQueries(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const n = 5000
		j := explainTable(t, s, "tasks", n, true)
		before := tableText(t, j)
		plans, err := j.Explain(t.Context(), "w1")
		if err != nil {
			t.Fatalf("Explain: %v", err)
		}
		if after := tableText(t, j); after != before {
			t.Fatal("Explain changed rows of the table")
		}
		var names []string
		pg := s.Dialect.Name() != "sqlite"
		for _, p := range plans {
			names = append(names, p.Name)
			text := p.Name + ":\n  " + strings.Join(p.Lines, "\n  ")
			if p.ScansTable {
				t.Errorf("%s scans the table:\n%s", p.Name, text)
			}
			if len(p.Indexes) == 0 || p.SQL == "" {
				t.Errorf("%s: no index used (%v) or no SQL:\n%s", p.Name, p.Indexes, text)
			}
			if strings.Contains(text, "cost=") {
				t.Errorf("%s: costs left in the plan:\n%s", p.Name, text)
			}
			if pg && p.Execution <= 0 {
				t.Errorf("%s: no execution time:\n%s", p.Name, text)
			}
			t.Logf("%s %v\n%s", p.Name, p.Indexes, text)
		}
		for _, want := range []string{"count_pending", "reserve_shares", "queue_lengths", "inflight_workers", "claim",
			"recover_expired.relaunch", "recover_expired.fail", "relaunch_failed",
			"recover_workers.hand_back", "recover_workers.relaunch", "recover_workers.fail"} {
			if !slices.Contains(names, want) {
				t.Errorf("no plan for %s; got %v", want, names)
			}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "finish_many") }) {
			t.Errorf("no plan for finish_many; got %v", names)
		}
		if pg {
			// EXPLAIN ANALYZE really ran the statements, in the
			// rolled-back transaction: the reserve took the 50 pending
			// rows, the claim 5 of them, the batched finish (PostgreSQL
			// dialect only) ended those 5.
			want := map[string]string{"reserve_shares": "rows=50 ", "claim": "rows=5 "}
			if s.Dialect.Name() == "postgres" {
				want["finish_many"] = "rows=5 "
			}
			for name, rows := range want {
				i := slices.Index(names, name)
				if i < 0 {
					continue // reported above
				}
				if !strings.Contains(plans[i].Lines[0], rows) {
					t.Errorf("%s did not run: want %q in its first line:\n%s", name, rows, strings.Join(plans[i].Lines, "\n"))
				}
			}
		}
	})
}

// TestExplainSeesScans: without the setup indexes, the pending rows can
// only be found by reading the whole table, and Explain says so.
func TestExplainSeesScans(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := explainTable(t, s, "tasks", 5000, false)
		plans, err := j.Explain(t.Context(), "w1")
		if err != nil {
			t.Fatalf("Explain: %v", err)
		}
		scans := map[string]bool{}
		for _, p := range plans {
			scans[p.Name] = p.ScansTable
		}
		for _, name := range []string{"count_pending", "reserve_shares", "queue_lengths", "relaunch_failed"} {
			if !scans[name] {
				t.Errorf("%s reads no whole table without the indexes: %v", name, scans)
			}
		}
	})
}
