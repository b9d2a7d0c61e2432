//go:build linux

package nodes

// The agent run in this process on a node directory of its own: real
// files, real detached worker processes (this test binary as the fake
// worker), no SSH in between.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

// agentDir is a node directory with one release, "r1", whose program is
// this test binary acting as the test program.
type agentDir struct {
	dir  string
	pids []int // workers started, killed at the end
}

func newAgentDir(t *testing.T) *agentDir {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &agentDir{dir: t.TempDir()}
	relDir := filepath.Join(a.dir, releasesDir, "r1")
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nexport " + envTestProgram + "=1\nexec " + Quote(exe) + ` "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(relDir, "prog"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, _ := json.Marshal(Release{ID: "r1", Program: "prog"})
	if err := os.WriteFile(filepath.Join(relDir, manifestName), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Supervisors first, so that none starts a worker again.
		supers, _ := filepath.Glob(filepath.Join(a.dir, runDir, "*"+superExt))
		for _, f := range supers {
			id := strings.TrimSuffix(filepath.Base(f), superExt)
			if st := supervisorState(os.ReadFile, a.dir, id); st != nil && st.Alive {
				_ = syscall.Kill(st.PID, syscall.SIGKILL)
			}
		}
		for _, pid := range a.pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, f := range supers {
			if rec, err := readRecord(os.ReadFile, a.dir, strings.TrimSuffix(filepath.Base(f), superExt)); err == nil {
				_ = syscall.Kill(rec.PID, syscall.SIGKILL)
			}
		}
	})
	return a
}

// supervisor reads a worker's supervisor record, failing the test if
// there is none.
func (a *agentDir) supervisor(t *testing.T, id string) *SupervisorState {
	t.Helper()
	st := supervisorState(os.ReadFile, a.dir, id)
	if st == nil {
		t.Fatalf("%s has no supervisor record", id)
	}
	return st
}

// serve runs `nodes agent serve` on req and returns its exit status, its
// response and its error output.
func (a *agentDir) serve(t *testing.T, req startRequest) (int, startResponse, string) {
	t.Helper()
	if req.Protocol == 0 {
		req.Protocol = agentProtocol
	}
	if req.Op == "" {
		req.Op = "start"
	}
	if req.Dir == "" {
		req.Dir = a.dir
	}
	if req.Release == "" {
		req.Release = "r1"
	}
	body, _ := json.Marshal(req)
	var stdout, stderr bytes.Buffer
	code := AgentMain(context.Background(), []string{"serve"}, bytes.NewReader(body), &stdout, &stderr)
	var resp startResponse
	if code == 0 {
		if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
			t.Fatalf("agent response %q: %v", stdout.String(), err)
		}
		if resp.Protocol != agentProtocol {
			t.Errorf("response protocol = %d", resp.Protocol)
		}
		for _, w := range resp.Workers {
			if w.PID > 0 {
				a.pids = append(a.pids, w.PID)
			}
		}
	}
	return code, resp, stderr.String()
}

