//go:build linux

package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// Pampa's own supervisor: `<program> nodes agent supervise --id ID SPEC`,
// started by the agent in a session of its own, one per worker. It is the
// worker's parent, so it learns at once how the worker ended, and it holds
// no state but its record: nothing to lose when it is stopped.
//
//	agent ──setsid──▶ supervise --id n1.1 ──▶ nodes agent exec SPEC -- worker --id n1.1
//	                      │  exit ≠ 0 or signal: wait 1s, 2s, 4s ... (up to 30s), start it again
//	                      │  more than 5 restarts within 60s: give up, say so in run/n1.1.super.json
//	                      └─ SIGTERM: stop supervising, leave the worker to `nodes stop`
//
// One supervisor per worker, rather than one per node: each lives and dies
// with its worker's start and stop, `nodes stop --worker` is a signal to
// one process, and a supervisor that fails takes only its worker's
// supervision with it.

type supervisor struct {
	spec  superviseSpec
	rec   Supervision
	crash crashLoop
}

// child is one run of the worker.
type child struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{}
}

// supervise runs the supervisor to its end and returns its exit status.
func supervise(ctx context.Context, spec superviseSpec) int {
	// The report pipe is for this process alone, not for the workers.
	syscall.CloseOnExec(3)
	report := os.NewFile(3, "report")
	spec.Restart = spec.Restart.withDefaults()
	s := &supervisor{spec: spec, crash: crashLoop{p: spec.Restart}}
	s.rec = Supervision{Kind: SupervisorPampa, PID: os.Getpid(), StartedAt: time.Now().UTC(), Restart: spec.Restart}
	if data, err := os.ReadFile("/proc/self/stat"); err == nil {
		if ps, err := parseProcStat(data); err == nil {
			s.rec.StartTicks = ps.StartTicks
		}
	}
	stopped := stopSignal(ctx)

	c, err := s.start()
	if err != nil {
		s.end(SuperExited, "could not start the worker: "+err.Error())
		sendReport(report, startReport{Error: err.Error()})
		return 1
	}
	s.rec.State, s.rec.WorkerPID = SuperRunning, c.pid
	s.write()
	if exit := s.settle(c, stopped); exit != nil {
		removeRecord(spec.Dir, spec.ID)
		s.rec.LastExit = exit
		s.end(SuperExited, "the worker exited at once ("+exit.String()+"): not restarted")
		sendReport(report, startReport{Exited: exit})
		return 1
	}
	sendReport(report, startReport{PID: c.pid})
	return s.loop(c, stopped)
}

// loop waits for each run of the worker to end and starts the next, until
// a clean exit, a signal to stop, or a crash loop.
func (s *supervisor) loop(c *child, stopped <-chan struct{}) int {
	for {
		select {
		case <-c.done:
		case <-stopped:
			s.logf("stopped by a signal: worker pid %d is left for `nodes stop` to stop", c.pid)
			s.end(SuperStopped, "stopped by a signal")
			return 0
		}
		exit := exitOf(c)
		s.rec.LastExit = &exit
		ran := time.Duration(exit.RanMS) * time.Millisecond
		if exit.Clean() {
			s.logf("worker pid %d exited with status 0 after %s: not restarted", c.pid, ran)
			s.end(SuperExited, "the worker exited with status 0: not restarted")
			return 0
		}
		delay, giveUp := s.crash.failed(exit.At)
		if giveUp {
			return s.giveUp(fmt.Sprintf("crash loop: restarted %d times within %s, and it ended again (%s); not restarted until the next `nodes start`",
				s.rec.Restart.Limit, s.rec.Restart.Window, exit))
		}
		next := exit.At.Add(delay)
		s.rec.State, s.rec.WorkerPID, s.rec.NextStartAt = SuperRestarting, 0, &next
		s.write()
		s.logf("worker pid %d ended (%s) after %s; restart %d in %s", c.pid, exit, ran, s.rec.Restarts+1, delay)
		select {
		case <-time.After(delay):
		case <-stopped:
			s.end(SuperStopped, "stopped by a signal while waiting to restart the worker")
			return 0
		}
		var err error
		if c, err = s.start(); err != nil {
			return s.giveUp("cannot start the worker again: " + err.Error())
		}
		s.rec.Restarts++
		s.rec.State, s.rec.WorkerPID, s.rec.NextStartAt = SuperRunning, c.pid, nil
		s.write()
	}
}

