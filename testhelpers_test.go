package pampa

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Helpers shared by the hooks, stretch, validation and invariants tests.

// execRec is one run of a processing function, timed by the process clock
// (fine for overlap checks inside one process).
type execRec struct {
	key        int64
	worker     string
	try        int
	start, end time.Time
}

// execLog records every run of the processing functions it wraps.
type execLog struct {
	mu      sync.Mutex
	recs    []execRec
	running map[int64]int // runs in progress per key
	overlap []string      // keys seen running twice at once
}

// wrap returns a processing function that records each run, then calls fn
// (nil: succeed).
func (l *execLog) wrap(fn ProcessFunc) ProcessFunc {
	return func(ctx context.Context, t *Task) error {
		k, err := t.Int64(t.Job().PrimaryKey)
		if err != nil {
			return err
		}
		l.mu.Lock()
		if l.running == nil {
			l.running = map[int64]int{}
		}
		l.running[k]++
		if l.running[k] > 1 {
			l.overlap = append(l.overlap, fmt.Sprintf("key %d by %s try %d", k, t.WorkerID(), t.Try()))
		}
		l.mu.Unlock()
		start := time.Now()
		defer func() {
			end := time.Now()
			l.mu.Lock()
			l.running[k]--
			l.recs = append(l.recs, execRec{key: k, worker: t.WorkerID(), try: t.Try(), start: start, end: end})
			l.mu.Unlock()
		}()
		if fn == nil {
			return nil
		}
		return fn(ctx, t)
	}
}

func (l *execLog) snapshot() []execRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]execRec(nil), l.recs...)
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// perKey counts the finished runs of each key.
func (l *execLog) perKey() map[int64]int {
	out := map[int64]int{}
	for _, r := range l.snapshot() {
		out[r.key]++
	}
	return out
}

// checkNoOverlap fails the test if a key ever ran twice at once.
func (l *execLog) checkNoOverlap(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	overlap := append([]string(nil), l.overlap...)
	l.mu.Unlock()
	if len(overlap) > 0 {
		t.Errorf("tasks executed concurrently: %s", strings.Join(overlap, "; "))
	}
	byKey := map[int64][]execRec{}
	for _, r := range l.snapshot() {
		byKey[r.key] = append(byKey[r.key], r)
	}
	for k, rs := range byKey {
		for i := 1; i < len(rs); i++ {
			if rs[i].start.Before(rs[i-1].end) {
				t.Errorf("key %d: run by %s (try %d) started before the run by %s (try %d) ended",
					k, rs[i].worker, rs[i].try, rs[i-1].worker, rs[i-1].try)
			}
		}
	}
}

// steadyDispatcher and steadyWorker are the fast options with a worker TTL
// long enough that a loaded test machine never makes a healthy worker look
// dead; tests that kill workers on purpose shorten it again.
func steadyDispatcher() *DispatcherOptions {
	o := fastDispatcher()
	o.WorkerTTL = 30 * time.Second
	return &o
}

func steadyWorker() WorkerOptions {
	o := fastWorker()
	o.HeartbeatTTL = 30 * time.Second
	return o
}

// startIDs runs a dispatcher with dopts (none if nil) and the named workers.
func (e *testEnv) startIDs(dopts *DispatcherOptions, wopts WorkerOptions, ids ...string) (*running, map[string]*Worker) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel}
	ws := map[string]*Worker{}
	for _, id := range ids {
		w, err := e.client.NewWorker(id, wopts)
		if err != nil {
			cancel()
			e.t.Fatal(err)
		}
		ws[id] = w
	}
	if dopts != nil {
		r.goRun(ctx, "dispatcher", e.client.NewDispatcher(*dopts).Run)
	}
	for _, id := range ids {
		r.goRun(ctx, id, ws[id].Run)
	}
	e.t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r, ws
}