func TestNodesAgentServe(t *testing.T) {
	t.Parallel()
	a := newAgentDir(t)
	code, resp, stderr := a.serve(t, startRequest{Workers: []string{"n.1", "n.2"}, GraceMS: 1500, SettleMS: 200})
	if code != 0 || resp.Error != "" || len(resp.Workers) != 2 {
		t.Fatalf("serve = %d, %+v, %s", code, resp, stderr)
	}
	pids := map[string]int{}
	for _, w := range resp.Workers {
		if !w.Started || w.AlreadyRunning || w.PID <= 0 || w.Error != "" {
			t.Fatalf("%s: %+v", w.ID, w)
		}
		pids[w.ID] = w.PID
		// Recorded, detached in a session of its own, and this worker's.
		rec, err := readRecord(os.ReadFile, a.dir, w.ID)
		if err != nil || rec.PID != w.PID || rec.Release != "r1" || rec.GraceMS != 1500 || rec.StartTicks == 0 {
			t.Errorf("%s: record %+v, %v", w.ID, rec, err)
		}
		if pid, _ := os.ReadFile(pidPath(a.dir, w.ID)); strings.TrimSpace(string(pid)) != strconv.Itoa(w.PID) {
			t.Errorf("%s: pid file holds %q, want %d", w.ID, pid, w.PID)
		}
		// Supervised by Pampa's own, in a session of its own, which the
		// worker shares.
		sup := a.supervisor(t, w.ID)
		if w.Supervisor != SupervisorPampa || sup.Kind != SupervisorPampa || !sup.Alive || sup.State != SuperRunning || sup.WorkerPID != w.PID || sup.Restarts != 0 {
			t.Errorf("%s: supervisor %q, record %+v", w.ID, w.Supervisor, sup)
		}
		if sid, err := sessionOf(sup.PID); err != nil || sid != sup.PID {
			t.Errorf("%s: the supervisor's session %d (%v), want its own", w.ID, sid, err)
		}
		if sid, err := sessionOf(w.PID); err != nil || sid != sup.PID {
			t.Errorf("%s: session %d (%v), want its supervisor's %d", w.ID, sid, err, sup.PID)
		}
		if st := processState(os.ReadFile, a.dir, w.ID); !st.Running {
			t.Errorf("%s: %+v", w.ID, st)
		}
		out, _ := os.ReadFile(OutPath(a.dir, w.ID))
		if !strings.Contains(string(out), "pampa: starting worker "+w.ID+" (release r1)") {
			t.Errorf("%s: its .out file lacks the start line: %q", w.ID, out)
		}
	}
	nodestest.WaitFor(t, 20*time.Second, "n.2 to log with its grace", func() bool {
		data, _ := os.ReadFile(LogPath(a.dir, "n.2"))
		return bytes.Contains(data, []byte("worker n.2 started, pid "+strconv.Itoa(pids["n.2"])))
	})

	// Starting them again starts nothing.
	code, resp, stderr = a.serve(t, startRequest{Workers: []string{"n.1", "n.2"}, SettleMS: 100})
	if code != 0 || len(resp.Workers) != 2 {
		t.Fatalf("serve again = %d, %+v, %s", code, resp, stderr)
	}
	for _, w := range resp.Workers {
		if w.Started || !w.AlreadyRunning || w.PID != pids[w.ID] {
			t.Errorf("%s started twice: %+v", w.ID, w)
		}
	}

	// Killed behind Pampa's back: its supervisor starts it again, and a
	// start finds it running.
	if err := syscall.Kill(pids["n.1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodestest.WaitFor(t, 20*time.Second, "n.1 to be started again", func() bool {
		st := processState(os.ReadFile, a.dir, "n.1")
		return st.Running && st.PID != pids["n.1"] && a.supervisor(t, "n.1").WorkerPID == st.PID
	})
	sup := a.supervisor(t, "n.1")
	if sup.Restarts != 1 || sup.LastExit == nil || sup.LastExit.Signal != "SIGKILL" || sup.State != SuperRunning || sup.GaveUp {
		t.Errorf("n.1's supervisor after a kill: %+v, last exit %+v", sup, sup.LastExit)
	}
	again := processState(os.ReadFile, a.dir, "n.1").PID
	a.pids = append(a.pids, again)
	code, resp, _ = a.serve(t, startRequest{Workers: []string{"n.1"}, SettleMS: 100})
	if w := resp.Workers[0]; code != 0 || !w.AlreadyRunning || w.PID != again || w.Supervisor != SupervisorPampa {
		t.Errorf("start after a kill: %+v", w)
	}

	// A stale pid file (its process gone, no supervisor) does not stop a
	// start.
	if err := syscall.Kill(a.supervisor(t, "n.2").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids["n.2"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodestest.WaitFor(t, 20*time.Second, "n.2 and its supervisor to be gone", func() bool {
		return !processState(os.ReadFile, a.dir, "n.2").Running && !a.supervisor(t, "n.2").Alive
	})
	if sup := a.supervisor(t, "n.2"); !strings.Contains(sup.Why, "supervisor died") {
		t.Errorf("a killed supervisor: %+v", sup)
	}
	code, resp, _ = a.serve(t, startRequest{Workers: []string{"n.2"}, SettleMS: 100})
	if w := resp.Workers[0]; code != 0 || !w.Started || w.PID == pids["n.2"] {
		t.Errorf("start after a kill: %+v", w)
	}
}

// TestNodesAgentNodeDispatcher: asked for the node dispatcher, the agent
// starts one supervised `node --node NODE --workers N` process as
// NODE.0, and a node is served by it or by its workers' own processes,
// never by both.
func TestNodesAgentNodeDispatcher(t *testing.T) {
	t.Parallel()
	a := newAgentDir(t)
	node := startRequest{Node: "n", Workers: []string{"n.0"}, NodeWorkers: 3, GraceMS: 1500, SettleMS: 200}
	code, resp, stderr := a.serve(t, node)
	if code != 0 || resp.Error != "" || len(resp.Workers) != 1 {
		t.Fatalf("serve = %d, %+v, %s", code, resp, stderr)
	}
	w := resp.Workers[0]
	if w.ID != "n.0" || !w.Started || w.PID <= 0 || w.Supervisor != SupervisorPampa {
		t.Fatalf("n.0: %+v", w)
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(w.PID) + "/cmdline")
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 6 || strings.Join(args[1:6], " ") != "node --node n --workers 3" || !hasArg(cmdline, "--grace") {
		t.Errorf("n.0's command line: %q", args)
	}
	if rec, err := readRecord(os.ReadFile, a.dir, "n.0"); err != nil || rec.PID != w.PID || rec.Members != 3 || rec.GraceMS != 1500 {
		t.Errorf("n.0's record: %+v, %v", rec, err)
	}
	if st := processState(os.ReadFile, a.dir, "n.0"); !st.Running {
		t.Errorf("n.0: %+v", st)
	}
	if sup := a.supervisor(t, "n.0"); !sup.Alive || sup.WorkerPID != w.PID {
		t.Errorf("n.0's supervisor: %+v", sup)
	}
	nodestest.WaitFor(t, 20*time.Second, "n.0 to log", func() bool {
		data, _ := os.ReadFile(filepath.Join(a.dir, logsDir, "node.n.log"))
		return bytes.Contains(data, []byte("node n.0 started, pid "+strconv.Itoa(w.PID)+", workers 3"))
	})
	if out, _ := os.ReadFile(filepath.Join(a.dir, logsDir, "node.n.out")); !strings.Contains(string(out), "pampa: starting node dispatcher n.0 (release r1)") {
		t.Errorf("n.0's .out file lacks the start line: %q", out)
	}

	// Started again, it is left alone; its workers are refused, whoever
	// asks, while it runs.
	_, resp, _ = a.serve(t, node)
	if len(resp.Workers) != 1 || !resp.Workers[0].AlreadyRunning || resp.Workers[0].PID != w.PID {
		t.Errorf("starting a running node dispatcher: %+v", resp)
	}
	for _, protocol := range []int{minAgentProtocol, agentProtocol} {
		code, resp, _ = a.serve(t, startRequest{Protocol: protocol, Workers: []string{"n.1", "n.2"}, SettleMS: 100})
		want := "node n runs its node dispatcher n.0 (pid " + strconv.Itoa(w.PID) + ")"
		if code != 0 || !strings.Contains(resp.Error, want) || !strings.Contains(resp.Error, "--node-dispatcher") || len(resp.Workers) != 0 {
			t.Errorf("protocol %d: workers started beside the node dispatcher: %d, %+v; want the error %q", protocol, code, resp, want)
		}
	}
	if _, err := os.Stat(LogPath(a.dir, "n.1")); err == nil {
		t.Error("a worker refused beside the node dispatcher ran")
	}

	// The other way round: a node whose workers run as processes of their
	// own gets no node dispatcher.
	b := newAgentDir(t)
	slow := RestartPolicy{Delay: time.Minute, MaxDelay: time.Minute, Limit: 3, Window: time.Minute}
	_, resp, _ = b.serve(t, startRequest{Workers: []string{"b.1", "b.2"}, SettleMS: 100, Restart: slow})
	pids := map[string]int{}
	for _, w := range resp.Workers {
		if !w.Started {
			t.Fatalf("%s: %+v", w.ID, w)
		}
		pids[w.ID] = w.PID
	}
	_, resp, _ = b.serve(t, startRequest{Node: "b", Workers: []string{"b.0"}, NodeWorkers: 2, SettleMS: 100})
	for _, want := range []string{"node b runs workers as processes of their own: ", fmt.Sprintf("b.1 (pid %d), b.2 (pid %d)", pids["b.1"], pids["b.2"]), "`nodes stop b`"} {
		if !strings.Contains(resp.Error, want) || len(resp.Workers) != 0 {
			t.Errorf("a node dispatcher beside running workers: %+v; want the error to say %q", resp, want)
		}
	}
	if _, err := os.Stat(filepath.Join(b.dir, logsDir, "node.b.log")); err == nil {
		t.Error("a node dispatcher refused beside running workers ran")
	}
	// A worker whose supervisor waits to restart it counts as running too.
	if err := syscall.Kill(pids["b.1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodestest.WaitFor(t, 20*time.Second, "b.1's supervisor to wait to restart it", func() bool {
		return b.supervisor(t, "b.1").State == SuperRestarting
	})
	_, resp, _ = b.serve(t, startRequest{Node: "b", Workers: []string{"b.0"}, NodeWorkers: 2, SettleMS: 100})
	if !strings.Contains(resp.Error, "b.1 (its supervisor is about to start it again), b.2 (pid ") {
		t.Errorf("a node dispatcher beside a worker about to be restarted: %+v", resp)
	}
}

func TestNodesAgentServeFailures(t *testing.T) {
	t.Parallel()
	a := newAgentDir(t)

	t.Run("WorkerDiesAtOnce", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Workers: []string{"n.3"}, WorkerArgs: []string{"--fail"}, SettleMS: 10000})
		w := resp.Workers[0]
		if code != 0 || w.Started || w.PID != 0 || !strings.Contains(w.Error, "exited at once (exit status 1)") ||
			!strings.Contains(w.Error, "cannot connect to the database") {
			t.Errorf("a worker failing at start: %+v", w)
		}
		if _, err := readRecord(os.ReadFile, a.dir, "n.3"); err == nil {
			t.Error("the pid file of a worker that died at once is left")
		}
		// Not restarted: its supervisor says so, and is gone.
		nodestest.WaitFor(t, 20*time.Second, "n.3's supervisor to be gone", func() bool { return !a.supervisor(t, "n.3").Alive })
		sup := a.supervisor(t, "n.3")
		if sup.State != SuperExited || sup.Restarts != 0 || sup.LastExit == nil || sup.LastExit.Code != 1 || !strings.Contains(sup.Reason, "exited at once") {
			t.Errorf("the supervisor of a worker that died at once: %+v", sup)
		}
	})
	t.Run("StrictLimits", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Workers: []string{"n.4"}, Limits: Limits{NetIOMbps: 10}, StrictLimits: true, SettleMS: 100})
		if code != 0 || len(resp.Limits) != 1 || resp.Limits[0].Applied || resp.Limits[0].Why != netIOWhy {
			t.Fatalf("limits: %+v", resp.Limits)
		}
		if w := resp.Workers[0]; w.Started || !strings.Contains(w.Error, "not started: these limits cannot be applied on this node: net_io") {
			t.Errorf("strict start: %+v", w)
		}
		if _, err := os.Stat(LogPath(a.dir, "n.4")); err == nil {
			t.Error("a refused worker ran")
		}
	})
	t.Run("UnknownRelease", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Release: "r9", Workers: []string{"n.1"}})
		if code != 0 || !strings.Contains(resp.Error, "release r9:") || len(resp.Workers) != 0 {
			t.Errorf("unknown release: %d, %+v", code, resp)
		}
	})
	t.Run("UnreadableManifest", func(t *testing.T) {
		relDir := filepath.Join(a.dir, releasesDir, "bad")
		os.MkdirAll(relDir, 0o755)
		os.WriteFile(filepath.Join(relDir, manifestName), []byte(`{"id":"bad"}`), 0o644) // no program
		code, resp, _ := a.serve(t, startRequest{Release: "bad", Workers: []string{"n.1"}})
		if code != 0 || !strings.Contains(resp.Error, "unreadable "+manifestName) {
			t.Errorf("manifest without a program: %d, %+v", code, resp)
		}
	})
	t.Run("UnwritableDirectory", func(t *testing.T) {
		// run/ cannot be made: a file holds its name.
		b := newAgentDir(t)
		os.WriteFile(filepath.Join(b.dir, runDir), nil, 0o644)
		code, resp, _ := b.serve(t, startRequest{Workers: []string{"n.1"}})
		if code != 0 || !strings.Contains(resp.Error, runDir) {
			t.Errorf("run/ not a directory: %d, %+v", code, resp)
		}
	})
}

func TestNodesAgentCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
		err   string
	}{
		{"NoSubcommand", nil, "", 2, "want serve, supervise, exited or exec"},
		{"Unknown", []string{"dance"}, "", 2, `unknown subcommand "dance"`},
		{"BadRequest", []string{"serve"}, "{not json", 2, "read request"},
		{"OtherProtocol", []string{"serve"}, `{"protocol":1,"op":"start"}`, 2, "unsupported request (protocol 1"},
		{"OtherOp", []string{"serve"}, `{"protocol":2,"op":"stop"}`, 2, `op "stop"`},
		{"ExecTooShort", []string{"exec", "{}"}, "", 2, "want SPEC -- PROGRAM"},
		{"ExecNoSeparator", []string{"exec", "{}", "prog", "worker"}, "", 2, "want SPEC -- PROGRAM"},
		{"ExecBadSpec", []string{"exec", "{nope", "--", "/bin/true"}, "", 126, "bad spec"},
		{"SuperviseNoID", []string{"supervise", "{}"}, "", 2, "want --id ID SPEC"},
		{"SuperviseBadSpec", []string{"supervise", "--id", "n.1", "{nope"}, "", 2, "bad spec for n.1"},
		{"SuperviseOtherID", []string{"supervise", "--id", "n.1", `{"id":"n.2","dir":"/d","command":["x"]}`}, "", 2, "bad spec for n.1"},
		{"ExitedNoID", []string{"exited", "/d"}, "", 2, "want --id ID DIR"},
		{"ExitedNoRecord", []string{"exited", "--id", "n.1", "/nonexistent"}, "", 1, "no such file"},
	} {
		var stdout, stderr bytes.Buffer
		code := AgentMain(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.err) || stdout.Len() != 0 {
			t.Errorf("%s: status %d, stderr %q, stdout %q; want %d and %q", tc.name, code, stderr.String(), stdout.String(), tc.code, tc.err)
		}
	}
}

