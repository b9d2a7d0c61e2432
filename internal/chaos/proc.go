package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Roles of the processes.
const (
	roleDispatcher = "dispatcher"
	roleWorker     = "worker"
)

// slot is one process of the scenario, started again whenever it dies:
// a dispatcher, or the worker with one id.
type slot struct {
	role string
	name string   // "dispatcher.1", or the worker's id
	args []string // the command line, without --config
	log  *os.File // the output of every process of the slot

	// Guarded by runner.mu.
	cur          *proc
	stopped      bool // SIGSTOPped, or stopped and not yet registered again
	starts       int
	failedStarts int // worker processes that exited before registering
}

// proc is one OS process.
type proc struct {
	slot    *slot
	pid     int
	started time.Time

	killed atomic.Bool // the runner ended it (SIGKILL or shutdown)
	ready  atomic.Bool // a worker has registered; a dispatcher is always ready

	exited chan struct{} // closed once the process is reaped
	exitAt time.Time     // set before exited is closed
	err    error         // set before exited is closed
	output chan struct{} // closed once its output is drained
}

var errExited = errors.New("the process has exited")

// signal sends sig to the process unless it has been reaped already.
func (p *proc) signal(sig syscall.Signal) error {
	select {
	case <-p.exited:
		return errExited
	default:
	}
	return syscall.Kill(p.pid, sig)
}

// alive reports whether the process has not been reaped yet.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// start starts a new process for s: the runner's executable in child
// mode, its output going to s's log, line by line, through onLine.
func (r *runner) start(s *slot) (*proc, error) {
	cmd := exec.Command(r.exe, append(append([]string{}, s.args...), "--config", r.configPath)...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	cmd.SysProcAttr = sysProcAttr()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	started := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	pw.Close()
	p := &proc{slot: s, pid: cmd.Process.Pid, started: started,
		exited: make(chan struct{}), output: make(chan struct{})}
	if s.role == roleDispatcher {
		p.ready.Store(true)
	}
	if s.role == roleWorker {
		r.live.begin(p.pid, started)
	}
	fmt.Fprintf(s.log, "=== %s pid %d started %s\n", s.name, p.pid, started.Format("15:04:05.000"))
	r.mu.Lock()
	s.cur = p
	s.starts++
	r.mu.Unlock()
	go func() {
		defer close(p.output)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(s.log, "[%d] %s\n", p.pid, line)
			r.onLine(p, line, time.Now())
		}
	}()
	go func() {
		err := cmd.Wait()
		p.exitAt, p.err = time.Now(), err
		if s.role == roleWorker {
			r.live.died(p.pid, p.exitAt)
		}
		close(p.exited)
	}()
	return p, nil
}

// onLine watches the processes' logs: a worker is ready once it logs that
// it started (it has registered), and a dispatcher that logs "leading" has
// taken the lease.
func (r *runner) onLine(p *proc, line string, at time.Time) {
	switch p.slot.role {
	case roleWorker:
		if strings.Contains(line, "worker started") || strings.Contains(line, "node dispatcher started") {
			p.ready.Store(true)
		}
	case roleDispatcher:
		if isLeadingLine(line) {
			r.mu.Lock()
			r.leads = append(r.leads, leadEvent{pid: p.pid, at: at})
			r.mu.Unlock()
		}
	}
}

// isLeadingLine recognises the dispatcher's "leading" log line (console
// format: "15:04:05.000 INFO  dispatcher  leading term=3").
func isLeadingLine(line string) bool {
	for _, f := range strings.Fields(line) {
		if f == "leading" {
			return true
		}
	}
	return false
}

// leadEvent is a dispatcher process taking the lease.
type leadEvent struct {
	pid int
	at  time.Time
}

// supervise keeps s running until the run stops: a process the runner
// killed is started again at once (a dispatcher after a pause, so that it
// comes back as a standby); a worker that exits before registering (its
// killed predecessor's heartbeat is still fresh) is retried every half
// second; any other exit is a problem, and the process is started again.
func (r *runner) supervise(s *slot) {
	defer r.wg.Done()
	failedInARow := 0
	for {
		if r.stopping.Load() {
			return
		}
		p, err := r.start(s)
		if err != nil {
			r.problem("%v", err)
			return
		}
		select {
		case <-p.exited:
		case <-r.stopCh:
			return
		}
		<-p.output
		if r.stopping.Load() {
			return
		}
		var pause time.Duration
		switch {
		case p.killed.Load():
			failedInARow = 0
			if s.role == roleDispatcher {
				pause = time.Second
			}
		case s.role == roleWorker && !p.ready.Load():
			r.mu.Lock()
			s.failedStarts++
			r.mu.Unlock()
			if failedInARow++; failedInARow > 60 {
				r.problem("%s: %d processes in a row exited before registering (%v); giving up on it", s.name, failedInARow, p.err)
				return
			}
			pause = 500 * time.Millisecond
		default:
			failedInARow = 0
			r.problem("%s (pid %d) exited on its own after %s: %v", s.name, p.pid, p.exitAt.Sub(p.started).Round(time.Millisecond), p.err)
			pause = time.Second
		}
		select {
		case <-time.After(pause):
		case <-r.stopCh:
			return
		}
	}
}

// current returns s's process, or nil.
func (r *runner) current(s *slot) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.cur
}
