// Package enginetest sets up what the engine services' tests share: a
// migrated store on a real database (a SQLite file, or a PostgreSQL schema
// of the test's own), a task table with its tracking columns, the
// [engine.Job] over it, and readers of a row's tracking state.
//
// Packages whose tests use PostgreSQL need
//
//	func TestMain(m *testing.M) { testdb.Main(m) }
package enginetest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
	"go.uber.org/goleak"
)

// Dialects are the databases the services' tests run against.
var Dialects = []string{"sqlite", "postgres"}

// Open returns a migrated store of the named dialect on a fresh database,
// closed when the test ends (before its PostgreSQL schema is dropped).
func Open(t testing.TB, dialect string) *store.Store {
	t.Helper()
	url := ""
	if dialect == "sqlite" {
		url = testdb.SQLitePath(t)
	} else {
		url = testdb.PostgresURL(t)
	}
	return OpenURL(t, dialect, url)
}

// OpenURL opens a second store on a database Open made (another process,
// as far as the database can tell), closed when the test ends.
func OpenURL(t testing.TB, dialect, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dialect, url)
	if err != nil {
		t.Fatalf("open %s store: %v", dialect, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	return s
}

// Each runs fn in a parallel subtest per dialect, with a store of its own.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, d))
		})
	}
}

// Exec runs shared SQL ('?' placeholders) and returns the rows affected.
func Exec(t testing.TB, s *store.Store, query string, args ...any) int64 {
	t.Helper()
	n, err := s.Exec(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
	return n
}

// NewJob creates table name with rows 1..n (payload "p<i>", an empty
// result column) and returns a job over it: queue_size 5, max duration
// 1 minute, maxTry tries, max_pending_tasks 10, no hooks.
func NewJob(t testing.TB, s *store.Store, name string, n, maxTry int) *engine.Job {
	t.Helper()
	ty := s.Dialect.Types()
	Exec(t, s, fmt.Sprintf(`CREATE TABLE %s (
		id %s PRIMARY KEY, payload %s, result %s, rid %s, rtime %s, rtimes %s,
		started %s, ended %s, ok %s, why %s)`,
		store.Quote(name), ty.Int, ty.Text, ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text))
	for lo := 1; lo <= n; lo += 100 {
		hi := min(lo+99, n)
		var vals []string
		var args []any
		for i := lo; i <= hi; i++ {
			vals = append(vals, "(?, ?)")
			args = append(args, i, fmt.Sprintf("p%d", i))
		}
		Exec(t, s, `INSERT INTO `+store.Quote(name)+` (id, payload) VALUES `+strings.Join(vals, ", "), args...)
	}
	sqlj := s.Job(store.JobSpec{
		Table: store.ParseIdent(name), PrimaryKey: "id",
		ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes", StartTime: "started", EndTime: "ended",
		Success: "ok", ErrorDescription: "why", MaxTryTimes: maxTry,
	})
	// As a starting worker does: batched finishes on PostgreSQL need them.
	if err := sqlj.LoadColumnTypes(context.Background()); err != nil {
		t.Fatalf("load column types of %s: %v", name, err)
	}
	return &engine.Job{
		Name: name, SQL: sqlj, QueueSize: 5, MaxJobDuration: time.Minute, MaxPendingTasks: 10,
	}
}

// Task is a row's tracking state (and its result column).
type Task struct {
	RID      sql.NullString
	Reserved bool // reservation time set
	Tries    int64
	Started  bool
	Ended    bool
	OK       sql.NullBool
	Why      sql.NullString
	Result   sql.NullString
}

// Get reads row id of the job's table.
func Get(t testing.TB, s *store.Store, j *engine.Job, id int) Task {
	t.Helper()
	var r Task
	var tries sql.NullInt64
	err := s.DB.QueryRowContext(context.Background(), s.Dialect.Rebind(`SELECT rid, rtime IS NOT NULL, rtimes,
		started IS NOT NULL, ended IS NOT NULL, ok, why, result FROM `+j.SQL.Spec().Table.Quoted()+` WHERE id = ?`), id).
		Scan(&r.RID, &r.Reserved, &tries, &r.Started, &r.Ended, &r.OK, &r.Why, &r.Result)
	if err != nil {
		t.Fatalf("read task %d: %v", id, err)
	}
	r.Tries = tries.Int64
	return r
}

// SetAgo sets a timestamp column of rows to d before the database's now.
func SetAgo(t testing.TB, s *store.Store, j *engine.Job, col string, d time.Duration, ids ...int) {
	t.Helper()
	for _, id := range ids {
		n := Exec(t, s, `UPDATE `+j.SQL.Spec().Table.Quoted()+` SET `+store.Quote(col)+` = `+s.Dialect.Ago()+` WHERE id = ?`,
			s.Dialect.AgoArg(d), id)
		if n != 1 {
			t.Fatalf("set %s of task %d: %d rows", col, id, n)
		}
	}
}

// Reserve reserves the rows ids for worker, as the dispatcher would.
func Reserve(t testing.TB, s *store.Store, j *engine.Job, worker string, ids ...int) {
	t.Helper()
	keys := make([]any, len(ids))
	for i, id := range ids {
		keys[i] = id
	}
	got, err := j.SQL.ReserveKeys(context.Background(), s.DB, worker, keys)
	if err != nil || len(got) != len(ids) {
		t.Fatalf("reserve %v for %s: got %v, err %v", ids, worker, got, err)
	}
}

// Claim starts up to n rows reserved for worker and returns their attempts.
func Claim(t testing.TB, s *store.Store, j *engine.Job, worker string, n int) []*engine.Attempt {
	t.Helper()
	rows, err := j.SQL.Claim(context.Background(), s.DB, worker, n)
	if err != nil {
		t.Fatalf("claim %d for %s: %v", n, worker, err)
	}
	out := make([]*engine.Attempt, len(rows))
	for i, r := range rows {
		out[i] = NewAttempt(j, worker, r)
	}
	return out
}

// NewAttempt builds the attempt of a claimed row, as a worker does.
func NewAttempt(j *engine.Job, worker string, row store.Row) *engine.Attempt {
	spec := j.SQL.Spec()
	key, _ := row.Get(spec.PrimaryKey)
	a := &engine.Attempt{Job: j, Worker: worker, Row: row, Key: key, Log: Discard()}
	if v, ok := row.Get(spec.ReservationTimes); ok {
		a.Try, _ = engine.AsInt64(v)
	}
	return a
}

// Key reads an attempt's key as an int.
func Key(t testing.TB, a *engine.Attempt) int {
	t.Helper()
	k, ok := engine.AsInt64(a.Key)
	if !ok {
		t.Fatalf("key %v (%T) is not an integer", a.Key, a.Key)
	}
	return int(k)
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Logs records log lines, safe for concurrent use, and outlives the test
// (late lines from abandoned goroutines are harmless).
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// Logger returns a logger writing into l.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{l}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Contains reports whether a line holds s.
func (l *Logs) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// String is every line, for failure messages.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "")
}

type logWriter struct{ l *Logs }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	w.l.lines = append(w.l.lines, string(p))
	return len(p), nil
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with what.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// Main runs a package's tests with their databases (testdb.Run) and then
// checks that no goroutine outlived them: the services start goroutines of
// their own, and none may leak past a test. Use it as the package's
// TestMain.
func Main(m *testing.M) {
	code := testdb.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