// waitJob is waitDone that, on a timeout, says where things stood: the
// job's report, the worker registry and the rows not yet done.
func (e *testEnv) waitJob(job string, total int64, timeout time.Duration) JobReport {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := e.report(job)
		if r.Completed+r.Failed == total && r.Running == 0 && r.Reserved == 0 {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s to finish: %+v\n%s", timeout, job, r, e.dump(job))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState is waitFor that, on a timeout, dumps the registry and a job's
// unfinished rows.
func (e *testEnv) waitState(timeout time.Duration, what, job string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, e.dump(job))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump describes the registry and a job's unfinished rows.
func (e *testEnv) dump(job string) string {
	var b strings.Builder
	ws, err := e.client.store.Workers(context.Background(), time.Minute)
	fmt.Fprintf(&b, "workers (err %v):\n", err)
	for _, w := range ws {
		fmt.Fprintf(&b, "  %s state=%s job=%q heartbeat %.1fs ago jobs=%v\n", w.ID, w.State, w.Job, w.LastBeat.Seconds(), w.Jobs)
	}
	j, err := e.client.job(job)
	if err != nil {
		return b.String()
	}
	f := j.Fields
	rows, err := e.client.DB().Query(fmt.Sprintf(`SELECT CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT)
		FROM %s WHERE %s IS NULL OR %s <> TRUE ORDER BY 1 LIMIT 20`, j.PrimaryKey, f.ReservationID, f.ReservationTimes, f.StartTime, f.EndTime, f.ErrorDescription,
		j.Table, f.Success, f.Success))
	if err != nil {
		fmt.Fprintf(&b, "rows: %v\n", err)
		return b.String()
	}
	defer rows.Close()
	b.WriteString("rows not done (key, worker, tries, start, end, error):\n")
	for rows.Next() {
		var v [6]sql.NullString
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]); err != nil {
			break
		}
		fmt.Fprintf(&b, "  %v\n", v)
	}
	return b.String()
}

// startRegistered starts the named workers, waits until they are all in
// the registry, then starts a dispatcher: its first stretch pass sees every
// worker, however slowly they came up. stop stops them all.
func (e *testEnv) startRegistered(ids ...string) (stop func(t *testing.T), ws map[string]*Worker) {
	e.t.Helper()
	r, ws := e.startIDs(nil, steadyWorker(), ids...)
	e.waitFor(30*time.Second, "the workers to register", func() bool {
		return e.count(`SELECT COUNT(*) FROM pampa_workers WHERE state = 'running'`) == int64(len(ids))
	})
	rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
	return func(t *testing.T) { rd.stop(t); r.stop(t) }, ws
}

// exec runs a statement written with '?' placeholders.
func (e *testEnv) exec(query string, args ...any) {
	e.t.Helper()
	if _, err := e.client.DB().Exec(e.client.store.Dialect.Rebind(query), args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// jobSQL returns a job's generated statements.
func (e *testEnv) jobSQL(name string) *store.JobSQL {
	e.t.Helper()
	j, err := e.client.job(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return j.sql
}

// tx runs fn in a write transaction of the store.
func (e *testEnv) tx(fn func(ctx context.Context, tx *sql.Tx) error) {
	e.t.Helper()
	if err := e.client.store.Tx(context.Background(), fn); err != nil {
		e.t.Fatal(err)
	}
}

// rowState is a row's tracking columns as text, for before/after checks.
func (e *testEnv) rowState(key int64) string {
	e.t.Helper()
	var vals [8]sql.NullString
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err := e.client.DB().QueryRow(e.client.store.Dialect.Rebind(`SELECT
		CAST(odd_checking_reservation_id AS TEXT), CAST(odd_checking_reservation_time AS TEXT),
		CAST(odd_checking_reservation_times AS TEXT), CAST(odd_checking_start_time AS TEXT),
		CAST(odd_checking_end_time AS TEXT), CAST(odd_checking_success AS TEXT),
		CAST(odd_checking_error_description AS TEXT), CAST(is_odd AS TEXT)
		FROM numbers WHERE value = ?`), key).Scan(ptrs...)
	if err != nil {
		e.t.Fatal(err)
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = "NULL"
		if v.Valid {
			parts[i] = v.String
		}
	}
	return strings.Join(parts, " | ")
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recvWithin waits for a value on ch.
func recvWithin[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
	var zero T
	return zero
}

// withProcess returns the README job with another processing function.
func withProcess(fn ProcessFunc) Job {
	j := oddJob()
	j.Process = fn
	return j
}

// isOdd is the README job's work: mark whether the value is odd.
func isOdd(ctx context.Context, t *Task) error {
	v, err := t.Int64("value")
	if err != nil {
		return err
	}
	t.Set("is_odd", v%2 != 0)
	return nil
}

// rebindFor turns '?' placeholders into the driver's.
func rebindFor(t *testing.T, driver, query string) string {
	t.Helper()
	d, err := store.ByName(driver)
	if err != nil {
		t.Fatal(err)
	}
	return d.Rebind(query)
}

// queryInts runs a query returning one integer column.
func queryInts(ctx context.Context, db Querier, query string, args ...any) ([]any, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []any
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// truthy reads a boolean column as either driver returns it.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case string:
		return x == "1" || strings.EqualFold(x, "true")
	case []byte:
		return string(x) == "1" || strings.EqualFold(string(x), "true")
	}
	return false
}

// variants runs fn for the Go and the SQL form of a hook, on each driver.
func variants(t *testing.T, fn func(t *testing.T, driver string, sqlHook bool)) {
	for _, v := range []string{"Go", "SQL"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			forEachDriver(t, func(t *testing.T, driver string) { fn(t, driver, v == "SQL") })
		})
	}
}