func TestNodesAgentLauncherCommand(t *testing.T) {
	t.Parallel()
	argv := agentCommand("/h/pampa/releases/r 1", "prog", "serve")
	want := []string{"sh", "-c", launcher, "pampa-launcher", "/h/pampa/releases/r 1/env", "/h/pampa/releases/r 1/prog", "nodes", "agent", "serve"}
	if strings.Join(argv, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("agentCommand = %q", argv)
	}
	// The launcher exports the env file (comments and blank lines
	// skipped, a last line without a newline kept) and runs its arguments.
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	os.WriteFile(env, []byte("# comment\n\nA_VAR=one two\nQ=it's $(not run)\nLAST=end"), 0o600)
	line, err := Command("sh", "-c", launcher, "pampa-launcher", env, "sh", "-c", `printf '%s|' "$A_VAR" "$Q" "$LAST"`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSh(line)
	if err != nil || out != "one two|it's $(not run)|end|" {
		t.Errorf("launcher output %q, %v", out, err)
	}
	// No env file: the command still runs.
	line, _ = Command("sh", "-c", launcher, "pampa-launcher", filepath.Join(dir, "none"), "echo", "ran")
	if out, err := runSh(line); err != nil || out != "ran\n" {
		t.Errorf("without an env file: %q, %v", out, err)
	}
}

// runSh runs a command line as the SSH user's login shell would.
func runSh(line string) (string, error) {
	out, err := exec.Command("sh", "-c", line).Output()
	return string(out), err
}

// TestNodesAgentSupervisor runs Pampa's own supervisor through its cases:
// a worker that keeps failing is restarted with a growing delay until the
// supervisor gives up; one that exits with status 0 is not restarted; a
// supervisor told to stop leaves its worker running.
func TestNodesAgentSupervisor(t *testing.T) {
	t.Parallel()
	a := newAgentDir(t)
	fast := RestartPolicy{Delay: 50 * time.Millisecond, MaxDelay: 150 * time.Millisecond, Limit: 3, Window: 30 * time.Second}

	t.Run("CrashLoop", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Workers: []string{"n.1"}, WorkerArgs: []string{"--exit-after", "600ms", "--exit-code", "3"}, SettleMS: 100, Restart: fast})
		if w := resp.Workers[0]; code != 0 || !w.Started {
			t.Fatalf("start: %+v", w)
		}
		if resp.Supervision.Kind != SupervisorPampa || !strings.Contains(resp.Supervision.Why, "PID 1 is not systemd") || resp.Supervision.Restart != fast {
			t.Errorf("supervision: %+v", resp.Supervision)
		}
		nodestest.WaitFor(t, 30*time.Second, "n.1's supervisor to give up", func() bool { return !a.supervisor(t, "n.1").Alive })
		sup := a.supervisor(t, "n.1")
		if !sup.GaveUp || sup.State != SuperGaveUp || sup.Restarts != 3 || sup.LastExit == nil || sup.LastExit.Code != 3 || sup.LastExit.Signal != "" ||
			!strings.Contains(sup.Reason, "crash loop: restarted 3 times within 30s, and it ended again (exit status 3)") {
			t.Errorf("after the crash loop: %+v, last exit %+v", sup.Supervision, sup.LastExit)
		}
		if st := processState(os.ReadFile, a.dir, "n.1"); st.Running {
			t.Errorf("n.1 runs after its supervisor gave up: %+v", st)
		}
		out, _ := os.ReadFile(OutPath(a.dir, "n.1"))
		for _, want := range []string{"ended (exit status 3)", "; restart 1 in 50ms", "; restart 2 in 100ms", "; restart 3 in 150ms", "GAVE UP on worker n.1: crash loop"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the .out file lacks %q:\n%s", want, out)
			}
		}
		if n := strings.Count(string(out), "pampa: starting worker n.1"); n != 4 {
			t.Errorf("%d starts in the .out file, want 4 (the first and 3 restarts)", n)
		}
		// A start starts it afresh.
		code, resp, _ = a.serve(t, startRequest{Workers: []string{"n.1"}, SettleMS: 100, Restart: fast})
		if w := resp.Workers[0]; code != 0 || !w.Started {
			t.Fatalf("start after giving up: %+v", w)
		}
		if sup := a.supervisor(t, "n.1"); !sup.Alive || sup.GaveUp || sup.Restarts != 0 || sup.LastExit != nil {
			t.Errorf("a fresh supervisor: %+v", sup)
		}
	})
	t.Run("CleanExit", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Workers: []string{"n.2"}, SettleMS: 100, Restart: fast})
		w := resp.Workers[0]
		if code != 0 || !w.Started {
			t.Fatalf("start: %+v", w)
		}
		waitLogged(t, a.dir, w)
		// SIGTERM to the worker itself: a graceful stop, status 0.
		if err := syscall.Kill(w.PID, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		nodestest.WaitFor(t, 20*time.Second, "n.2's supervisor to end", func() bool { return !a.supervisor(t, "n.2").Alive })
		sup := a.supervisor(t, "n.2")
		if sup.State != SuperExited || sup.Restarts != 0 || sup.GaveUp || sup.LastExit == nil || !sup.LastExit.Clean() || !strings.Contains(sup.Reason, "status 0: not restarted") {
			t.Errorf("after a clean exit: %+v", sup.Supervision)
		}
		time.Sleep(3 * fast.Delay)
		if st := processState(os.ReadFile, a.dir, "n.2"); st.Running {
			t.Errorf("a worker that exited with status 0 was started again: %+v", st)
		}
	})
	t.Run("SupervisorStopped", func(t *testing.T) {
		code, resp, _ := a.serve(t, startRequest{Workers: []string{"n.4"}, SettleMS: 100, Restart: fast})
		w := resp.Workers[0]
		if code != 0 || !w.Started {
			t.Fatalf("start: %+v", w)
		}
		if err := syscall.Kill(a.supervisor(t, "n.4").PID, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		nodestest.WaitFor(t, 20*time.Second, "n.4's supervisor to end", func() bool { return !a.supervisor(t, "n.4").Alive })
		if sup := a.supervisor(t, "n.4"); sup.State != SuperStopped || sup.Why != "" {
			t.Errorf("a stopped supervisor: %+v", sup)
		}
		if st := processState(os.ReadFile, a.dir, "n.4"); !st.Running || st.PID != w.PID {
			t.Errorf("the worker of a stopped supervisor: %+v, want pid %d running", st, w.PID)
		}
		// Running without a supervisor: a start says so.
		_, resp, _ = a.serve(t, startRequest{Workers: []string{"n.4"}, SettleMS: 100})
		if w2 := resp.Workers[0]; !w2.AlreadyRunning || !w2.Unsupervised || w2.PID != w.PID {
			t.Errorf("start of an unsupervised worker: %+v", w2)
		}
	})
}

