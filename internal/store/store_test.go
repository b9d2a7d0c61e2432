package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// dialectNames are the dialects every shared test runs against. "crdb" is
// the Cockroach dialect opened on PostgreSQL, where it forces SERIALIZABLE.
var dialectNames = []string{"sqlite", "postgres", "crdb"}

// testURL returns a fresh, empty database for the named dialect.
func testURL(t *testing.T, dialect string) string {
	t.Helper()
	if dialect == "sqlite" {
		return testdb.SQLitePath(t)
	}
	return testdb.PostgresURL(t)
}

// openRaw opens a store on url without migrating it; it is closed when the
// test ends (before its PostgreSQL schema is dropped).
func openRaw(t *testing.T, dialect, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dialect, url)
	if err != nil {
		t.Fatalf("open %s store: %v", dialect, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s store: %v", dialect, err)
		}
	})
	return s
}

// openStore opens a migrated store of the named dialect on a fresh database.
func openStore(t *testing.T, dialect string) *Store {
	t.Helper()
	s := openRaw(t, dialect, testURL(t, dialect))
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	return s
}

// forEachDialect runs fn once per dialect, each in a parallel subtest named
// after the dialect, with a migrated store on a database of its own.
func forEachDialect(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, name := range dialectNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, openStore(t, name))
		})
	}
}

// mustExec runs shared SQL ('?' placeholders) in its own transaction and
// returns the rows affected.
func mustExec(t *testing.T, s *Store, query string, args ...any) int64 {
	t.Helper()
	n, err := s.Exec(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
	return n
}

// tableExists reports whether the table is there, through the dialect's
// introspection.
func tableExists(t *testing.T, s *Store, name string) bool {
	t.Helper()
	_, ok, err := s.Dialect.Columns(context.Background(), s.DB, ParseIdent(name))
	if err != nil {
		t.Fatalf("columns of %s: %v", name, err)
	}
	return ok
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		// forEachDialect migrated once already.
		for _, table := range []string{"pampa_workers", "pampa_leader"} {
			if !tableExists(t, s, table) {
				t.Fatalf("table %s missing after Migrate", table)
			}
		}
		w := WorkerInfo{ID: "local.1", Node: "local", Host: "h", PID: 1, Instance: "i1"}
		if err := s.RegisterWorker(ctx, w, time.Minute); err != nil {
			t.Fatalf("RegisterWorker: %v", err)
		}
		if _, ok, err := s.AcquireLease(ctx, "dispatcher", "d1", time.Minute); err != nil || !ok {
			t.Fatalf("AcquireLease = ok %v, err %v", ok, err)
		}
		for i := range 2 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Migrate #%d: %v", i+2, err)
			}
		}
		ws, err := s.Workers(ctx, time.Minute)
		if err != nil {
			t.Fatalf("Workers: %v", err)
		}
		if len(ws) != 1 || ws[0].ID != "local.1" {
			t.Fatalf("workers after re-migrating = %+v, want local.1 kept", ws)
		}
		l, err := s.CurrentLease(ctx, "dispatcher")
		if err != nil || l.Holder != "d1" || l.Term != 1 {
			t.Fatalf("lease after re-migrating = %+v, %v; want d1 term 1 kept", l, err)
		}
	})
}

// TestMigrateConcurrently runs Migrate from three stores at once on an empty
// database, as processes starting together do; PostgreSQL may collide on its
// catalog when two create the same table.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	for _, name := range dialectNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for round := range 3 {
				url := testURL(t, name)
				stores := make([]*Store, 3)
				for i := range stores {
					stores[i] = openRaw(t, name, url)
				}
				start := make(chan struct{})
				errs := make([]error, len(stores))
				var wg sync.WaitGroup
				for i, s := range stores {
					wg.Go(func() {
						<-start
						errs[i] = s.Migrate(t.Context())
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("round %d: Migrate in goroutine %d: %v", round, i, err)
					}
				}
				for _, table := range []string{"pampa_workers", "pampa_leader"} {
					if !tableExists(t, stores[0], table) {
						t.Errorf("round %d: table %s missing", round, table)
					}
				}
			}
		})
	}
}

