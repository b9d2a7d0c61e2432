package pampa

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/proc"
)

// oddScript reads the task from stdin with sed (no JSON parser: POSIX sh
// only) and prints whether its value is odd. It keeps its input in
// $DIR/in.<value>.json and counts its runs in $DIR/runs.<value>.
const oddScript = `in=$(cat)
v=$(printf '%s' "$in" | sed -n 's/.*"value":\([0-9]*\).*/\1/p')
printf '%s\n' "$in" > "$DIR/in.$v.json"
echo run >> "$DIR/runs.$v"
`

// execJob is the README job with its processing function as a script.
func execJob(t *testing.T, body string, mode ExecMode) (Job, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "odd.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	j := oddJob()
	j.Process = nil
	j.Exec = &ExecSpec{Command: []string{"./odd.sh"}, Dir: dir, Env: map[string]string{"DIR": dir}, Mode: mode}
	return j, dir
}

// runsOf counts the runs a script recorded for value v.
func runsOf(t *testing.T, dir string, v int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs."+strconv.Itoa(v)))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run")
}

// An exec job runs with no Go function: the command gets the task as
// JSON (its row, key, try, worker and deadline) and the columns it
// prints are written with the outcome.
func TestExecJobProcessesTasks(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job, dir := execJob(t, oddScript+`if [ $((v % 2)) = 1 ]; then echo '{"is_odd": true}'; else echo '{"is_odd": false}'; fi`, ExecOnce)
		job.MaxJobDuration = time.Minute
		e := newEnv(t, driver, 40, job)
		start := time.Now()
		r := e.start(2)
		rep := e.waitDone(job.Name, 40, 60*time.Second)
		r.stop(t)
		if rep.Completed != 40 {
			t.Fatalf("report = %+v, want 40 completed", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != 40 {
			t.Errorf("%d rows with is_odd right, want 40", n)
		}
		data, err := os.ReadFile(filepath.Join(dir, "in.7.json"))
		if err != nil {
			t.Fatal(err)
		}
		var in struct {
			Job      string
			Key      int64
			Try      int
			Worker   string
			Deadline time.Time
			Row      map[string]any
		}
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("input %s: %v", data, err)
		}
		if in.Job != job.Name || in.Key != 7 || in.Try != 1 || !strings.HasPrefix(in.Worker, "local.") ||
			in.Row["value"] != 7.0 || in.Row["odd_checking_reservation_times"] != 1.0 || in.Row["is_odd"] != nil {
			t.Errorf("input = %+v", in)
		}
		if d := in.Deadline.Sub(start); d < 59*time.Second || d > 2*time.Minute {
			t.Errorf("deadline %v is %s after the start, want max_job_duration (1m)", in.Deadline, d)
		}
	})
}

// What the command says becomes the try's outcome: exit status 100 fails
// the task for good at once; columns the table lacks, or tracking
// columns, fail the try; another status fails it with its stderr, and the
// task is tried again.
func TestExecJobOutcomes(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job, dir := execJob(t, oddScript+`case $v in
  1) echo "row $v is not a number I know" >&2; exit 100 ;;
  2) echo '{"is_odd": true, "nope": 1, "neither": 2}' ;;
  3) echo '{"odd_checking_success": true}' ;;
  4) case "$in" in *'"try":1,'*) echo 'flaky' >&2; exit 1 ;; esac; echo '{"is_odd": false}' ;;
  5) echo '{"is_odd": true}' ;;
esac`, ExecOnce)
		job.MaxTryTimes = 3
		e := newEnv(t, driver, 5, job)
		r := e.start(1)
		rep := e.waitDone(job.Name, 5, 60*time.Second)
		r.stop(t)
		if rep.Completed != 2 || rep.Failed != 3 {
			t.Errorf("report = %+v, want 2 completed (4, 5) and 3 failed", rep)
		}
		for _, tt := range []struct {
			v    int
			runs int
			want []string // in the row's state
		}{
			{1, 1, []string{"| 3 |", "failed for good (exit status 100)", "row 1 is not a number I know"}},
			{2, 3, []string{"| 3 |", `the function set columns that table numbers does not have: "neither", "nope"`, "| NULL"}},
			{3, 3, []string{`Set("odd_checking_success"): field_success is a tracking column`}},
			{4, 2, []string{"| 2 |"}},
			{5, 1, []string{"| 1 |"}},
		} {
			if got := runsOf(t, dir, tt.v); got != tt.runs {
				t.Errorf("task %d ran %d times, want %d", tt.v, got, tt.runs)
			}
			st := e.rowState(int64(tt.v))
			for _, w := range tt.want {
				if !strings.Contains(st, w) {
					t.Errorf("task %d: row %s\nwant it to contain %q", tt.v, st, w)
				}
			}
		}
	})
}