func (s *supervisor) giveUp(reason string) int {
	s.logf("GAVE UP on worker %s: %s", s.spec.ID, reason)
	s.rec.GaveUp = true
	s.end(SuperGaveUp, reason)
	return 1
}

// stopSignal is closed on SIGTERM or SIGINT (or when ctx ends: the
// command line turns those signals into a cancelled context).
func stopSignal(ctx context.Context) <-chan struct{} {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
		}
		close(stopped)
	}()
	return stopped
}

// start runs the worker once and records its pid.
func (s *supervisor) start() (*child, error) {
	sp := s.spec
	argv := sp.Command
	if sp.Scope != nil {
		argv = append(scopePrefix(sp.Scope, sp.ID), argv...)
	}
	out, err := os.OpenFile(OutPath(sp.Dir, sp.ID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	fmt.Fprintf(out, "--- %s pampa: starting %s %s (release %s)\n", time.Now().Format(time.RFC3339), kindOf(sp.ID), sp.ID, sp.Release)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = sp.Dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c := &child{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	rec := recordFor(sp.Dir, WorkerProcess{ID: sp.ID, Release: sp.Release, GraceMS: sp.GraceMS, Members: sp.Members}, c.pid)
	if err := writeRecord(sp.Dir, rec); err != nil {
		_ = cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	return c, nil
}

// settle waits for the first run to become the worker's program and stay
// up for the settle time; it returns how the run ended if it did
// meanwhile: a worker that dies at once (bad config, database
// unreachable) is reported, not restarted. The settle time counts from
// when the worker's program runs: on a loaded machine the exec step
// itself may take a while, and until it is done the limits are not all in
// force yet.
func (s *supervisor) settle(c *child, stopped <-chan struct{}) *ExitInfo {
	execDeadline := time.After(execTimeout)
waitExec:
	for !execDone(c.pid) {
		select {
		case <-c.done:
			exit := exitOf(c)
			return &exit
		case <-execDeadline:
			break waitExec
		case <-stopped:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-c.done:
		exit := exitOf(c)
		return &exit
	case <-time.After(time.Duration(s.spec.SettleMS) * time.Millisecond):
	case <-stopped:
	}
	return nil
}

// exitOf describes how an ended run ended.
func exitOf(c *child) ExitInfo {
	now := time.Now()
	e := ExitInfo{At: now.UTC(), RanMS: max(1, now.Sub(c.started).Milliseconds())}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = signalName(int(ws.Signal()))
	} else {
		e.Code = c.cmd.ProcessState.ExitCode()
	}
	return e
}

func (s *supervisor) write() {
	if err := writeJSON(superPath(s.spec.Dir, s.spec.ID), s.rec); err != nil {
		s.logf("cannot write %s: %v", superPath(s.spec.Dir, s.spec.ID), err)
	}
}

// end records the supervisor's last state before it exits.
func (s *supervisor) end(state, reason string) {
	s.rec.State, s.rec.Reason, s.rec.WorkerPID, s.rec.NextStartAt = state, reason, 0, nil
	s.write()
}

// logf adds a line to the supervisor's standard error: the worker's .out
// file, where `nodes logs --out` shows it beside the worker's own output.
func (s *supervisor) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "--- %s pampa supervisor: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func sendReport(f *os.File, r startReport) {
	_ = json.NewEncoder(f).Encode(r)
	_ = f.Close()
}