func TestOpenIsolation(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		if s.Dialect.Name() == "sqlite" {
			var mode string
			if err := s.DB.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if !strings.EqualFold(mode, "wal") {
				t.Fatalf("journal_mode = %q, want wal", mode)
			}
			return
		}
		want := map[string]string{"postgres": "read committed", "crdb": "serializable"}[s.Dialect.Name()]
		// Inside a transaction, as Store.Tx runs them.
		err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			var got string
			if err := tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&got); err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("transaction_isolation = %q, want %q", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestOpenWithoutJIT: on PostgreSQL, Pampa's sessions compile nothing,
// unless the URL says otherwise.
func TestOpenWithoutJIT(t *testing.T) {
	t.Parallel()
	url := testURL(t, "postgres")
	for _, c := range []struct{ url, want string }{
		{url, "off"},
		{withRuntimeParam(url, "jit", "on"), "on"},
	} {
		s := openRaw(t, "postgres", c.url)
		var got string
		if err := s.DB.QueryRowContext(t.Context(), `SHOW jit`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("jit = %q, want %q", got, c.want)
		}
	}
}

// TestPickStatementsPlannedEachTime: on PostgreSQL the statements that pick
// pending rows are never kept as prepared statements, whose generic plan
// could outlive the statistics it was made with; the others are.
func TestPickStatementsPlannedEachTime(t *testing.T) {
	t.Parallel()
	s := openStore(t, "postgres")
	s.DB.SetMaxOpenConns(1) // one session, whose prepared statements we list
	j := newJob(t, s, "tasks", 100, 3)
	for range 7 {
		if got := reserveShares(t, j, Share{"w1", 2}, Share{"w2", 2}); got[0]+got[1] == 0 {
			t.Fatal("nothing reserved")
		}
		if _, err := j.CountPending(t.Context(), s.DB, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := j.QueueLengths(t.Context(), s.DB); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.DB.QueryContext(t.Context(), `SELECT statement FROM pg_prepared_statements`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var prepared []string
	for rows.Next() {
		var st string
		if err := rows.Scan(&st); err != nil {
			t.Fatal(err)
		}
		prepared = append(prepared, st)
	}
	queueLengths := false
	for _, st := range prepared {
		if strings.Contains(st, "LIMIT") && strings.Contains(st, `"rid" IS NULL`) {
			t.Errorf("a statement picking pending rows was prepared:\n%s", st)
		}
		queueLengths = queueLengths || strings.Contains(st, "GROUP BY")
	}
	if !queueLengths {
		t.Errorf("the queue-length statement was not prepared (so this test sees nothing): %q", prepared)
	}
}

// TestOpenKeepsURLParameters opens each PostgreSQL dialect with a URL
// parameter holding a space: the session must see it as written.
func TestOpenKeepsURLParameters(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"postgres", "crdb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := testdb.PostgresURL(t)
			if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
				u += " application_name='nightly reports'"
			} else {
				u += "&application_name=nightly%20reports"
			}
			s := openRaw(t, name, u)
			var got string
			if err := s.DB.QueryRowContext(t.Context(), `SHOW application_name`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != "nightly reports" {
				t.Fatalf("application_name = %q, want %q", got, "nightly reports")
			}
		})
	}
}

func TestOpenUnknownDriver(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), "mysql", "x")
	if err == nil || !strings.Contains(err.Error(), "mysql") {
		t.Fatalf("Open(mysql) error = %v, want one naming the driver", err)
	}
	_, err = ByName("oracle")
	if err == nil {
		t.Fatal("ByName(oracle) succeeded")
	}
	for _, name := range dialectNames {
		d, err := ByName(name)
		if err != nil || d.Name() != name {
			t.Errorf("ByName(%q) = %v, %v", name, d, err)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	t.Parallel()
	url := "postgres://pampa:s3cr3t-pw@127.0.0.1:1/none?connect_timeout=1"
	_, err := Open(t.Context(), "postgres", url)
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error quotes the password: %v", err)
	}
}

