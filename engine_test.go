package pampa

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(standAloneMainEnv); mode != "" {
		standAloneMainChild(mode)
		return
	}
	// CockroachDB's processes meet in the temporary directory; tests that
	// abandon a client as a crash would leave their sockets there. A
	// directory of this run's own keeps them, and goes with it; others
	// may search it, as a throwaway PostgreSQL's user must.
	tmp, err := os.MkdirTemp("", "pampa-test-")
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	code := testdb.Run(m)
	os.RemoveAll(tmp)
	os.Exit(code)
}

// drivers are the dialects every engine test runs against.
var drivers = []string{DriverSQLite, DriverPostgres}

// testEnv is a cluster over a fresh `numbers` table.
type testEnv struct {
	t       *testing.T
	cluster *Cluster
	client  *Client
}

// oddJob is the README's search_odd_numbers job.
func oddJob() Job {
	return Job{
		Name: "search_odd_numbers", Table: "numbers", PrimaryKey: "value",
		Fields: TrackingFields{
			ReservationID: "odd_checking_reservation_id", ReservationTime: "odd_checking_reservation_time",
			ReservationTimes: "odd_checking_reservation_times", StartTime: "odd_checking_start_time",
			EndTime: "odd_checking_end_time", Success: "odd_checking_success",
			ErrorDescription: "odd_checking_error_description",
		},
		QueueSize: 5, MaxPendingTasks: 10, MaxAssignedWorkers: 4,
		Process: func(ctx context.Context, t *Task) error {
			v, err := t.Int64("value")
			if err != nil {
				return err
			}
			t.Set("is_odd", v%2 != 0)
			return nil
		},
	}
}

func databaseFor(t *testing.T, driver string) Database {
	t.Helper()
	switch driver {
	case DriverSQLite:
		return Database{Driver: DriverSQLite, URL: testdb.SQLitePath(t)}
	case DriverPostgres, DriverCockroach:
		return Database{Driver: driver, URL: testdb.PostgresURL(t)}
	}
	t.Fatalf("unknown driver %s", driver)
	return Database{}
}

// newEnv creates `numbers` with rows 1..rows, defines node "local" with
// 8 workers and the given jobs (oddJob when none), runs Setup and opens a
// client.
func newEnv(t *testing.T, driver string, rows int, jobs ...Job) *testEnv {
	t.Helper()
	c := &Cluster{Database: databaseFor(t, driver)}
	if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 8}); err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		jobs = []Job{oddJob()}
	}
	for _, j := range jobs {
		if err := c.AddJob(j); err != nil {
			t.Fatal(err)
		}
	}
	createNumbers(t, c.Database, rows)
	if _, err := Setup(context.Background(), c, SetupOptions{}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cl, err := Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return &testEnv{t: t, cluster: c, client: cl}
}

func createNumbers(t *testing.T, db Database, rows int) {
	t.Helper()
	cl, err := connect(context.Background(), &Cluster{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	boolType := "boolean"
	if _, err := cl.DB().Exec(`CREATE TABLE numbers (value integer PRIMARY KEY, is_odd ` + boolType + `)`); err != nil {
		t.Fatal(err)
	}
	for start := 1; start <= rows; start += 500 {
		var b strings.Builder
		b.WriteString("INSERT INTO numbers (value) VALUES ")
		for v := start; v < start+500 && v <= rows; v++ {
			if v > start {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d)", v)
		}
		if _, err := cl.DB().Exec(b.String()); err != nil {
			t.Fatal(err)
		}
	}
}

// fastDispatcher and fastWorker shrink every interval so tests run in
// seconds.
func fastDispatcher() DispatcherOptions {
	return DispatcherOptions{Delay: 20 * time.Millisecond, MaintenanceEvery: 50 * time.Millisecond,
		LeaseTTL: 2 * time.Second, WorkerTTL: 3 * time.Second, ExpiryGrace: 200 * time.Millisecond,
		ReleaseAfter: 100 * time.Millisecond}
}

func fastWorker() WorkerOptions {
	return WorkerOptions{Delay: 20 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
		HeartbeatTTL: 3 * time.Second, GracePeriod: 2 * time.Second, OverrunGrace: 200 * time.Millisecond}
}

// running is a set of goroutines started by start, stopped by stop.
type running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

func (r *running) goRun(ctx context.Context, name string, fn func(context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Errorf("%s: %w", name, err))
			r.mu.Unlock()
		}
	}()
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	for _, err := range r.errs {
		t.Error(err)
	}
}

// start runs a dispatcher and the first n workers of node "local".
func (e *testEnv) start(n int) *running {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel}
	d := e.client.NewDispatcher(fastDispatcher())
	r.goRun(ctx, "dispatcher", d.Run)
	for i := 1; i <= n; i++ {
		w, err := e.client.NewWorker(WorkerID("local", i), fastWorker())
		if err != nil {
			cancel()
			e.t.Fatal(err)
		}
		r.goRun(ctx, w.ID(), w.Run)
	}
	e.t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r
}

// waitFor polls cond until it holds or the timeout passes.
func (e *testEnv) waitFor(timeout time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) report(job string) JobReport {
	e.t.Helper()
	r, err := e.client.JobReport(context.Background(), job)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *testEnv) waitDone(job string, total int64, timeout time.Duration) JobReport {
	e.t.Helper()
	var r JobReport
	e.waitFor(timeout, job+" to finish", func() bool {
		r = e.report(job)
		return r.Completed+r.Failed == total && r.Running == 0 && r.Reserved == 0
	})
	return r
}

func (e *testEnv) count(query string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.client.DB().QueryRow(e.client.store.Dialect.Rebind(query), args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func forEachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

func TestProcessesEveryTask(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 600)
		r := e.start(4)
		rep := e.waitDone("search_odd_numbers", 600, 60*time.Second)
		r.stop(t)
		if rep.Completed != 600 || rep.Failed != 0 || rep.Pending != 0 {
			t.Fatalf("report = %+v, want 600 completed", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = TRUE`); n != 300 {
			t.Errorf("odd numbers = %d, want 300", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = TRUE AND value % 2 = 0`); n != 0 {
			t.Errorf("%d even numbers marked odd", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_times <> 1
			OR odd_checking_start_time IS NULL OR odd_checking_end_time IS NULL OR odd_checking_reservation_time IS NULL
			OR odd_checking_end_time < odd_checking_start_time OR odd_checking_error_description IS NOT NULL`); n != 0 {
			t.Errorf("%d rows with inconsistent tracking columns", n)
		}
		if n := e.count(`SELECT COUNT(DISTINCT odd_checking_reservation_id) FROM numbers`); n < 2 {
			t.Errorf("work spread over %d workers, want several", n)
		}
	})
}
