package store

import (
	"maps"
	"regexp"
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
	return explainTableOf(t, s, table, n, indexed, nil)
}

// explainTableOf is explainTable whose job, before its indexes and rows,
// edit may change (a column added, the job's spec).
func explainTableOf(t *testing.T, s *Store, table string, n int, indexed bool, edit func(*JobSQL) *JobSQL) *JobSQL {
	t.Helper()
	j := newJob(t, s, table, n, 3)
	if edit != nil {
		j = edit(j)
	}
	// The indexes come before the updates: an index built over rows whose
	// updates were HOT (no index to keep) is, on PostgreSQL, unusable by a
	// transaction whose snapshot is older than the build (indcheckxmin),
	// and the parallel tests' transactions made that so now and then.
	if indexed {
		for _, ix := range j.Indexes(table) {
			mustExec(t, s, ix.DDL)
		}
		if err := j.PinIndexes(t.Context(), table); err != nil {
			t.Fatal(err)
		}
	}
	now := s.Dialect.Now()
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w0', rtime = `+now+`, rtimes = 1, started = `+now+`, ended = `+now+`, ok = TRUE WHERE id <= ?`, n*96/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w0', rtime = `+now+`, rtimes = 1, started = `+now+`, ended = `+s.Dialect.Ago()+`, ok = FALSE, why = 'boom' WHERE id > ? AND id <= ?`,
		s.Dialect.AgoArg(2*time.Minute), n*96/100, n*98/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w9', rtime = `+now+` WHERE id > ? AND id <= ?`, n*98/100, n*99/100)
	mustExec(t, s, `UPDATE `+j.t+` SET rtimes = 1, started = `+now+` WHERE id > ? AND id <= ?`, n*98/100, n*98/100+n/200)
	if s.Dialect.Name() != "sqlite" {
		// The plan tests check that an index serves each statement (and
		// without the indexes that none can). On tables this small
		// PostgreSQL prices a sequential scan under a LIMIT that meets its
		// rows early about as the index, and its pick changed from run to
		// run; off, a sequential scan is left for when no index serves.
		j.explainSettings = []string{"SET LOCAL enable_seqscan = off"}
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

// pgGroupsProbe matches a read of a groups index in an EXPLAIN ANALYZE
// line, with the rows it returned per loop.
var pgGroupsProbe = regexp.MustCompile(`Index (?:Only )?Scan using \S+_groups on .* rows=(\d+) loops=`)

// TestExplainLimited: the limited reservation's statements, on a
// mostly-done table whose pending rows are in groups (a hot group at its
// max_running_per_group, holding half of them), read no whole table;
// the reservation really ran once (on PostgreSQL, each statement's
// EXPLAIN ANALYZE was undone before it ran), and nothing is kept.
func TestExplainLimited(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		// 20,000 rows: on 5,000, PostgreSQL walked the groups index even
		// without the columns that make the walk index-only (see Indexes);
		// from 20,000 it read and sorted every pending row instead.
		const n = 20000
		j := explainTable(t, s, "tasks", n, false)
		// Pending: keys 19,801–20,000; even ones in the hot group, odd
		// ones in five others. Two hot rows run, for worker w9.
		mustExec(t, s, `UPDATE `+j.t+` SET payload = CASE WHEN id % 2 = 0 THEN 'hot' ELSE 'g' || CAST(id % 10 AS TEXT) END WHERE id > ?`, n*99/100)
		mustExec(t, s, `UPDATE `+j.t+` SET rid = 'w9', rtime = `+s.Dialect.Now()+`, rtimes = 1, started = `+s.Dialect.Now()+` WHERE id IN (?, ?)`, n*99/100+2, n*99/100+4)
		spec := j.Spec()
		spec.Limits = Limits{MaxRunning: 1000, Rate: Rate{600, time.Minute}, GroupBy: "payload",
			MaxRunningPerGroup: 2, RatePerGroup: Rate{60, time.Minute}}
		j = s.Job(spec)
		for _, ix := range j.Indexes("tasks") {
			mustExec(t, s, ix.DDL)
		}
		if err := j.PinIndexes(t.Context(), "tasks"); err != nil {
			t.Fatal(err)
		}
		analyzeTable(t, s, j.t)
		before := tableText(t, j)
		plans, out, err := j.ExplainLimited(t.Context(), "explain_limited", []Share{{"w1", 4}, {"w2", 4}, {"w3", 4}})
		if err != nil {
			t.Fatalf("ExplainLimited: %v", err)
		}
		if after := tableText(t, j); after != before {
			t.Fatal("ExplainLimited changed rows of the table")
		}
		var starts int
		if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pampa_starts WHERE job = 'explain_limited'`).Scan(&starts); err != nil || starts != 0 {
			t.Errorf("pampa_starts kept %d rows (%v)", starts, err)
		}
		// Five groups have pending rows the limits let go (g1, g3, …,
		// g9): each gets its two, one row each in turn, and is then at
		// its cap, as the hot one was already.
		if got := handed(out); got != 10 || !strings.Contains(out.Reason, "6 groups at max_running_per_group") {
			t.Errorf("the reservation handed out %d rows (want 10), reason %q: %v", got, out.Reason, out.Keys)
		}
		names := map[string]Plan{}
		for _, p := range plans {
			names[p.Name] = p
			text := p.Name + ":\n  " + strings.Join(p.Lines, "\n  ")
			if p.ScansTable {
				t.Errorf("%s scans the table:\n%s", p.Name, text)
			}
			if p.SQL == "" || p.Name == "limits.other" {
				t.Errorf("%s: unnamed or no SQL:\n%s\n%s", p.Name, p.SQL, text)
			}
			t.Logf("%s %v\n%s", p.Name, p.Indexes, text)
		}
		for _, want := range []string{"lock", "inflight_by_group", "forget_starts", "window_job", "window_groups",
			"walk_groups", "null_group", "pick_rows", "reserve_keys", "record_starts", "count_pending", "note", "walk_groups_next"} {
			if _, ok := names["limits."+want]; !ok {
				t.Errorf("no plan for limits.%s; got %v", want, slices.Sorted(maps.Keys(names)))
			}
		}
		for _, name := range []string{"limits.walk_groups", "limits.walk_groups_next", "limits.pick_rows", "limits.null_group"} {
			if p := names[name]; !slices.ContainsFunc(p.Indexes, func(ix string) bool { return strings.HasSuffix(ix, "_groups") }) {
				t.Errorf("%s does not read the groups index: %v", name, p.Indexes)
			}
		}
		if s.Dialect.Name() == "postgres" {
			// Each step of the walk reads one entry of the groups index,
			// the next group's first, never the pending rows after it.
			// (Not for the crdb dialect: it runs here on PostgreSQL, whose
			// planner is not CockroachDB's.)
			for _, name := range []string{"limits.walk_groups", "limits.walk_groups_next"} {
				steps := 0
				for _, l := range names[name].Lines {
					m := pgGroupsProbe.FindStringSubmatch(l)
					if m == nil {
						continue
					}
					if steps++; m[1] != "0" && m[1] != "1" {
						t.Errorf("%s: a step read %s entries of the groups index:\n%s", name, m[1], strings.Join(names[name].Lines, "\n"))
					}
				}
				if steps != 2 {
					t.Errorf("%s: %d probes of the groups index, want the first step and the recursive one:\n%s", name, steps, strings.Join(names[name].Lines, "\n"))
				}
			}
		}
	})
}

// TestRelaunchSkipsFailedForGood: the relaunch of failed tries reads the
// failures with tries left through the retry index, not the tasks failed
// for good, which pile up over a table's life (here 30 times as many).
func TestRelaunchSkipsFailedForGood(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const n = 6000
		j := explainTable(t, s, "retries", n, true)
		// Of the done rows, most failed for good (3 tries of 3) an hour
		// ago; the 2% that failed with tries left stay as they are.
		mustExec(t, s, `UPDATE `+j.t+` SET rtimes = 3, ok = FALSE, why = 'out of tries', ended = `+s.Dialect.Ago()+` WHERE id <= ?`,
			s.Dialect.AgoArg(time.Hour), n*60/100)
		analyzeTable(t, s, j.t)
		plans, err := j.Explain(t.Context(), "w1")
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(plans, func(p Plan) bool { return p.Name == "relaunch_failed" })
		if i < 0 {
			t.Fatal("no plan for relaunch_failed")
		}
		p, text := plans[i], strings.Join(plans[i].Lines, "\n")
		if !slices.ContainsFunc(p.Indexes, func(ix string) bool { return strings.HasSuffix(ix, "_retry3") }) || p.ScansTable {
			t.Fatalf("relaunch_failed reads %v, want the retry index of max_try_times 3:\n%s", p.Indexes, text)
		}
		if m := rowsRemoved.FindStringSubmatch(text); m != nil && m[1] != "0" {
			t.Errorf("relaunch_failed stepped over %s rows:\n%s", m[1], text)
		}
		t.Logf("%v\n%s", p.Indexes, text)
	})
}

// rowsRemoved is EXPLAIN ANALYZE's count of the rows a filter dropped.
var rowsRemoved = regexp.MustCompile(`Rows Removed by (?:Index Recheck|Filter): (\d+)`)