func TestStatementCache(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		q1 := s.q(`SELECT COUNT(*) FROM pampa_workers WHERE id = ?`)
		q2 := s.q(`SELECT COUNT(*) FROM pampa_leader WHERE name = ?`)
		if s.Dialect.Name() != "sqlite" {
			// pgx caches statements per connection itself; the store
			// does not, and its queries run unprepared.
			if st := s.stmt(ctx, q1); st != nil {
				t.Fatalf("stmt on %s = %p, want nil", s.Dialect.Name(), st)
			}
			var n int
			if err := s.queryRow(ctx, s.DB, q1, "nobody").Scan(&n); err != nil || n != 0 {
				t.Fatalf("queryRow = %d, %v", n, err)
			}
			return
		}
		a, b := s.stmt(ctx, q1), s.stmt(ctx, q1)
		if a == nil || a != b {
			t.Fatalf("stmt(q1) twice = %p, %p; want the same non-nil statement", a, b)
		}
		if c := s.stmt(ctx, q2); c == nil || c == a {
			t.Fatalf("stmt(q2) = %p, want a different non-nil statement than %p", c, a)
		}
		if bad := s.stmt(ctx, "SELECT FROM WHERE nonsense"); bad != nil {
			t.Fatal("stmt of invalid SQL was cached")
		}

		// Racing callers all get the one statement.
		q3 := s.q(`SELECT holder FROM pampa_leader WHERE name = ?`)
		got := make([]*sql.Stmt, 8)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() { got[i] = s.stmt(ctx, q3) })
		}
		wg.Wait()
		for i, st := range got {
			if st == nil || st != got[0] {
				t.Fatalf("goroutine %d got statement %p, goroutine 0 got %p", i, st, got[0])
			}
		}
		if n := s.stmtCount.Load(); n != 3 {
			t.Fatalf("stmtCount = %d, want 3", n)
		}

		// The cached statement works on the pool and inside a transaction.
		var n int
		if err := s.queryRow(ctx, s.DB, q1, "nobody").Scan(&n); err != nil || n != 0 {
			t.Fatalf("queryRow on DB = %d, %v", n, err)
		}
		err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO pampa_leader (name, term) VALUES (?, 0)`), "x"); err != nil {
				return err
			}
			// Sees the transaction's own uncommitted row.
			return s.queryRow(ctx, tx, q2, "x").Scan(&n)
		})
		if err != nil || n != 1 {
			t.Fatalf("queryRow in Tx = %d, %v; want 1", n, err)
		}

		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.DB.PingContext(ctx); err == nil {
			t.Fatal("pool still usable after Close")
		}
		if err := a.QueryRowContext(ctx, "nobody").Scan(&n); err == nil {
			t.Fatal("cached statement still usable after Close")
		}
	})
}

func TestTxRollsBackOnError(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		boom := errors.New("boom")
		calls := 0
		err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO pampa_leader (name, term) VALUES (?, 0)`), "gone"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx error = %v, want boom", err)
		}
		if calls != 1 {
			t.Fatalf("fn ran %d times for a non-retryable error, want 1", calls)
		}
		l, err := s.CurrentLease(ctx, "gone")
		if err != nil || l != (Lease{}) {
			t.Fatalf("row of a rolled back Tx is visible: %+v, %v", l, err)
		}
	})
}

// sortedInts turns keys returned by the store into sorted int64s.
func sortedInts(t *testing.T, keys []any) []int64 {
	t.Helper()
	out := make([]int64, 0, len(keys))
	for _, k := range keys {
		switch v := k.(type) {
		case int64:
			out = append(out, v)
		case int32:
			out = append(out, int64(v))
		case int:
			out = append(out, int64(v))
		default:
			t.Fatalf("key %v has type %T, want an integer", k, k)
		}
	}
	slices.Sort(out)
	return out
}
