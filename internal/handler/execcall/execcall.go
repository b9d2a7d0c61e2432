// Package execcall runs a job's processing function as a command: the
// exec transport of internal/handler. Each try hands the command its
// handler.Input as one line of JSON on stdin and reads its outcome back.
//
// In once mode each try starts the command; its exit status says how the
// try went (0 success, FinalStatus failed for good, anything else a failed
// try) and its stdout, if any, is one JSON object of columns to set. In
// persistent mode a process serves one try after another: one Input line
// in, one answer line out (see persistent.go). docs/handlers.md is the
// user's side of both.
//
// Every process runs in a process group of its own. When it exits, or its
// try's context ends (SIGTERM, then SIGKILL after KillGrace), the whole
// group is killed: a try leaves nothing running behind it. Output is
// bounded: stdout (or one answer line) up to MaxOutput, the last
// StderrTail bytes of stderr for the error description.
package execcall

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
)

// Limits and statuses of the exec transport.
const (
	// MaxOutput caps a once try's stdout, and a persistent process's
	// answer line: past it the try fails ("output too large") and the
	// process is killed; nothing more is kept in memory.
	MaxOutput = 1 << 20
	// StderrTail is how much of the end of stderr is kept: the error
	// description of a failed try quotes it (where a traceback says what
	// went wrong), and the description column keeps 8 KiB at most.
	StderrTail = 4 << 10
	// FinalStatus is the exit status that fails the task for good. It is
	// none of sysexits' 64–78 (EX_TEMPFAIL, 75, even means "try again"),
	// nor the shell's 126, 127 and 128+n: a script that passes on the
	// status of a tool it ran (set -e) must not end a task for good by
	// accident.
	FinalStatus = 100
	// DefaultKillGrace is the wait between SIGTERM and SIGKILL.
	DefaultKillGrace = 5 * time.Second
)

// Options say what to run and how.
type Options struct {
	// Args is the command: the program (a path, or a name looked up in
	// PATH) and its arguments.
	Args []string
	// Dir is the working directory; "" for the worker's own.
	Dir string
	// Env is the command's whole environment, as os.Environ gives it;
	// nil for the worker's own.
	Env []string
	// Persistent keeps processes running from one try to the next.
	Persistent bool
	// KillGrace is how long a process has, after SIGTERM, before SIGKILL.
	// Default DefaultKillGrace.
	KillGrace time.Duration
	// Log receives what the caller notices beside outcomes: a persistent
	// process that exited or spoke unasked, a command's stderr on success
	// (debug). Default: discard.
	Log *slog.Logger
}

// Caller runs the tries of one job for one worker; it is safe for
// concurrent use, one try per slot.
type Caller struct {
	opts Options
	pool *pool // persistent mode only
}

// New returns a caller. Persistent processes are started as tries need
// them, never before.
func New(opts Options) *Caller {
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	c := &Caller{opts: opts}
	if opts.Persistent {
		c.pool = &pool{c: c}
	}
	return c
}

// Call runs one try. The context's deadline is the try's; when it ends,
// the process is stopped and the try fails.
func (c *Caller) Call(ctx context.Context, in handler.Input) handler.Outcome {
	line, err := json.Marshal(in)
	if err != nil {
		return handler.Outcome{Err: fmt.Errorf("encode the task as JSON: %w", err)}
	}
	line = append(line, '\n')
	if c.pool != nil {
		return c.pool.call(ctx, line, in)
	}
	return c.once(ctx, line, in)
}

// Close stops the persistent processes: each gets its stdin closed, then
// KillGrace to exit, then SIGTERM and SIGKILL. It returns once they are
// gone. Tries still running stop their own processes when they end.
func (c *Caller) Close() {
	if c.pool != nil {
		c.pool.close()
	}
}

// name is the program, for error messages.
func (c *Caller) name() string { return c.opts.Args[0] }
