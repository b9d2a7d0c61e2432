package store

import (
	"slices"
	"strings"
	"testing"
)

func TestQueueLengthsAndInFlight(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 8, 3)
		// w1: 2 reserved + 1 running. w2: 1 reserved. w3: 1 running.
		// w4: only a finished task.
		startTask(t, j, "w1", 1)
		wantKeys(t, "reserve w1", reserveKeys(t, j, "w1", 2, 3), 2, 3)
		wantKeys(t, "reserve w2", reserveKeys(t, j, "w2", 4), 4)
		startTask(t, j, "w3", 5)
		finishTask(t, j, startTask(t, j, "w4", 6), Outcome{Success: true})

		ql, err := j.QueueLengths(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		if len(ql) != 2 || ql["w1"] != 2 || ql["w2"] != 1 {
			t.Fatalf("QueueLengths = %v, want map[w1:2 w2:1]", ql)
		}
		inflight, err := j.InFlightWorkers(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(inflight)
		if !slices.Equal(inflight, []string{"w1", "w2", "w3"}) {
			t.Fatalf("InFlightWorkers = %v, want [w1 w2 w3]", inflight)
		}
	})
}

func TestCountPending(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 10, 3)
		wantKeys(t, "reserve", reserveKeys(t, j, "w1", 1, 2), 1, 2)
		mustExec(t, s, `UPDATE tasks SET rtimes = 3 WHERE id = 3`)
		for _, c := range []struct{ limit, want int }{{100, 7}, {7, 7}, {5, 5}, {1, 1}} {
			n, err := j.CountPending(ctx, s.DB, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if n != c.want {
				t.Fatalf("CountPending(%d) = %d, want %d", c.limit, n, c.want)
			}
		}
	})
}

func TestCount(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 12, 2)
		// 1, 2: succeeded. 3: failed for good. 4: failed, a try left.
		// 5, 6, 7: reserved. 8: running. 9..12: never touched.
		finishTask(t, j, startTask(t, j, "w1", 1), Outcome{Success: true})
		finishTask(t, j, startTask(t, j, "w1", 2), Outcome{Success: true})
		mustExec(t, s, `UPDATE tasks SET rtimes = 1 WHERE id = 3`)
		finishTask(t, j, startTask(t, j, "w1", 3), Outcome{Success: false, Error: "x"})
		finishTask(t, j, startTask(t, j, "w1", 4), Outcome{Success: false, Error: "x"})
		wantKeys(t, "reserve", reserveKeys(t, j, "w2", 5, 6, 7), 5, 6, 7)
		startTask(t, j, "w3", 8)

		c, err := j.Count(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		want := Counts{Total: 12, Succeeded: 2, Failed: 1, Reserved: 3, Running: 1}
		if c != want {
			t.Fatalf("Count = %+v, want %+v", c, want)
		}
		if p := c.Pending(); p != 5 {
			t.Fatalf("Pending() = %d, want 5", p)
		}
		empty := newJob(t, s, "empty", 0, 2)
		if c, err := empty.Count(ctx, s.DB); err != nil || c != (Counts{}) {
			t.Fatalf("Count of an empty table = %+v, %v", c, err)
		}
	})
}

func TestKeysFromQuery(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 3)
		keys, err := j.KeysFromQuery(ctx, s.DB,
			`SELECT payload, id FROM tasks WHERE rid IS NULL ORDER BY id DESC LIMIT @n`, map[string]any{"n": 4})
		if err != nil {
			t.Fatal(err)
		}
		if got := sortedInts(t, keys); !slices.Equal(got, []int64{3, 4, 5, 6}) {
			t.Fatalf("KeysFromQuery = %v, want [3 4 5 6]", got)
		}
		// The key column is found whatever the case of its name.
		keys, err = j.KeysFromQuery(ctx, s.DB, `SELECT id AS "ID" FROM tasks WHERE id < @n`, map[string]any{"n": 3})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "KeysFromQuery with ID", sortedInts(t, keys), 1, 2)

		_, err = j.KeysFromQuery(ctx, s.DB, `SELECT payload FROM tasks LIMIT @n`, map[string]any{"n": 2})
		if err == nil || !strings.Contains(err.Error(), `"id"`) || !strings.Contains(err.Error(), "payload") {
			t.Fatalf("KeysFromQuery without the key column: error = %v, want one naming id and the columns", err)
		}
	})
}

func TestScalar(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 3)
		reserveKeys(t, j, "local.1", 1, 2, 3)
		reserveKeys(t, j, "local.2", 4)
		var n int
		if err := s.Scalar(ctx, s.DB, `SELECT COUNT(*) FROM tasks WHERE rid = @worker`, map[string]any{"worker": "local.1"}, &n); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("Scalar count = %d, want 3", n)
		}
		var ok bool
		if err := s.Scalar(ctx, s.DB, `SELECT COUNT(*) < 2 FROM tasks WHERE rid = @worker`, map[string]any{"worker": "local.2"}, &ok); err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatal("Scalar bool = false, want true")
		}
		if err := s.Scalar(ctx, s.DB, `SELECT COUNT(*) FROM tasks`, nil, &n); err != nil || n != 6 {
			t.Fatalf("Scalar without parameters = %d, %v", n, err)
		}
		err := s.Scalar(ctx, s.DB, `SELECT id FROM tasks WHERE rid = @worker`, map[string]any{"worker": "nobody"}, &n)
		if err == nil || !strings.Contains(err.Error(), "no row") {
			t.Fatalf("Scalar with no row: error = %v", err)
		}
	})
}

