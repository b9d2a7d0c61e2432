//go:build linux

package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serveStart starts the requested workers that are not running, each
// under a supervisor (a systemd unit, or Pampa's own in a session of its
// own, so that it outlives the SSH session), with its output in
// logs/worker.<id>.out, its pid in run/<id>.pid and its limits applied
// before its program starts.
func serveStart(ctx context.Context, req *startRequest) startResponse {
	var resp startResponse
	relDir := path.Join(req.Dir, releasesDir, req.Release)
	rel, err := loadRelease(relDir, req)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	req.Restart = req.Restart.withDefaults()
	sup, sd, err := chooseSupervisor(req.Supervisor, probeSystemd(req.Supervisor))
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	sup.Restart = req.Restart
	resp.Supervision = sup
	s := &starter{req: req, relDir: relDir, rel: rel, plan: planLimits(req.Limits, req.Dir, sd), sd: sd}
	resp.Limits = s.plan.reports
	// One start at a time on the node, to its end: what runs is checked
	// under this lock, and a worker just handed to its supervisor may not
	// have written its records yet.
	nodeLock, err := lockFile(nodeLockPath(req.Dir, s.node()), execTimeout+time.Duration(req.SettleMS)*time.Millisecond+time.Minute)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	defer nodeLock.Close()
	if why := s.servedOtherwise(); why != "" {
		resp.Error = why
		return resp
	}
	started, locks := s.launchWorkers(&resp)
	defer func() {
		for _, l := range locks {
			l.Close()
		}
	}()
	var wg sync.WaitGroup
	for _, l := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.settle(ctx, l, &resp.Workers[l.i])
		}()
	}
	wg.Wait()
	for _, l := range started {
		s.confirm(l, &resp.Workers[l.i])
	}
	return resp
}

// starter is one start request being served.
type starter struct {
	req    *startRequest
	relDir string
	rel    *Release
	plan   *limitPlan
	sd     *systemdManager // nil: Pampa's own supervisor
}

// supervised is a worker just handed to its supervisor, not yet known to
// stay up.
type supervised interface {
	// settle returns the worker's pid once it has stayed up for the
	// settle time, or how it ended if it did not.
	settle(ctx context.Context, within time.Duration) (pid int, exit *ExitInfo, err error)
	// abandon stops the supervisor, then the worker.
	abandon(pid int)
}

// launched is a worker started now, by index in the response.
type launched struct {
	i  int
	sv supervised
}

