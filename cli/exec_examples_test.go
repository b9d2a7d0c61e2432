package cli

// The examples of examples/exec, run by the stock binary: the test binary
// with PAMPA_TEST_PROGRAM=stock runs cli.Main(&cli.Program{}), which is
// all cmd/pampa does. Their processing functions are commands, in sh and
// Python; no Go code of theirs is compiled in.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

const stockProgram = "stock"

// python3Dir is the directory of a python3 to run the examples with, put
// first in their PATH. A real interpreter is preferred to a version
// manager's shim (pyenv's costs 150 ms per start, every task). The
// examples need python3: without one the test fails, saying so.
func python3Dir(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "/usr/local/bin/python3"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return filepath.Dir(p)
		}
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not found (in /usr/bin, /usr/local/bin or PATH): the exec examples' tests need it; install Python 3 (apt-get install python3)")
	}
	return filepath.Dir(p)
}

// example is a copy of examples/exec in a directory of its own, with its
// exec line replaced by execLines ("" keeps it).
type example struct {
	t     *testing.T
	dir   string
	pyDir string
}

func newExample(t *testing.T, execLines string) *example {
	t.Helper()
	src := filepath.Join("..", "examples", "exec")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, ent := range entries {
		if ent.IsDir() || strings.HasPrefix(ent.Name(), "odd.db") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := ent.Info()
		if ent.Name() == "pampa.yaml" && execLines != "" {
			const line = "    exec: [python3, odd.py]\n"
			if !strings.Contains(string(data), line) {
				t.Fatalf("examples/exec/pampa.yaml has no line %q", line)
			}
			data = []byte(strings.Replace(string(data), line, execLines+"\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return &example{t: t, dir: dir, pyDir: python3Dir(t)}
}

// command runs in the example's directory with python3 first in PATH;
// pampa commands run the stock program.
func (x *example) command(name string, args ...string) *exec.Cmd {
	if name == "pampa" {
		name = os.Args[0]
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = x.dir
	cmd.Env = append(os.Environ(), envTestProgram+"="+stockProgram, "PATH="+x.pyDir+":"+os.Getenv("PATH"))
	return cmd
}

func (x *example) run(name string, args ...string) string {
	x.t.Helper()
	out, err := x.command(name, args...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// check asserts that every task succeeded with the right answer.
func (x *example) check(rows int) {
	x.t.Helper()
	c, err := pampa.LoadConfig(filepath.Join(x.dir, "pampa.yaml"))
	if err != nil {
		x.t.Fatal(err)
	}
	client, err := pampa.Connect(context.Background(), c)
	if err != nil {
		x.t.Fatal(err)
	}
	defer client.Close()
	var done, right int
	err = client.DB().QueryRow(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN is_odd = (value % 2 = 1) THEN 1 ELSE 0 END), 0)
		FROM numbers WHERE odd_checking_success = TRUE`).Scan(&done, &right)
	if err != nil {
		x.t.Fatal(err)
	}
	if done != rows || right != rows {
		x.t.Errorf("%d tasks succeeded, %d with is_odd right; want %d", done, right, rows)
	}
}

// Each example processes 200 tasks under `pampa run --until-done`.
func TestExecExamples(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, exec string }{
		{"Python", ""},
		{"Shell", "    exec: [./odd.sh]"},
		{"PythonPersistent", "    exec: [python3, odd_persistent.py]\n    mode: persistent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x := newExample(t, tt.exec)
			x.run("python3", "seed.py", "200")
			x.run("pampa", "setup")
			out := x.run("pampa", "run", "--until-done", "--workers", "10", "--concurrency", "4", "--delay", "50ms", "--progress=false", "--log=false")
			x.check(200)
			if t.Failed() {
				t.Logf("pampa run:\n%s", out)
			}
		})
	}
}

// `pampa worker` runs an exec job too: a dispatcher and two workers as
// processes of the stock binary, the workers stopping their persistent
// processes when they stop.
func TestExecExampleSeparateWorkers(t *testing.T) {
	t.Parallel()
	x := newExample(t, "    exec: [python3, odd_persistent.py]\n    mode: persistent")
	x.run("python3", "seed.py", "200")
	x.run("pampa", "setup")
	var procs []*exec.Cmd
	for _, args := range [][]string{
		{"dispatcher", "--delay", "50ms", "--log=false"},
		{"worker", "--id", "local.1", "--delay", "50ms", "--concurrency", "2", "--log=false"},
		{"worker", "--id", "local.2", "--delay", "50ms", "--concurrency", "2", "--log=false"},
	} {
		cmd := x.command("pampa", args...)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("--- %v:\n%s", args, out)
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(x.run("pampa", "report"), "200") || !strings.Contains(x.run("pampa", "report", "--json"), `"completed": 200`) {
		if time.Now().After(deadline) {
			t.Fatalf("not done after 60s:\n%s", x.run("pampa", "report"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The persistent processes run in the example's directory, each
	// worker keeping one per slot.
	if n := len(x.processesIn()) - len(procs); n < 1 || n > 4 {
		t.Errorf("%d processes beside pampa's run in the example's directory, want one to four persistent ones", n)
	}
	for _, cmd := range procs {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("%v after SIGTERM: %v", cmd.Args[1:], err)
		}
	}
	x.check(200)
	if pids := x.processesIn(); len(pids) > 0 {
		t.Errorf("persistent processes %v still run after their workers stopped", pids)
	}
}

// processesIn lists the processes whose working directory is the
// example's (Linux: /proc/PID/cwd), but for zombies.
func (x *example) processesIn() []string {
	x.t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		x.t.Fatalf("cannot list processes: %v", err)
	}
	var pids []string
	for _, ent := range entries {
		cwd, err := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd"))
		if err != nil || cwd != x.dir {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue
		}
		pids = append(pids, ent.Name())
	}
	return pids
}

// A program that compiles in a Go function for a job the config runs as
// a command is refused, naming both.
func TestHandlerForExecJob(t *testing.T) {
	t.Parallel()
	x := newExample(t, "")
	var stdout, stderr strings.Builder
	p := &Program{Handlers: map[string]pampa.ProcessFunc{"search_odd_numbers": func(context.Context, *pampa.Task) error { return nil }}}
	code := Run(context.Background(), p, []string{"report", "--config", filepath.Join(x.dir, "pampa.yaml")}, &stdout, &stderr)
	want := `the program has a processing function for job "search_odd_numbers", but job "search_odd_numbers" runs its processing function as exec: python3 odd.py`
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
}