// A persistent command serves many tasks from one process per slot; the
// worker stops its processes when it stops.
func TestExecPersistentJob(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job, _ := execJob(t, `while IFS= read -r in; do
  v=$(printf '%s' "$in" | sed -n 's/.*"value":\([0-9]*\).*/\1/p')
  if [ $((v % 2)) = 1 ]; then odd=true; else odd=false; fi
  printf '{"ok": true, "set": {"is_odd": %s, "pid": %d}}\n' $odd $$
done`, ExecPersistent)
		e := newEnv(t, driver, 60, job)
		e.exec(`ALTER TABLE numbers ADD COLUMN pid INTEGER`)
		wopts := steadyWorker()
		wopts.Concurrency = 2
		r, _ := e.startIDs(steadyDispatcher(), wopts, "local.1")
		rep := e.waitDone(job.Name, 60, 60*time.Second)
		r.stop(t)
		if rep.Completed != 60 {
			t.Fatalf("report = %+v", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != 60 {
			t.Errorf("%d rows with is_odd right, want 60", n)
		}
		pids := e.ints(`SELECT DISTINCT pid FROM numbers`)
		if len(pids) < 1 || len(pids) > 2 {
			t.Errorf("60 tasks on 2 slots ran in processes %v, want one or two", pids)
		}
		for _, pid := range pids {
			if !proc.Gone(int(pid), "") {
				t.Errorf("persistent process %d still runs after its worker stopped", pid)
			}
		}
	})
}

// The try's deadline (max_job_duration) holds for commands: one still
// running is killed with its children and the task tried again; in
// persistent mode, the next task gets a fresh process.
func TestExecDeadline(t *testing.T) {
	t.Parallel()
	for _, mode := range []ExecMode{ExecOnce, ExecPersistent} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			forEachDriver(t, func(t *testing.T, driver string) {
				once := oddScript + `if [ "$v" = 1 ]; then sleep 60 & echo $! >> "$DIR/children"; wait; fi
echo '{"is_odd": true}'`
				persistent := `while IFS= read -r in; do
  case "$in" in *'"key":1,'*) sleep 60 & echo $! >> "$DIR/children"; wait ;; esac
  echo '{"ok": true, "set": {"is_odd": true}}'
done`
				body := once
				if mode == ExecPersistent {
					body = persistent
				}
				job, dir := execJob(t, body, mode)
				job.MaxJobDuration = 1200 * time.Millisecond
				job.MaxTryTimes = 2
				e := newEnv(t, driver, 4, job)
				r := e.start(1)
				rep := e.waitDone(job.Name, 4, 60*time.Second)
				r.stop(t)
				if rep.Completed != 3 || rep.Failed != 1 {
					t.Errorf("report = %+v, want 3 completed, 1 failed", rep)
				}
				if st := e.rowState(1); !strings.Contains(st, "timed out after max_job_duration 1.2s") || !strings.Contains(st, "when its try ended") {
					t.Errorf("task 1: row %s, want timed out", st)
				}
				b, err := os.ReadFile(filepath.Join(dir, "children"))
				if err != nil {
					t.Fatal(err)
				}
				// One child per try of task 1 that got as far as starting
				// it: on a loaded machine a try may be killed at its
				// deadline before its script reached the sleep.
				children := strings.Fields(string(b))
				if len(children) < 1 || len(children) > 2 {
					t.Errorf("children started %v, want one per try of task 1 (two tries)", children)
				}
				for _, c := range children {
					pid, _ := strconv.Atoi(c)
					if !proc.Gone(pid, "") {
						t.Errorf("the child %d of a command killed at its deadline still runs", pid)
					}
				}
			})
		})
	}
}

// A shell command, with env: one string under /bin/sh -c.
func TestExecShell(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := oddJob()
		job.Process = nil
		job.Exec = &ExecSpec{Shell: true, Env: map[string]string{"ODD": "true", "EVEN": "false"},
			Command: []string{`v=$(sed -n 's/.*"value":\([0-9]*\).*/\1/p'); [ $((v % 2)) = 1 ] && w=$ODD || w=$EVEN; echo "{\"is_odd\": $w}" | cat`}}
		e := newEnv(t, driver, 10, job)
		r := e.start(1)
		e.waitDone(job.Name, 10, 60*time.Second)
		r.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != 10 {
			t.Errorf("%d rows with is_odd right, want 10", n)
		}
	})
}

// A worker does not start without its command's program or directory.
func TestExecWorkerChecksTheProgram(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "odd.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		x    ExecSpec
		want string
	}{
		{"NotInPath", ExecSpec{Command: []string{"pampa-no-such-program"}}, `job "search_odd_numbers": exec pampa-no-such-program: program "pampa-no-such-program" not found in PATH`},
		{"NoFile", ExecSpec{Command: []string{"./missing.sh"}, Dir: dir}, "program " + filepath.Join(dir, "missing.sh") + ": stat"},
		{"NotExecutable", ExecSpec{Command: []string{"./odd.sh"}, Dir: dir}, "is not an executable file"},
		{"NoDir", ExecSpec{Command: []string{"cat"}, Dir: filepath.Join(dir, "nowhere")}, "dir " + filepath.Join(dir, "nowhere") + ": not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := oddJob()
			job.Process = nil
			job.Exec = &tt.x
			e := newEnv(t, DriverSQLite, 1, job)
			_, err := e.client.NewWorker("local.1", fastWorker())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "worker local.1: ") {
				t.Errorf("NewWorker = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// ints runs a query returning one integer column.
func (e *testEnv) ints(query string) []int64 {
	e.t.Helper()
	rows, err := e.client.DB().Query(query)
	if err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}