func TestColumns(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		newJob(t, s, "tasks", 0, 3)
		cols, ok, err := s.Dialect.Columns(ctx, s.DB, ParseIdent("tasks"))
		if err != nil || !ok {
			t.Fatalf("Columns(tasks) = ok %v, err %v", ok, err)
		}
		var names []string
		types := map[string]string{}
		for _, c := range cols {
			names = append(names, c.Name)
			types[c.Name] = c.Type
		}
		want := []string{"id", "payload", "rid", "rtime", "rtimes", "started", "ended", "ok", "why"}
		if !slices.Equal(names, want) {
			t.Fatalf("Columns(tasks) = %v, want %v in table order", names, want)
		}
		wantTypes := map[string][2]string{"sqlite": {"timestamp", "text"}}[s.Dialect.Name()]
		if s.Dialect.Name() != "sqlite" {
			wantTypes = [2]string{"timestamp with time zone", "text"}
		}
		if types["started"] != wantTypes[0] || types["rid"] != wantTypes[1] {
			t.Fatalf("types of started, rid = %q, %q; want %q", types["started"], types["rid"], wantTypes)
		}
		if strings.ToLower(types["rid"]) != types["rid"] {
			t.Fatalf("type %q not lower case", types["rid"])
		}
		cols, ok, err = s.Dialect.Columns(ctx, s.DB, ParseIdent("no_such_table"))
		if err != nil || ok || len(cols) != 0 {
			t.Fatalf("Columns(no_such_table) = %v, ok %v, err %v; want ok=false", cols, ok, err)
		}
	})
}

func TestIndexes(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 0, 3)
		long := strings.Repeat("render the monthly reports ", 10)
		for _, job := range []string{"reports", long} {
			idx := j.Indexes(job)
			if len(idx) != 4 {
				t.Fatalf("Indexes(%q) = %d indexes, want 4", job, len(idx))
			}
			again := j.Indexes(job)
			seen := map[string]bool{}
			for i, ix := range idx {
				if ix.Name != again[i].Name || ix.DDL != again[i].DDL {
					t.Fatalf("index names not stable: %q vs %q", ix.Name, again[i].Name)
				}
				if len(ix.Name) > 63 {
					t.Fatalf("index name %q is %d bytes, over PostgreSQL's 63", ix.Name, len(ix.Name))
				}
				if seen[ix.Name] {
					t.Fatalf("index name %q repeated", ix.Name)
				}
				seen[ix.Name] = true
				if ok, err := s.IndexExists(ctx, ParseIdent("tasks"), ix.Name); err != nil || ok {
					t.Fatalf("IndexExists(%s) before creating = %v, %v", ix.Name, ok, err)
				}
				for range 2 { // IF NOT EXISTS: creating twice is fine
					mustExec(t, s, ix.DDL)
				}
				if ok, err := s.IndexExists(ctx, ParseIdent("tasks"), ix.Name); err != nil || !ok {
					t.Fatalf("IndexExists(%s) after creating = %v, %v", ix.Name, ok, err)
				}
			}
		}
		// Two long names sharing a prefix get different indexes.
		a, b := j.Indexes(long+"a"), j.Indexes(long+"b")
		if a[0].Name == b[0].Name {
			t.Fatalf("jobs %q… and …b share index name %q", long[:20], a[0].Name)
		}
		if ok, err := s.IndexExists(ctx, ParseIdent("tasks"), "no_such_index"); err != nil || ok {
			t.Fatalf("IndexExists(no_such_index) = %v, %v", ok, err)
		}
		// The indexed queries still run.
		wantKeys(t, "Reserve on an empty indexed table", reserveN(t, j, "w1", 5))
	})
}

// TestSchemaQualifiedTable runs a job on a table named with its schema
// ("main" on SQLite, the current schema on PostgreSQL), which Columns and
// IndexExists take into account.
func TestSchemaQualifiedTable(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		newJob(t, s, "tasks", 3, 3)
		schema := "main"
		if s.Dialect.Name() != "sqlite" {
			if err := s.DB.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
				t.Fatal(err)
			}
		}
		table := Ident{Schema: schema, Name: "tasks"}
		j := s.Job(JobSpec{Table: table, PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
			StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
		if _, ok, err := s.Dialect.Columns(ctx, s.DB, table); err != nil || !ok {
			t.Fatalf("Columns(%s) = ok %v, err %v", table, ok, err)
		}
		for _, ix := range j.Indexes("reports") {
			if _, err := s.Exec(ctx, ix.DDL); err != nil {
				t.Fatalf("create index on %s: %v\n%s", table, err, ix.DDL)
			}
			if ok, err := s.IndexExists(ctx, table, ix.Name); err != nil || !ok {
				t.Fatalf("IndexExists(%s, %s) = %v, %v", table, ix.Name, ok, err)
			}
		}
		wantKeys(t, "Reserve", reserveN(t, j, "w1", 2), 1, 2)
		f := startTask(t, j, "w1", 3)
		if !finishTask(t, j, f, Outcome{Success: true}) {
			t.Fatal("Finish on a schema-qualified table not applied")
		}
	})
}
