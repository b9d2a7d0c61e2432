package nodes

// Against real OpenSSH servers (see nodestest), with this test binary
// deployed as the program: it is the agent, and a fake worker.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

type realNode struct {
	srv  *nodestest.Server
	t    *Target
	conn *Conn
}

func startRealNode(t *testing.T, ip string, workers int) *realNode {
	t.Helper()
	srv := nodestest.Start(t, nodestest.Options{IP: ip})
	tg := &Target{Name: "n", Host: srv.IP, Port: srv.Port, User: srv.User, Password: Secret(srv.Password),
		PasswordFrom: "$TEST_PW", KnownHostsFile: srv.WriteKnownHosts(t), MaxWorkers: workers}
	n := &realNode{srv: srv, t: tg}
	n.conn = n.dial(t)
	return n
}

func (n *realNode) dial(t *testing.T) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), n.t, Options{AgentSocket: "-", CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testSpec(t *testing.T, mark string) DeploySpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return DeploySpec{Binary: exe, Program: "prog", Version: "test", Config: []byte("nodes: []\n"),
		Env: []EnvVar{{envTestProgram, "1"}, {"PAMPA_NODES_TEST_MARK", Secret(mark)}}}
}

func (n *realNode) state(t *testing.T) *NodeState {
	t.Helper()
	st, err := n.conn.State(context.Background(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func workerOf(st *NodeState, id string) WorkerState {
	for _, w := range st.Workers {
		if w.ID == id {
			return w
		}
	}
	return WorkerState{ID: id}
}

func TestNodesRealLifecycle(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.2", 2)
	ctx := context.Background()

	// Status before any deploy: reachable, usage, nothing running.
	st := n.state(t)
	if st.Release != nil || st.Usage == nil || st.Usage.CPUs < 1 || st.Usage.RAMTotal == 0 || st.Usage.DiskTotal == 0 {
		t.Fatalf("state before deploy: %+v, usage %+v", st, st.Usage)
	}
	if w := workerOf(st, "n.1"); w.Running || !strings.Contains(w.Why, "no pid file") {
		t.Errorf("n.1 before start: %+v", w)
	}
	if _, err := n.conn.Start(ctx, StartOptions{}); !errors.Is(err, ErrNotDeployed) {
		t.Errorf("start before deploy: %v, want ErrNotDeployed", err)
	}

	// Deploy.
	d, err := n.conn.Deploy(ctx, testSpec(t, "one"))
	if err != nil {
		t.Fatal(err)
	}
	home := n.srv.Home
	relDir := path.Join(home, "pampa", releasesDir, d.Release.ID)
	if target, err := os.Readlink(path.Join(home, "pampa", currentLink)); err != nil || target != path.Join(releasesDir, d.Release.ID) {
		t.Errorf("current -> %q (%v), want releases/%s", target, err, d.Release.ID)
	}
	for name, mode := range map[string]os.FileMode{"prog": 0o755, envName: 0o600, configName: 0o600, manifestName: 0o644} {
		fi, err := os.Stat(path.Join(relDir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
		if sys, ok := fi.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != n.srv.UID {
			t.Errorf("%s is not owned by the SSH user", name)
		}
	}
	manifest, _ := os.ReadFile(path.Join(relDir, manifestName))
	if bytes.Contains(manifest, []byte("PAMPA_NODES_TEST_MARK=")) || !bytes.Contains(manifest, []byte(`"PAMPA_NODES_TEST_MARK"`)) {
		t.Errorf("the manifest should name the env variables, never their values:\n%s", manifest)
	}
	if d2, err := n.conn.Deploy(ctx, testSpec(t, "one")); err != nil || !d2.Unchanged {
		t.Errorf("deploying the same again: %+v, %v; want unchanged", d2, err)
	}
	if st := n.state(t); st.Release == nil || st.Release.ID != d.Release.ID {
		t.Errorf("status shows release %+v, want %s", st.Release, d.Release.ID)
	}

	// Start: both workers, detached, each in its own session.
	// Supervised by Pampa's own (PID 1 is not systemd here), each
	// supervisor in a session of its own, which its worker shares.
	fast := RestartPolicy{Delay: 100 * time.Millisecond, MaxDelay: 400 * time.Millisecond, Limit: 2, Window: 30 * time.Second}
	s, err := n.conn.Start(ctx, StartOptions{Settle: 300 * time.Millisecond, Restart: fast})
	if err != nil {
		t.Fatal(err)
	}
	if s.Supervision.Kind != SupervisorPampa || s.Supervision.Boot || !strings.Contains(s.Supervision.Why, "PID 1 is not systemd") {
		t.Errorf("supervision: %+v", s.Supervision)
	}
	pids := map[string]int{}
	st = n.state(t)
	for _, w := range s.Workers {
		if !w.Started || w.PID == 0 || w.Error != "" || w.Supervisor != SupervisorPampa {
			t.Fatalf("start %s: %+v", w.ID, w)
		}
		pids[w.ID] = w.PID
		sup := workerOf(st, w.ID).Supervisor
		if sup == nil || !sup.Alive || sup.WorkerPID != w.PID {
			t.Fatalf("%s's supervisor: %+v", w.ID, sup)
		}
		if sid, err := sessionOf(sup.PID); err != nil || sid != sup.PID {
			t.Errorf("%s: its supervisor's session %d (%v), want its own (%d)", w.ID, sid, err, sup.PID)
		}
		if sid, err := sessionOf(w.PID); err != nil || sid != sup.PID {
			t.Errorf("%s: session %d (%v), want its supervisor's (%d)", w.ID, sid, err, sup.PID)
		}
	}
	// They outlive the SSH connection that started them.
	n.conn.Close()
	n.conn = n.dial(t)
	st = n.state(t)
	for id, pid := range pids {
		if w := workerOf(st, id); !w.Running || w.PID != pid || w.Record == nil || w.Record.Release != d.Release.ID {
			t.Errorf("%s after the SSH session ended: %+v", id, w)
		}
	}
	// They got the release's environment.
	nodestest.WaitFor(t, 20*time.Second, "the worker's first log line", func() bool {
		data, _ := os.ReadFile(LogPath(path.Join(home, "pampa"), "n.1"))
		return bytes.Contains(data, []byte(`mark "one"`))
	})

	// Idempotent.
	s, err = n.conn.Start(ctx, StartOptions{Settle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Workers {
		if !w.AlreadyRunning || w.PID != pids[w.ID] {
			t.Errorf("starting a running %s: %+v", w.ID, w)
		}
	}

	// Killed behind our back: its supervisor brings it back, and status
	// says how it ended.
	killed := func(id string, restarts int) {
		t.Helper()
		if err := syscall.Kill(pids[id], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		nodestest.WaitFor(t, 20*time.Second, id+" to be started again", func() bool {
			w := workerOf(n.state(t), id)
			return w.Running && w.PID != pids[id] && w.Supervisor != nil && w.Supervisor.Restarts == restarts
		})
		w := workerOf(n.state(t), id)
		if sup := w.Supervisor; !sup.Alive || sup.State != SuperRunning || sup.LastExit == nil || sup.LastExit.Signal != "SIGKILL" || sup.GaveUp {
			t.Errorf("%s's supervisor after a kill: %+v", id, sup)
		}
		pids[id] = w.PID
	}
	killed("n.1", 1)
	killed("n.1", 2)
	// Once more is a crash loop: its supervisor gives up, and says so.
	if err := syscall.Kill(pids["n.1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodestest.WaitFor(t, 20*time.Second, "n.1's supervisor to give up", func() bool {
		sup := workerOf(n.state(t), "n.1").Supervisor
		return sup != nil && !sup.Alive
	})
	if w := workerOf(n.state(t), "n.1"); w.Running || !w.Supervisor.GaveUp || w.Supervisor.State != SuperGaveUp || w.Supervisor.Restarts != 2 ||
		!strings.Contains(w.Supervisor.Reason, "crash loop") || w.Supervisor.LastExit.Signal != "SIGKILL" {
		t.Errorf("n.1 after a crash loop: %+v, supervisor %+v", w.ProcessState, w.Supervisor)
	}
	s, err = n.conn.Start(ctx, StartOptions{Settle: 200 * time.Millisecond, Restart: fast})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Workers {
		switch w.ID {
		case "n.1":
			if !w.Started || w.PID == pids["n.1"] {
				t.Errorf("n.1 after its supervisor gave up: %+v", w)
			}
			pids["n.1"] = w.PID
		case "n.2":
			if !w.AlreadyRunning || w.Supervisor != SupervisorPampa {
				t.Errorf("n.2: %+v", w)
			}
		}
	}

	// Logs: the end, then following.
	var buf bytes.Buffer
	if err := n.conn.Tail(ctx, LogPath(st.Dir, "n.2"), 3, false, &buf); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "tick ") {
		t.Errorf("last 3 lines: %q", buf.String())
	}
	fctx, cancel := context.WithCancel(ctx)
	var followed syncBuf
	done := make(chan error, 1)
	go func() { done <- n.conn.Tail(fctx, LogPath(st.Dir, "n.2"), 0, true, &followed) }()
	nodestest.WaitFor(t, 20*time.Second, "followed log lines", func() bool { return strings.Count(followed.String(), "tick") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow: %v", err)
	}
	if err := n.conn.Tail(ctx, LogPath(st.Dir, "n.9"), 3, false, &buf); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("log of a worker never started: %v", err)
	}

	// An interrupted deploy leaves the current release alone.
	hooked := n.dial(t)
	ictx, icancel := context.WithCancel(ctx)
	hooked.hookUpload = func(name string) {
		if strings.HasSuffix(name, "/prog") {
			icancel()
		}
	}
	if _, err := hooked.Deploy(ictx, testSpec(t, "two")); err == nil {
		t.Fatal("the interrupted deploy succeeded")
	}
	if st := n.state(t); st.Release == nil || st.Release.ID != d.Release.ID {
		t.Errorf("after an interrupted deploy, current = %+v, want %s", st.Release, d.Release.ID)
	}

	// A new release, then a restart moves the workers to it.
	d2, err := n.conn.Deploy(ctx, testSpec(t, "two"))
	if err != nil || d2.Previous != d.Release.ID || d2.Release.ID == d.Release.ID {
		t.Fatalf("second deploy: %+v, %v", d2, err)
	}

	// Stop: graceful, then idempotent.
	stopped, err := n.conn.Stop(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	st = n.state(t)
	for _, s := range stopped {
		if !s.WasRunning || s.Killed || s.TookMS == 0 || s.PID != pids[s.ID] || s.Supervisor != SupervisorPampa || s.SupervisorPID == 0 {
			t.Errorf("stop %s: %+v", s.ID, s)
		}
		// Its supervisor went first: stopped, it started nothing again.
		if w := workerOf(st, s.ID); w.Running || w.Supervisor == nil || w.Supervisor.Alive || w.Supervisor.State != SuperStopped {
			t.Errorf("%s after stop: %+v, supervisor %+v", s.ID, w.ProcessState, w.Supervisor)
		}
	}
	log1, _ := os.ReadFile(LogPath(st.Dir, "n.1"))
	if !bytes.Contains(log1, []byte("worker n.1 stopping")) {
		t.Errorf("n.1 did not stop gracefully:\n%s", tailLines(log1, 3))
	}
	stopped, err = n.conn.Stop(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stopped {
		if s.WasRunning || s.Error != "" {
			t.Errorf("stopping a stopped %s: %+v", s.ID, s)
		}
	}
	if procs := n.srv.ProcessesLeft(); len(procs) != 0 {
		t.Errorf("processes left after stop: %v", procs)
	}

	// The new release runs once started.
	s, err = n.conn.Start(ctx, StartOptions{Workers: []string{"n.2"}, Settle: 200 * time.Millisecond})
	if err != nil || len(s.Workers) != 1 || !s.Workers[0].Started || s.Release != d2.Release.ID {
		t.Fatalf("start on the new release: %+v, %v", s, err)
	}
	if st := n.state(t); workerOf(st, "n.2").Record.Release != d2.Release.ID || workerOf(st, "n.1").Running {
		t.Errorf("after starting n.2 alone: %+v", st.Workers)
	}

	// A worker that ignores SIGTERM is killed after the timeout.
	if _, err := n.conn.Stop(ctx, []string{"n.2"}, 0); err != nil {
		t.Fatal(err)
	}
	s, err = n.conn.Start(ctx, StartOptions{Workers: []string{"n.1"}, WorkerArgs: []string{"--ignore-term"}, Settle: 200 * time.Millisecond})
	if err != nil || !s.Workers[0].Started {
		t.Fatalf("start: %+v, %v", s, err)
	}
	// Once it logs, it ignores SIGTERM (a loaded machine may take a while).
	nodestest.WaitFor(t, 20*time.Second, "n.1 to log", func() bool {
		data, _ := os.ReadFile(LogPath(st.Dir, "n.1"))
		return bytes.Contains(data, []byte("pid "+strconv.Itoa(s.Workers[0].PID)+","))
	})
	stopped, err = n.conn.Stop(ctx, []string{"n.1"}, 500*time.Millisecond)
	if err != nil || len(stopped) != 1 || !stopped[0].Killed || stopped[0].TookMS == 0 {
		log1, _ := os.ReadFile(LogPath(st.Dir, "n.1"))
		out1, _ := os.ReadFile(OutPath(st.Dir, "n.1"))
		t.Errorf("stop of a worker ignoring SIGTERM: %+v, %v\n%s\n%s", stopped, err, tailLines(log1, 4), tailLines(out1, 5))
	}

	// A worker that dies at once is reported with its output.
	s, err = n.conn.Start(ctx, StartOptions{Workers: []string{"n.1"}, WorkerArgs: []string{"--fail"}, Settle: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if w := s.Workers[0]; w.Started || !strings.Contains(w.Error, "exited at once") || !strings.Contains(w.Error, "cannot connect to the database") {
		t.Errorf("a worker failing at start: %+v", w)
	}
	if w := workerOf(n.state(t), "n.1"); w.Running || w.Stale {
		t.Errorf("after a failed start, n.1: %+v", w)
	}
}

func TestNodesRealLimits(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.3", 1)
	ctx := context.Background()
	if _, err := n.conn.Deploy(ctx, testSpec(t, "limits")); err != nil {
		t.Fatal(err)
	}
	n.t.Limits = Limits{RAMMB: 1024, CPUPercent: 50, DiskIOMbps: 80, NetIOMbps: 10}

	report := func(rs []LimitReport, res string) LimitReport {
		for _, r := range rs {
			if r.Resource == res {
				return r
			}
		}
		t.Fatalf("no %s limit in %+v", res, rs)
		return LimitReport{}
	}

	// Strict: the network limit can never be applied, so nothing starts.
	s, err := n.conn.Start(ctx, StartOptions{StrictLimits: true, Settle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if w := s.Workers[0]; w.Started || !strings.Contains(w.Error, "net_io") {
		t.Errorf("strict start: %+v", w)
	}

	// Without a cgroup of its own, the user gets RAM as RLIMIT_DATA only.
	s, err = n.conn.Start(ctx, StartOptions{Settle: 300 * time.Millisecond})
	if err != nil || !s.Workers[0].Started {
		t.Fatalf("start: %+v, %v", s, err)
	}
	w := s.Workers[0]
	ram := report(w.Limits, ResRAM)
	if !ram.Applied || !strings.Contains(ram.How, "RLIMIT_DATA") || !strings.Contains(ram.How, "GOMEMLIMIT") {
		t.Errorf("ram: %+v", ram)
	}
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(w.PID) + "/limits")
	if got, ok := parseLimits(limits, "Max data size"); !ok || got != 1024<<20 {
		t.Errorf("the worker's Max data size is %d, want %d", got, 1024<<20)
	}
	for _, res := range []string{ResCPU, ResDiskIO, ResNetIO} {
		if r := report(w.Limits, res); r.Applied || r.Why == "" {
			t.Errorf("%s: %+v, want not applied, with a reason", res, r)
		}
	}
	if r := report(w.Limits, ResCPU); !strings.Contains(r.Why, "pampa-"+n.srv.User) {
		t.Errorf("cpu: the reason should say how to delegate a cgroup: %s", r.Why)
	}
	if _, err := n.conn.Stop(ctx, nil, 0); err != nil {
		t.Fatal(err)
	}

	// With cgroups delegated to the user, as an administrator would.
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err != nil {
		t.Logf("no cgroup v1 cpu hierarchy on this machine: the cgroup part is not exercised here")
		return
	}
	n.srv.DelegateCgroups(t, "cpu", "memory", "blkio")
	s, err = n.conn.Start(ctx, StartOptions{Settle: 300 * time.Millisecond})
	if err != nil || !s.Workers[0].Started {
		t.Fatalf("start: %+v, %v", s, err)
	}
	w = s.Workers[0]
	cgData, _ := os.ReadFile("/proc/" + strconv.Itoa(w.PID) + "/cgroup")
	cgs := parseProcCgroup(cgData)
	base := "/pampa-" + n.srv.User + "/n.1"
	for _, c := range []struct{ res, ctl, file, want string }{
		{ResCPU, "cpu", "cpu.cfs_quota_us", "50000"},
		{ResRAM, "memory", "memory.limit_in_bytes", strconv.Itoa(1024 << 20)},
		{ResDiskIO, "blkio", "blkio.throttle.write_bps_device", strconv.Itoa(80 * 1000 * 1000 / 8)},
	} {
		r := report(w.Limits, c.res)
		if !r.Applied || !strings.Contains(r.How, "cgroup v1") {
			t.Errorf("%s: %+v", c.res, r)
			continue
		}
		if cgs[c.ctl] != base {
			t.Errorf("the worker is in %s cgroup %q, want %q", c.ctl, cgs[c.ctl], base)
		}
		data, _ := os.ReadFile(path.Join("/sys/fs/cgroup", c.ctl, base, c.file))
		if !strings.Contains(string(data), c.want) {
			t.Errorf("%s holds %q, want %s", c.file, data, c.want)
		}
	}
	if r := report(w.Limits, ResNetIO); r.Applied {
		t.Errorf("net_io: %+v", r)
	}
	// The record keeps the limits, for status.
	if rec := workerOf(n.state(t), "n.1").Record; rec == nil || len(rec.Limits) != 4 {
		t.Errorf("record: %+v", rec)
	}
	out, _ := json.Marshal(w.Limits)
	t.Logf("limits: %s", out)
}

// TestNodesRealNodeDispatcher starts a node's node dispatcher over SSH:
// one supervised process, NODE.0, with the node's limits times its
// workers, seen by status, stopped gracefully by a stop of the node.
func TestNodesRealNodeDispatcher(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.4", 2)
	ctx := context.Background()
	if _, err := n.conn.Deploy(ctx, testSpec(t, "node")); err != nil {
		t.Fatal(err)
	}
	n.t.Limits = Limits{RAMMB: 512}
	if _, err := n.conn.Start(ctx, StartOptions{NodeDispatcher: true, Workers: []string{"n.1"}}); err == nil || !strings.Contains(err.Error(), "node n: workers n.1 with a node dispatcher") {
		t.Errorf("a node dispatcher with a worker named: %v", err)
	}
	if _, err := n.conn.Start(ctx, StartOptions{Workers: []string{"n.0"}}); err == nil || !strings.Contains(err.Error(), "n.0 is node n's node dispatcher") {
		t.Errorf("n.0 started as a worker: %v", err)
	}
	s, err := n.conn.Start(ctx, StartOptions{NodeDispatcher: true, Grace: 5 * time.Second, Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeWorkers != 2 || len(s.Workers) != 1 || s.Workers[0].ID != "n.0" || !s.Workers[0].Started {
		t.Fatalf("start the node dispatcher: %+v", s)
	}
	w := s.Workers[0]
	// The limits are the node's per-worker ones times its two workers.
	if len(w.Limits) != 1 || !w.Limits[0].Applied || w.Limits[0].Want != "1024 MiB" {
		t.Errorf("n.0's limits: %+v", w.Limits)
	}
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(w.PID) + "/limits")
	if got, ok := parseLimits(limits, "Max data size"); !ok || got != 1024<<20 {
		t.Errorf("n.0's Max data size is %d, want %d", got, 1024<<20)
	}
	st := n.state(t)
	if len(st.Workers) != 3 || st.Workers[0].ID != "n.0" {
		t.Fatalf("status lists %+v, want n.0 first, then n.1 and n.2", st.Workers)
	}
	if nd := st.Workers[0]; !nd.Running || nd.PID != w.PID || nd.Extra || nd.Record == nil || nd.Record.Members != 2 || nd.Supervisor == nil || !nd.Supervisor.Alive {
		t.Errorf("n.0 in status: %+v", nd)
	}
	if ids, err := n.conn.Workers(ctx); err != nil || strings.Join(ids, " ") != "n.1 n.2" {
		t.Errorf("the workers a restart of the workers stops: %v, %v", ids, err)
	}
	nodestest.WaitFor(t, 20*time.Second, "n.0 to log", func() bool {
		data, _ := os.ReadFile(LogPath(st.Dir, "n.0"))
		return bytes.Contains(data, []byte("node n.0 started, pid "+strconv.Itoa(w.PID)+", workers 2"))
	})
	// Its workers cannot be started beside it.
	if _, err := n.conn.Start(ctx, StartOptions{Workers: []string{"n.2"}}); err == nil || !strings.Contains(err.Error(), "node n runs its node dispatcher n.0 (pid "+strconv.Itoa(w.PID)+")") {
		t.Errorf("a worker started beside the node dispatcher: %v", err)
	}

	// A worker of it has no process of its own to stop.
	stopped, err := n.conn.Stop(ctx, []string{"n.1"}, 0)
	if err != nil || len(stopped) != 1 || stopped[0].WasRunning || !strings.Contains(stopped[0].Why, "it runs in the node dispatcher n.0 (pid "+strconv.Itoa(w.PID)+")") {
		t.Errorf("stop n.1 of the node dispatcher: %+v, %v", stopped, err)
	}
	if nd := workerOf(n.state(t), "n.0"); !nd.Running || nd.PID != w.PID {
		t.Errorf("n.0 after a stop of n.1: %+v", nd)
	}

	stopped, err = n.conn.Stop(ctx, nil, 0)
	if err != nil || len(stopped) != 3 || stopped[0].ID != "n.0" {
		t.Fatalf("stop: %+v, %v", stopped, err)
	}
	if s := stopped[0]; !s.WasRunning || s.Killed || s.PID != w.PID || s.SupervisorPID == 0 {
		t.Errorf("stop n.0: %+v", s)
	}
	for _, s := range stopped[1:] {
		if s.WasRunning || s.Why != "runs in the node dispatcher n.0, stopped with it" {
			t.Errorf("stop %s with the node dispatcher: %+v", s.ID, s)
		}
	}
	if data, _ := os.ReadFile(LogPath(st.Dir, "n.0")); !bytes.Contains(data, []byte("node n.0 stopping")) {
		t.Errorf("n.0 did not stop gracefully:\n%s", tailLines(data, 3))
	}
	if procs := n.srv.ProcessesLeft(); len(procs) != 0 {
		t.Errorf("processes left after stop: %v", procs)
	}
	// Stopped, it leaves its supervisor's record, and workers may start.
	if nd := workerOf(n.state(t), "n.0"); nd.Running || nd.Supervisor == nil || nd.Supervisor.State != SuperStopped {
		t.Errorf("n.0 after stop: %+v", nd)
	}
	s, err = n.conn.Start(ctx, StartOptions{Workers: []string{"n.1"}, Settle: 200 * time.Millisecond})
	if err != nil || !s.Workers[0].Started {
		t.Fatalf("start n.1 once the node dispatcher stopped: %+v, %v", s, err)
	}
	if _, err := n.conn.Stop(ctx, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func TestNodesRealRefusals(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.2", 1)
	dial := func(tg Target) error {
		c, err := Dial(context.Background(), &tg, Options{AgentSocket: "-", ConnectTimeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	t.Run("WrongPassword", func(t *testing.T) {
		tg := *n.t
		tg.Password = "wrong-secret-pw"
		err := dial(tg)
		wantStage(t, err, "authenticate", n.srv.User+"@", "password from $TEST_PW")
		if strings.Contains(err.Error(), "wrong-secret-pw") {
			t.Errorf("the password leaked: %v", err)
		}
	})
	t.Run("WrongHostKey", func(t *testing.T) {
		other := nodestest.Start(t, nodestest.Options{IP: "127.0.0.3"})
		tg := *n.t
		// The other server's key, filed under this server's address.
		tg.KnownHostsFile = other.WriteKnownHosts(t)
		data, _ := os.ReadFile(tg.KnownHostsFile)
		os.WriteFile(tg.KnownHostsFile, bytes.Replace(data, []byte(other.Addr()), []byte(n.srv.Addr()), 1), 0o600)
		data, _ = os.ReadFile(tg.KnownHostsFile)
		fixed := strings.Replace(string(data), "["+other.IP+"]:"+strconv.Itoa(other.Port), "["+n.srv.IP+"]:"+strconv.Itoa(n.srv.Port), 1)
		os.WriteFile(tg.KnownHostsFile, []byte(fixed), 0o600)
		wantStage(t, dial(tg), "host key", "different key")
	})
	t.Run("Key", func(t *testing.T) {
		tg := *n.t
		tg.Password, tg.KeyFile = "", n.srv.KeyFile
		if err := dial(tg); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Unreachable", func(t *testing.T) {
		tg := *n.t
		tg.Port = 1
		wantStage(t, dial(tg), "connect", "unreachable")
	})
}

// syncBuf is a buffer written by one goroutine and read by another.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sessionOf reads a process's session id from /proc.
func sessionOf(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return strconv.Atoi(f[3])
}
