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
// detached in a session of its own so that it outlives the SSH session,
// with its output in logs/worker.<id>.out, its pid in run/<id>.pid and
// its limits applied before its program starts.
func serveStart(ctx context.Context, req *startRequest) startResponse {
	var resp startResponse
	relDir := path.Join(req.Dir, releasesDir, req.Release)
	rel, err := loadRelease(relDir, req)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	plan := planLimits(req.Limits, req.Dir)
	resp.Limits = plan.reports
	started, locks := launchWorkers(req, relDir, rel, plan, &resp)
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
			settleWorker(ctx, req, plan, l, &resp.Workers[l.i])
		}()
	}
	wg.Wait()
	for _, l := range started {
		confirmWorker(req, plan, l, &resp.Workers[l.i])
	}
	return resp
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

// launched is a worker process just started, not yet known to stay up.
type launched struct {
	i    int // index in the response's workers
	cmd  *exec.Cmd
	done chan error
	out  string
}

// launchWorkers starts each requested worker that is not running yet,
// under a lock per worker held until the caller closes it (one start at a
// time per worker, across concurrent agents).
func launchWorkers(req *startRequest, relDir string, rel *Release, plan *limitPlan, resp *startResponse) ([]launched, []*os.File) {
	strictWhy := ""
	if req.StrictLimits {
		strictWhy = unapplied(plan.reports)
	}
	var started []launched
	var locks []*os.File
	for _, id := range req.Workers {
		i := len(resp.Workers)
		resp.Workers = append(resp.Workers, WorkerStart{ID: id})
		w := &resp.Workers[i]
		lock, err := lockWorker(req.Dir, id)
		if err != nil {
			w.Error = err.Error()
			continue
		}
		locks = append(locks, lock)
		st := processState(os.ReadFile, req.Dir, id)
		if st.Running {
			w.PID, w.AlreadyRunning = st.PID, true
			if st.Record != nil {
				w.Limits = st.Record.Limits
			}
			continue
		}
		if strictWhy != "" {
			w.Error = "not started: these limits cannot be applied on this node: " + strictWhy
			continue
		}
		removeRecord(req.Dir, id)
		cmd, out, err := launch(req, relDir, rel, plan, id)
		if err != nil {
			w.Error = err.Error()
			continue
		}
		w.PID = cmd.Process.Pid
		l := launched{i: i, cmd: cmd, done: make(chan error, 1), out: out}
		go func() { l.done <- cmd.Wait() }()
		started = append(started, l)
	}
	return started, locks
}

// settleWorker reports a worker that dies at once (bad config, database
// unreachable, id taken) with the end of its output. The settle time
// counts from when the worker's program runs: on a loaded machine the
// exec step itself may take a while, and until it is done the limits are
// not all in force yet.
func settleWorker(ctx context.Context, req *startRequest, plan *limitPlan, l launched, w *WorkerStart) {
	var err error
	exited := false
	execDeadline := time.After(execTimeout)
waitExec:
	for !execDone(w.PID) {
		select {
		case err = <-l.done:
			exited = true
			break waitExec
		case <-execDeadline:
			break waitExec
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !exited {
		select {
		case err = <-l.done:
			exited = true
		case <-time.After(time.Duration(req.SettleMS) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if !exited {
		return
	}
	removeRecord(req.Dir, w.ID)
	data, _ := os.ReadFile(l.out)
	w.Error = fmt.Sprintf("exited at once (%v): %s", exitText(err), tailLines(data, 5))
	if plan.rlimit > 0 {
		w.Error += " [max_ram is applied as RLIMIT_DATA, which also counts the address space the Go runtime reserves (100-200 MiB): if it ran out of memory, raise max_ram]"
	}
	w.PID = 0
}

// confirmWorker checks the limits of a worker that stayed up, and stops
// it if strict limits are not in force.
func confirmWorker(req *startRequest, plan *limitPlan, l launched, w *WorkerStart) {
	if w.Error != "" {
		return
	}
	w.Started = true
	w.Limits = plan.verify(w.PID, w.ID)
	if req.StrictLimits {
		if why := unapplied(w.Limits); why != "" {
			_ = l.cmd.Process.Kill()
			removeRecord(req.Dir, w.ID)
			w.Started, w.PID = false, 0
			w.Error = "stopped: these limits were not in force once it ran: " + why
			return
		}
	}
	if rec, err := readRecord(os.ReadFile, req.Dir, w.ID); err == nil {
		rec.Limits = w.Limits
		_ = writeRecord(req.Dir, rec)
	}
}

// execTimeout bounds the wait for the exec step to become the worker.
const execTimeout = 30 * time.Second

// execDone reports whether process pid runs the worker's program yet,
// past systemd-run and the exec step: its command line is
// `<program> worker ...`.
func execDone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return true // gone: the caller sees it exit
	}
	args := strings.Split(string(data), "\x00")
	return len(args) > 1 && args[1] == "worker"
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// launch starts one worker and records it.
func launch(req *startRequest, relDir string, rel *Release, plan *limitPlan, id string) (*exec.Cmd, string, error) {
	bin := path.Join(relDir, rel.Program)
	argv := []string{bin, "worker", "--id", id}
	if rel.Config != "" {
		argv = append(argv, "--config", path.Join(relDir, rel.Config))
	}
	argv = append(argv, "--log-dir", path.Join(req.Dir, logsDir), "--grace", (time.Duration(req.GraceMS) * time.Millisecond).String())
	argv = append(argv, req.WorkerArgs...)

	spec, prefix, err := plan.prepare(id)
	if err != nil {
		return nil, "", err
	}
	specJSON, _ := json.Marshal(spec)
	full := append(append(prefix, bin, "nodes", "agent", "exec", string(specJSON), "--"), argv...)

	outPath := OutPath(req.Dir, id)
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	defer out.Close()
	fmt.Fprintf(out, "--- %s pampa: starting worker %s (release %s)\n", time.Now().Format(time.RFC3339), id, req.Release)

	cmd := exec.Command(full[0], full[1:]...)
	cmd.Dir = req.Dir
	cmd.Env = append(os.Environ(), plan.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// A session of its own: no controlling terminal, no SIGHUP when the
	// SSH session ends, and its own process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", full[0], err)
	}
	rec := &WorkerProcess{ID: id, PID: cmd.Process.Pid, Release: req.Release, StartedAt: time.Now().UTC(), GraceMS: req.GraceMS}
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/stat"); err == nil {
		if ps, err := parseProcStat(data); err == nil {
			rec.StartTicks = ps.StartTicks
		}
	}
	if err := writeRecord(req.Dir, rec); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("write pid file: %w", err)
	}
	return cmd, outPath, nil
}

// writeRecord writes run/<id>.json and run/<id>.pid, each atomically.
func writeRecord(dir string, rec *WorkerProcess) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(metaPath(dir, rec.ID), append(data, '\n')); err != nil {
		return err
	}
	return writeAtomic(pidPath(dir, rec.ID), []byte(strconv.Itoa(rec.PID)+"\n"))
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
	f, err := os.OpenFile(lockPath(dir, id), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", lockPath(dir, id), err)
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