// loadRelease reads the release's manifest and makes the run and log
// directories.
func loadRelease(relDir string, req *startRequest) (*Release, error) {
	data, err := os.ReadFile(path.Join(relDir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("release %s: %v", req.Release, err)
	}
	var rel Release
	if err := json.Unmarshal(data, &rel); err != nil || rel.Program == "" {
		return nil, fmt.Errorf("release %s: unreadable %s", req.Release, manifestName)
	}
	for _, d := range []string{runDir, logsDir} {
		if err := os.MkdirAll(path.Join(req.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	return &rel, nil
}

// node is the name of the node served.
func (s *starter) node() string {
	if s.req.Node != "" || len(s.req.Workers) == 0 {
		return s.req.Node
	}
	node, _, _ := strings.Cut(s.req.Workers[0], ".")
	return node
}

// servedOtherwise says why the start must not go on, or "": a node is
// served either by its workers, each a process of its own, or by its node
// dispatcher, never by both, or its tasks would be claimed twice over.
// Running means the process runs, or its supervisor still supervises it
// (it may be about to start it again).
func (s *starter) servedOtherwise() string {
	node, dir := s.node(), s.req.Dir
	ndID := nodeDispatcherID(node)
	if s.req.NodeWorkers == 0 {
		pid, ok := s.running(ndID)
		if !ok {
			return ""
		}
		return fmt.Sprintf("node %s runs its node dispatcher %s (%s), which runs the node's workers in its own process: "+
			"starting them as processes of their own would serve the node twice; stop it first (`nodes stop %s --worker %s`), or start with --node-dispatcher",
			node, ndID, pidText(pid), node, ndID)
	}
	var busy []string
	for _, id := range nodeWorkerFiles(dir, node) {
		if pid, ok := s.running(id); ok {
			busy = append(busy, id+" ("+pidText(pid)+")")
		}
	}
	if len(busy) == 0 {
		return ""
	}
	return fmt.Sprintf("node %s runs workers as processes of their own: %s; a node dispatcher beside them would serve the node twice: "+
		"stop them first (`nodes stop %s`), then start the node dispatcher", node, strings.Join(busy, ", "), node)
}

// running reports whether id's process runs, or its supervisor still
// supervises it, and its pid (0 while its supervisor waits to restart it).
func (s *starter) running(id string) (int, bool) {
	var w WorkerStart
	w.ID = id
	if !s.alreadyRunning(&w) {
		return 0, false
	}
	return w.PID, true
}

func pidText(pid int) string {
	if pid == 0 {
		return "its supervisor is about to start it again"
	}
	return "pid " + strconv.Itoa(pid)
}

// nodeWorkerFiles lists the workers of node that have a pid file or a
// supervisor record in the node directory, whatever max_workers says now.
func nodeWorkerFiles(dir, node string) []string {
	entries, _ := os.ReadDir(path.Join(dir, runDir))
	seen := map[string]bool{}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".pid")
		if !ok {
			id, ok = strings.CutSuffix(name, superExt)
		}
		rest, isNode := strings.CutPrefix(id, node+".")
		if !ok || !isNode || seen[id] {
			continue
		}
		if n, err := strconv.Atoi(rest); err != nil || n < 1 || strconv.Itoa(n) != rest {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids
}

// launchWorkers hands each requested worker that is not running yet to
// a supervisor, under a lock per worker held until the caller closes it
// (one start at a time per worker, across concurrent agents).
func (s *starter) launchWorkers(resp *startResponse) ([]launched, []*os.File) {
	strictWhy := ""
	if s.req.StrictLimits {
		strictWhy = unapplied(s.plan.reports)
	}
	var started []launched
	var locks []*os.File
	for _, id := range s.req.Workers {
		i := len(resp.Workers)
		resp.Workers = append(resp.Workers, WorkerStart{ID: id})
		w := &resp.Workers[i]
		lock, err := lockWorker(s.req.Dir, id)
		if err != nil {
			w.Error = err.Error()
			continue
		}
		locks = append(locks, lock)
		if s.alreadyRunning(w) {
			continue
		}
		if strictWhy != "" {
			w.Error = "not started: these limits cannot be applied on this node: " + strictWhy
			continue
		}
		removeRecord(s.req.Dir, id)
		_ = os.Remove(superPath(s.req.Dir, id))
		sv, err := s.launch(w)
		if err != nil {
			w.Error = err.Error()
			continue
		}
		started = append(started, launched{i: i, sv: sv})
	}
	return started, locks
}

// alreadyRunning reports a worker that its supervisor still supervises
// (running, or waiting to restart it), or that runs without one.
func (s *starter) alreadyRunning(w *WorkerStart) bool {
	st := processState(os.ReadFile, s.req.Dir, w.ID)
	sup := supervisorState(os.ReadFile, s.req.Dir, w.ID)
	if sup != nil && sup.Kind == SupervisorSystemd {
		askSystemd(sup)
	}
	switch {
	case sup != nil && sup.Alive:
		w.Supervisor = sup.Kind
	case st.Running:
		w.Unsupervised = true
	default:
		return false
	}
	w.AlreadyRunning = true
	if st.Running {
		w.PID = st.PID
		if st.Record != nil {
			w.Limits = st.Record.Limits
		}
	}
	return true
}

// launch prepares the worker's limits and hands it to its supervisor.
func (s *starter) launch(w *WorkerStart) (supervised, error) {
	spec, err := s.plan.prepare(w.ID)
	if err != nil {
		return nil, err
	}
	if s.sd != nil {
		w.Supervisor = SupervisorSystemd
		return s.launchUnit(w, spec)
	}
	w.Supervisor = SupervisorPampa
	return s.launchSupervisor(w.ID, spec)
}

// workerCommand is the exec step and the worker's arguments: what a
// supervisor runs at each start of the worker, or of the node dispatcher.
func (s *starter) workerCommand(id string, spec execSpec) []string {
	req := s.req
	bin := path.Join(s.relDir, s.rel.Program)
	argv := []string{bin, "worker", "--id", id}
	if node, ok := dispatcherNode(id); ok && req.NodeWorkers > 0 {
		argv = []string{bin, "node", "--node", node, "--workers", strconv.Itoa(req.NodeWorkers)}
	}
	if s.rel.Config != "" {
		argv = append(argv, "--config", path.Join(s.relDir, s.rel.Config))
	}
	argv = append(argv, "--log-dir", path.Join(req.Dir, logsDir), "--grace", (time.Duration(req.GraceMS) * time.Millisecond).String())
	argv = append(argv, req.WorkerArgs...)
	specJSON, _ := json.Marshal(spec)
	return append([]string{bin, "nodes", "agent", "exec", string(specJSON), "--"}, argv...)
}

// settle waits for a worker started now to stay up, and reports one that
// dies at once (bad config, database unreachable, id taken) with the end
// of its output.
func (s *starter) settle(ctx context.Context, l launched, w *WorkerStart) {
	pid, exit, err := l.sv.settle(ctx, execTimeout+time.Duration(s.req.SettleMS)*time.Millisecond+10*time.Second)
	switch {
	case err != nil:
		w.Error = err.Error()
	case exit != nil:
		data, _ := os.ReadFile(OutPath(s.req.Dir, w.ID))
		w.Error = fmt.Sprintf("exited at once (%s): %s", exit, tailLines(data, 5))
		if s.plan.rlimit > 0 {
			w.Error += " [max_ram is applied as RLIMIT_DATA, which also counts the address space the Go runtime reserves (100-200 MiB): if it ran out of memory, raise max_ram]"
		}
	default:
		w.PID = pid
		return
	}
	// Its supervisor may still run (interrupted, or silent): stop it, and
	// the worker if one is recorded.
	st := processState(os.ReadFile, s.req.Dir, w.ID)
	if !st.Running {
		st.PID = 0
	}
	l.sv.abandon(st.PID)
	removeRecord(s.req.Dir, w.ID)
	w.PID = 0
}

// confirm checks the limits of a worker that stayed up, and stops it if
// strict limits are not in force.
func (s *starter) confirm(l launched, w *WorkerStart) {
	if w.Error != "" {
		return
	}
	w.Started = true
	w.Limits = s.plan.verify(w.PID, w.ID)
	if s.req.StrictLimits {
		if why := unapplied(w.Limits); why != "" {
			l.sv.abandon(w.PID)
			removeRecord(s.req.Dir, w.ID)
			w.Started, w.PID = false, 0
			w.Error = "stopped: these limits were not in force once it ran: " + why
			return
		}
	}
	if rec, err := readRecord(os.ReadFile, s.req.Dir, w.ID); err == nil {
		rec.Limits = w.Limits
		_ = writeRecord(s.req.Dir, rec)
	}
}

// execTimeout bounds the wait for the exec step to become the worker.
const execTimeout = 30 * time.Second

// execDone reports whether process pid runs the worker's program yet,
// past systemd-run and the exec step: its command line is
// `<program> worker ...` (`<program> node ...` for a node dispatcher).
func execDone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return true // gone: the caller sees it exit
	}
	args := strings.Split(string(data), "\x00")
	return len(args) > 1 && (args[1] == "worker" || args[1] == "node")
}

// launchSupervisor starts Pampa's own supervisor of worker id, in a
// session of its own: no controlling terminal, no SIGHUP when the SSH
// session ends, and its own process group, which the worker shares.
func (s *starter) launchSupervisor(id string, spec execSpec) (supervised, error) {
	req := s.req
	sspec := superviseSpec{Dir: req.Dir, ID: id, Release: req.Release, GraceMS: req.GraceMS, SettleMS: req.SettleMS, Members: req.NodeWorkers,
		Scope: s.plan.scope(), Command: s.workerCommand(id, spec), Restart: req.Restart}
	specJSON, _ := json.Marshal(sspec)
	out, err := os.OpenFile(OutPath(req.Dir, id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	bin := path.Join(s.relDir, s.rel.Program)
	cmd := exec.Command(bin, "nodes", "agent", "supervise", "--id", id, string(specJSON))
	cmd.Dir = req.Dir
	cmd.Env = append(os.Environ(), s.plan.env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start the supervisor %s: %w", bin, err)
	}
	p := &pampaRun{cmd: cmd, report: r, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// pampaRun is a worker handed to Pampa's own supervisor.
type pampaRun struct {
	cmd    *exec.Cmd
	report *os.File // read end of the supervisor's report pipe
	done   chan struct{}
}

func (p *pampaRun) settle(ctx context.Context, within time.Duration) (int, *ExitInfo, error) {
	got := make(chan *startReport, 1)
	go func() {
		defer p.report.Close()
		var rep startReport
		_ = p.report.SetReadDeadline(time.Now().Add(within))
		if err := json.NewDecoder(p.report).Decode(&rep); err != nil {
			got <- nil
			return
		}
		got <- &rep
	}()
	var rep *startReport
	select {
	case rep = <-got:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	switch {
	case rep == nil:
		select {
		case <-p.done:
			return 0, nil, fmt.Errorf("its supervisor ended (%s) before the worker was up (see its .out log)", p.cmd.ProcessState)
		case <-time.After(time.Second):
			return 0, nil, fmt.Errorf("its supervisor said nothing of the worker within %s: stopped it", within)
		}
	case rep.Exited != nil:
		return 0, rep.Exited, nil
	case rep.Error != "":
		return 0, nil, errors.New(rep.Error)
	}
	return rep.PID, nil, nil
}

// abandon stops the supervisor first, so that it does not start the
// worker again, then kills the worker.
func (p *pampaRun) abandon(pid int) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// writeRecord writes run/<id>.json and run/<id>.pid, each atomically.
func writeRecord(dir string, rec *WorkerProcess) error {
	if err := writeJSON(metaPath(dir, rec.ID), rec); err != nil {
		return err
	}
	return writeAtomic(pidPath(dir, rec.ID), []byte(strconv.Itoa(rec.PID)+"\n"))
}

// recordFor is the record of worker process pid, started now: with its
// start time, and the limits the worker's previous record holds (read
// back at `nodes start`; a restart runs the same command).
func recordFor(dir string, rec WorkerProcess, pid int) *WorkerProcess {
	rec.PID, rec.StartedAt, rec.Limits = pid, time.Now().UTC(), nil
	if prev, err := readRecord(os.ReadFile, dir, rec.ID); err == nil {
		rec.Limits = prev.Limits
	}
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		if ps, err := parseProcStat(data); err == nil {
			rec.StartTicks = ps.StartTicks
		}
	}
	return &rec
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(name, append(data, '\n'))
}

func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func removeRecord(dir, id string) {
	_ = os.Remove(metaPath(dir, id))
	_ = os.Remove(pidPath(dir, id))
}

// lockWorker takes the worker's start lock, waiting up to 30s for
// another start of it to finish.
func lockWorker(dir, id string) (*os.File, error) {
	return lockFile(lockPath(dir, id), 30*time.Second)
}

// lockFile takes an exclusive lock on name, waiting up to wait for
// another holder to let go.
func lockFile(name string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// execWorker is the last step before the worker runs: it joins the
// worker's cgroups and sets its rlimits, so they hold from the program's
// first instruction, then replaces itself with the worker program.
func execWorker(specJSON string, argv []string) error {
	var spec execSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("bad spec: %w", err)
	}
	if r := spec.Record; r != nil {
		// systemd starts the worker, again after a crash: this process is
		// the worker from here on, and records itself.
		fmt.Fprintf(os.Stderr, "--- %s pampa: starting %s %s (release %s)\n", time.Now().Format(time.RFC3339), kindOf(r.ID), r.ID, r.Release)
		if err := writeRecord(spec.Dir, recordFor(spec.Dir, *r, os.Getpid())); err != nil {
			fmt.Fprintf(os.Stderr, "pampa: cannot write the pid file of %s: %v\n", r.ID, err)
		}
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, f := range spec.CgroupProcs {
		// Not fatal: the agent reads the worker's cgroups back and reports
		// the limit as not applied (and --strict-limits stops the worker).
		// On cgroup v2, a user may only move processes between cgroups of a
		// subtree it owns.
		if err := os.WriteFile(f, pid, 0); err != nil {
			fmt.Fprintf(os.Stderr, "pampa: cannot join cgroup %s: %v\n", path.Dir(f), err)
		}
	}
	if spec.RlimitData > 0 {
		lim := syscall.Rlimit{Cur: spec.RlimitData, Max: spec.RlimitData}
		if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &lim); err != nil {
			return fmt.Errorf("set RLIMIT_DATA: %w", err)
		}
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}
