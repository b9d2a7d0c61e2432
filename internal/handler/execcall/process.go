package execcall

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one running command, in a process group of its own.
type process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailWriter
	done   chan struct{} // closed once the process is reaped and its output read

	mu     sync.Mutex
	exited bool // the leader has exited: its group is not to be signalled any more
}

// errTooLarge stops the copy of an output past MaxOutput.
var errTooLarge = fmt.Errorf("output too large: more than %d bytes", MaxOutput)

// textBusyRetries bounds the starts retried on ETXTBSY: the program's
// file is open for writing somewhere (being deployed, or held for an
// instant by a process forked while it was written).
const textBusyRetries = 8

// start starts the command with stdout going to out (which may kill the
// process through its own kill, set here).
func (c *Caller) start(out killer) (*process, error) {
	for attempt := 1; ; attempt++ {
		p, err := c.startOnce(out)
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == textBusyRetries {
			return p, err
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
}

func (c *Caller) startOnce(out killer) (*process, error) {
	cmd := exec.Command(c.opts.Args[0], c.opts.Args[1:]...)
	cmd.Dir, cmd.Env = c.opts.Dir, c.opts.Env
	cmd.SysProcAttr = groupAttr()
	// A process that left the group (setsid) may hold the pipes open
	// after the group is killed: Wait closes them this long after.
	cmd.WaitDelay = time.Second
	p := &process{cmd: cmd, stderr: &tailWriter{max: StderrTail}, done: make(chan struct{})}
	out.setKill(func() { p.signal(syscall.SIGKILL) })
	cmd.Stdout, cmd.Stderr = out, p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.name(), err)
	}
	p.stdin = stdin
	go p.reap()
	return p, nil
}

// reap waits for the process, kills what it left in its group, and
// closes done. Where the leader can be waited for without being reaped
// (Linux), the group is killed before its id can be reused.
func (p *process) reap() {
	pid := p.cmd.Process.Pid
	early := waitLeader(pid)
	if early {
		p.mu.Lock()
		signalGroup(pid, syscall.SIGKILL)
		p.exited = true
		p.mu.Unlock()
	}
	p.cmd.Wait() // its error is in ProcessState and the writers
	p.mu.Lock()
	if !early {
		signalGroup(pid, syscall.SIGKILL)
	}
	p.exited = true
	p.mu.Unlock()
	close(p.done)
}

// signal sends sig to the process group, unless the process has exited.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		signalGroup(p.cmd.Process.Pid, sig)
	}
}

// gone reports whether the process has been reaped.
func (p *process) gone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// send writes data on stdin, then closes it if asked. Errors are not
// reported: a process that does not read its input, or died, says so by
// its exit.
func (p *process) send(data []byte, closeAfter bool) {
	p.stdin.Write(data)
	if closeAfter {
		p.stdin.Close()
	}
}

// terminate stops the process group: SIGTERM, then SIGKILL after grace.
// It returns once the process is reaped, saying how it was stopped ("" if
// it had exited already).
func (p *process) terminate(grace time.Duration) string {
	if p.gone() {
		return ""
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return "stopped by SIGTERM"
	case <-time.After(grace):
	}
	p.signal(syscall.SIGKILL)
	<-p.done
	return fmt.Sprintf("killed by SIGKILL, %s after SIGTERM", grace)
}

// stopGently closes stdin, the sign for a persistent process to exit,
// waits grace for it, then terminates it.
func (p *process) stopGently(grace time.Duration) {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(grace):
		p.terminate(grace)
	}
}

// status describes how the reaped process ended: "exit status 3" or
// "killed by signal 9 (killed)".
func (p *process) status() string {
	ps := p.cmd.ProcessState
	if ps == nil {
		return "not started"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

// exitCode is the reaped process's exit status, -1 if a signal ended it.
func (p *process) exitCode() int { return p.cmd.ProcessState.ExitCode() }

// withStderr appends the end of the process's stderr to what.
func (p *process) withStderr(what string) string {
	tail, total := p.stderr.tail()
	switch {
	case total == 0:
		return what + " (nothing on stderr)"
	case int64(len(tail)) < total:
		return fmt.Sprintf("%s; stderr (its last %d of %d bytes): …%s", what, len(tail), total, tail)
	}
	return what + "; stderr: " + string(tail)
}

// killer is a stdout writer that may kill its process (past MaxOutput).
type killer interface {
	io.Writer
	setKill(kill func())
}

// cappedBuffer keeps a once try's stdout, up to MaxOutput: past it, it
// kills the process and refuses the rest.
type cappedBuffer struct {
	buf  bytes.Buffer
	over bool
	kill func()
}

func (b *cappedBuffer) setKill(kill func()) { b.kill = kill }

func (b *cappedBuffer) Write(data []byte) (int, error) {
	if b.over || b.buf.Len()+len(data) > MaxOutput {
		if !b.over {
			b.over = true
			b.kill()
		}
		return 0, errTooLarge
	}
	return b.buf.Write(data)
}

// tailWriter keeps the last max bytes written, and counts them all.
type tailWriter struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (w *tailWriter) Write(data []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += int64(len(data))
	if len(data) >= w.max {
		w.buf = append(w.buf[:0], data[len(data)-w.max:]...)
		return len(data), nil
	}
	if drop := len(w.buf) + len(data) - w.max; drop > 0 {
		w.buf = append(w.buf[:0], w.buf[drop:]...)
	}
	w.buf = append(w.buf, data...)
	return len(data), nil
}

// tail returns a copy of the bytes kept, and how many were written.
func (w *tailWriter) tail() ([]byte, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf), w.total
}

// String is the kept end of stderr, for logs.
func (w *tailWriter) String() string {
	tail, _ := w.tail()
	return string(tail)
}
