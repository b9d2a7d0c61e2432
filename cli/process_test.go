package cli

// End-to-end tests of separate OS processes: the test binary re-runs
// itself as a Pampa program (dispatcher, workers, report) over a real
// SQLite file or PostgreSQL schema.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/testdb"
)

const envTestProgram = "PAMPA_TEST_PROGRAM"

func TestMain(m *testing.M) {
	switch os.Getenv(envTestProgram) {
	case "1":
		Main(testProgram())
		return
	case stockProgram:
		Main(&Program{}) // cmd/pampa's main: no processing function compiled in
		return
	}
	testdb.Main(m)
}

// testProgram is the program the child processes run: search_odd_numbers,
// recording every execution in the `executions` table. PAMPA_TEST_SLEEP
// makes each task take that long.
func testProgram() *Program {
	sleep, _ := time.ParseDuration(os.Getenv("PAMPA_TEST_SLEEP"))
	return &Program{Name: "testprog", Handlers: map[string]pampa.ProcessFunc{
		"search_odd_numbers": func(ctx context.Context, t *pampa.Task) error {
			start := time.Now().UnixNano()
			v, err := t.Int64("value")
			if err != nil {
				return err
			}
			if sleep > 0 {
				select {
				case <-time.After(sleep):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			t.Set("is_odd", v%2 != 0)
			insert := `INSERT INTO executions (value, worker, try, started_ns, ended_ns) VALUES (?, ?, ?, ?, ?)`
			if os.Getenv("PAMPA_TEST_DRIVER") != pampa.DriverSQLite {
				insert = `INSERT INTO executions (value, worker, try, started_ns, ended_ns) VALUES ($1, $2, $3, $4, $5)`
			}
			_, err = t.DB().ExecContext(ctx, insert,
				v, t.WorkerID(), t.Try(), start, time.Now().UnixNano())
			return err
		},
	}}
}

// procEnv is a config file over a seeded numbers table.
type procEnv struct {
	t      *testing.T
	dir    string
	config string
	db     *sql.DB
	driver string
}

func newProcEnv(t *testing.T, driver string, rows int) *procEnv {
	t.Helper()
	dir := t.TempDir()
	var url string
	if driver == pampa.DriverSQLite {
		url = filepath.Join(dir, "tasks.db")
	} else {
		url = testdb.PostgresURL(t)
	}
	config := filepath.Join(dir, "pampa.yaml")
	yaml := fmt.Sprintf(`database:
  driver: %s
  url: %q
nodes:
  - name: local
    max_workers: 6
jobs:
  - name: search_odd_numbers
    table: numbers
    field_primary_key: value
    field_id: odd_checking_reservation_id
    field_time: odd_checking_reservation_time
    field_times: odd_checking_reservation_times
    field_start_time: odd_checking_start_time
    field_end_time: odd_checking_end_time
    field_success: odd_checking_success
    field_error_description: odd_checking_error_description
    queue_size: 5
    max_pending_tasks: 20
    max_try_times: 5
`, driver, url)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := pampa.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	e := &procEnv{t: t, dir: dir, config: config, db: client.DB(), driver: driver}
	e.exec(`CREATE TABLE numbers (value INTEGER PRIMARY KEY, is_odd BOOLEAN)`)
	e.exec(`CREATE TABLE executions (value INTEGER, worker TEXT, try INTEGER, started_ns BIGINT, ended_ns BIGINT)`)
	for start := 1; start <= rows; start += 500 {
		var b strings.Builder
		b.WriteString("INSERT INTO numbers (value) VALUES ")
		for v := start; v < start+500 && v <= rows; v++ {
			if v > start {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "(%d)", v)
		}
		e.exec(b.String())
	}
	if out, code := e.cli("setup"); code != 0 {
		t.Fatalf("setup: exit %d\n%s", code, out)
	}
	return e
}

func (e *procEnv) exec(q string) {
	e.t.Helper()
	if _, err := e.db.Exec(q); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

func (e *procEnv) count(q string) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(q).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// command builds a child process running the test program.
func (e *procEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append(args, "--config", e.config)...)
	cmd.Env = append(os.Environ(), envTestProgram+"=1", "PAMPA_TEST_DRIVER="+e.driver)
	cmd.Dir = e.dir
	return cmd
}

// cli runs a command to its end and returns its combined output.
func (e *procEnv) cli(args ...string) (string, int) {
	e.t.Helper()
	cmd := e.command(args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		e.t.Fatalf("%v: %v", args, err)
	}
	return string(out), 0
}

// proc is a running child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// syncBuffer is a buffer a child process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (e *procEnv) start(name string, env []string, args ...string) *proc {
	e.t.Helper()
	cmd := e.command(args...)
	cmd.Env = append(cmd.Env, env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if e.t.Failed() {
			e.t.Logf("--- output of %s:\n%s", name, out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; the process must exit with status 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", p.name, err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.done <- <-p.done
}

// The intervals are short so the tests run in seconds, and loose enough
// that a loaded machine does not make a healthy worker look dead.
var fastDispatcherArgs = []string{"dispatcher", "--delay", "50ms", "--worker-ttl", "5s", "--lease-ttl", "10s", "--log-dir", "logs"}

func workerArgs(id string) []string {
	return []string{"worker", "--id", id, "--delay", "50ms", "--heartbeat", "1s", "--log-dir", "logs"}
}

// report runs `report --json` in a child process.
func (e *procEnv) report() pampa.JobReport {
	e.t.Helper()
	out, code := e.cli("report", "--json")
	if code != 0 {
		e.t.Fatalf("report: exit %d\n%s", code, out)
	}
	var rs []pampa.JobReport
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
		e.t.Fatalf("report --json: %v\n%s", err, out)
	}
	return rs[0]
}

func (e *procEnv) waitFor(timeout time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// execution is one run of the processing function.
type execution struct {
	value, try int
	worker     string
	start, end int64
}

// executions lists each task's runs, first started first.
func (e *procEnv) executions() map[int][]execution {
	e.t.Helper()
	rows, err := e.db.Query(`SELECT value, worker, try, started_ns, ended_ns FROM executions ORDER BY value, started_ns`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int][]execution{}
	for rows.Next() {
		var x execution
		if err := rows.Scan(&x.value, &x.worker, &x.try, &x.start, &x.end); err != nil {
			e.t.Fatal(err)
		}
		out[x.value] = append(out[x.value], x)
	}
	return out
}

// checkOutcome asserts that every task succeeded with the right answer.
func (e *procEnv) checkOutcome(rows int) {
	e.t.Helper()
	if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE`); n != rows {
		e.t.Errorf("succeeded tasks = %d, want %d", n, rows)
	}
	if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = TRUE`); n != rows/2 {
		e.t.Errorf("odd numbers = %d, want %d", n, rows/2)
	}
}

func processDrivers(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range []string{pampa.DriverSQLite, pampa.DriverPostgres} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// TestSeparateProcesses runs a dispatcher and three workers as separate
// processes over one database.
func TestSeparateProcesses(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows = 1500
		e := newProcEnv(t, driver, rows)
		d := e.start("dispatcher", nil, fastDispatcherArgs...)
		var ws []*proc
		for i := 1; i <= 3; i++ {
			ws = append(ws, e.start("worker", nil, workerArgs(fmt.Sprintf("local.%d", i))...))
		}
		e.waitFor(90*time.Second, "all tasks done", func() bool { r := e.report(); return r.Completed == rows })
		for _, w := range ws {
			w.stop(t)
		}
		d.stop(t)
		e.checkOutcome(rows)
		for v, xs := range e.executions() {
			if len(xs) != 1 {
				t.Errorf("task %d ran %d times with healthy workers: %+v", v, len(xs), xs)
			}
		}
		for _, f := range []string{"dispatcher.log", "worker.local.1.log", "worker.local.3.log"} {
			if st, err := os.Stat(filepath.Join(e.dir, "logs", f)); err != nil || st.Size() == 0 {
				t.Errorf("log file %s: %v", f, err)
			}
		}
		var workers int
		if err := e.db.QueryRow(`SELECT COUNT(*) FROM pampa_workers WHERE state = 'stopped'`).Scan(&workers); err != nil || workers != 3 {
			t.Errorf("stopped workers in the registry = %d (%v), want 3", workers, err)
		}
	})
}

// TestKilledWorkerLosesNothing SIGKILLs a worker in the middle of a run:
// its reserved and running tasks are handed on and every task succeeds.
func TestKilledWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows = 400
		e := newProcEnv(t, driver, rows)
		slow := []string{"PAMPA_TEST_SLEEP=20ms"}
		e.start("dispatcher", nil, fastDispatcherArgs...)
		victim := e.start("worker local.1", slow, workerArgs("local.1")...)
		e.start("worker local.2", slow, workerArgs("local.2")...)
		e.waitFor(60*time.Second, "local.1 to be mid-run", func() bool {
			return e.count(`SELECT COUNT(*) FROM executions WHERE worker = 'local.1'`) >= 10 &&
				e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_end_time IS NULL`) > 0
		})
		victim.kill()
		e.waitFor(90*time.Second, "all tasks done", func() bool { r := e.report(); return r.Completed == rows })
		e.checkOutcome(rows)
		if r := e.report(); r.Failed != 0 || r.Pending != 0 || r.Running != 0 || r.Reserved != 0 {
			t.Errorf("report after the run = %+v", r)
		}
		for v, xs := range e.executions() {
			for _, x := range xs[1:] {
				if x.worker != "local.2" || xs[0].worker != "local.1" {
					t.Errorf("task %d ran again although its first worker was healthy: %+v", v, xs)
				}
			}
		}
	})
}

// TestTwoDispatchers runs two dispatcher processes at once: one leads,
// and no task is reserved twice or run twice.
func TestTwoDispatchers(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows = 1000
		e := newProcEnv(t, driver, rows)
		d1 := e.start("dispatcher 1", nil, append(fastDispatcherArgs, "--log=false")...)
		d2 := e.start("dispatcher 2", nil, append(fastDispatcherArgs, "--log=false")...)
		for i := 1; i <= 4; i++ {
			e.start("worker", nil, workerArgs(fmt.Sprintf("local.%d", i))...)
		}
		e.waitFor(90*time.Second, "all tasks done", func() bool { r := e.report(); return r.Completed == rows })
		// Before either stops (after which the other rightly takes over),
		// exactly one has led.
		led1, led2 := strings.Contains(d1.out.String(), "leading"), strings.Contains(d2.out.String(), "leading")
		if led1 == led2 {
			t.Errorf("dispatcher 1 led: %v, dispatcher 2 led: %v; want exactly one leader", led1, led2)
		}
		d1.stop(t)
		d2.stop(t)
		e.checkOutcome(rows)
		for v, xs := range e.executions() {
			if len(xs) != 1 {
				t.Errorf("task %d ran %d times: %+v", v, len(xs), xs)
			}
		}
	})
}

// TestRestartedWorkerTakesItsIDBack SIGKILLs a worker and starts it again
// under the same id at once: the old process is gone, so the new one
// registers without waiting out the heartbeat TTL, relaunches the tasks
// the old one left running, and finishes the job.
func TestRestartedWorkerTakesItsIDBack(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows = 200
		e := newProcEnv(t, driver, rows)
		slow := []string{"PAMPA_TEST_SLEEP=20ms"}
		// A 30s TTL: waiting it out would miss every deadline below.
		e.start("dispatcher", nil, "dispatcher", "--delay", "50ms", "--worker-ttl", "30s", "--lease-ttl", "10s", "--log-dir", "logs")
		args := []string{"worker", "--id", "local.1", "--delay", "50ms", "--heartbeat", "10s", "--log-dir", "logs"}
		victim := e.start("worker local.1", slow, args...)
		e.waitFor(60*time.Second, "local.1 to be mid-run", func() bool {
			return e.count(`SELECT COUNT(*) FROM executions WHERE worker = 'local.1'`) >= 10 &&
				e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_end_time IS NULL`) > 0
		})
		victim.kill()
		restarted := e.start("worker local.1 again", slow, args...)
		e.waitFor(20*time.Second, "the restarted worker to finish the job", func() bool {
			select {
			case err := <-restarted.done:
				restarted.done <- err
				t.Fatalf("the restarted worker exited (%v) instead of taking its id back:\n%s", err, restarted.out.String())
			default:
			}
			return e.report().Completed == rows
		})
		var pid int
		if err := e.db.QueryRow(`SELECT pid FROM pampa_workers WHERE id = 'local.1'`).Scan(&pid); err != nil ||
			pid != restarted.cmd.Process.Pid {
			t.Errorf("registry pid of local.1 = %d (%v), want the restarted process's %d", pid, err, restarted.cmd.Process.Pid)
		}
		restarted.stop(t)
		e.checkOutcome(rows)
		if r := e.report(); r.Failed != 0 || r.Pending != 0 || r.Running != 0 || r.Reserved != 0 {
			t.Errorf("report after the run = %+v", r)
		}
	})
}