// waitLogged waits for a worker started now to log its first line: from
// then on it handles SIGTERM.
func waitLogged(t *testing.T, dir string, w WorkerStart) {
	t.Helper()
	nodestest.WaitFor(t, 20*time.Second, w.ID+" to log", func() bool {
		data, _ := os.ReadFile(LogPath(dir, w.ID))
		return bytes.Contains(data, []byte("worker "+w.ID+" started, pid "+strconv.Itoa(w.PID)))
	})
}

// TestNodesRecordExit: a unit's ExecStopPost notes how its worker ended in
// the worker's record; a record of Pampa's own supervisor is its own.
func TestNodesRecordExit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, runDir), 0o755)
	at := time.Date(2024, 5, 14, 10, 0, 0, 0, time.UTC)
	for id, kind := range map[string]string{"n.1": SupervisorSystemd, "n.2": SupervisorPampa} {
		if err := writeJSON(superPath(dir, id), Supervision{Kind: kind, Unit: "u", Restarts: 2}); err != nil {
			t.Fatal(err)
		}
		if err := recordExit(dir, id, exitFromEnv("killed", "KILL", at)); err != nil {
			t.Fatal(err)
		}
	}
	if st := supervisorState(os.ReadFile, dir, "n.1"); st.LastExit == nil || st.LastExit.Signal != "SIGKILL" || !st.LastExit.At.Equal(at) || st.Restarts != 2 {
		t.Errorf("systemd record: %+v", st)
	}
	if st := supervisorState(os.ReadFile, dir, "n.2"); st.LastExit != nil {
		t.Errorf("pampa record changed: %+v", st)
	}
	os.WriteFile(superPath(dir, "n.3"), []byte("{"), 0o644)
	if err := recordExit(dir, "n.3", nil); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("unreadable record: %v", err)
	}
}
