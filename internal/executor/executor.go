// Package executor runs one try of a task: the job's starter hook, then
// its processing function under the job's max duration, recovering panics
// and not waiting for ever on a function that ignores its context.
//
// A try is judged by when it returns: one that returns after its deadline
// has failed, whatever it returns, and the columns it set are dropped. The
// original's promise is that a task not finished within its max duration
// is restarted elsewhere; a success recorded after the deadline would break
// it, since by then the dispatcher may already be relaunching the row.
package executor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune an executor.
type Options struct {
	// OverrunGrace is how long to wait, after a try's deadline or cancel,
	// for a function that ignores its context before abandoning it.
	// Default 5s.
	OverrunGrace time.Duration
	// Store runs the starter hook's transaction; nil when no job has one
	// (tests of a processing function alone).
	Store *store.Store
	// Hard is cancelled when the worker stops at once; it bounds the
	// starter hook and is the parent of every try. Default Background.
	Hard context.Context
}

// Executor runs tries. Its running tries can be cancelled together
// (CancelRunning) while later tries start under a fresh parent.
type Executor struct {
	opts Options

	mu        sync.Mutex
	runCtx    context.Context
	runCancel context.CancelFunc
}

// New returns an executor.
func New(opts Options) *Executor {
	if opts.OverrunGrace == 0 {
		opts.OverrunGrace = 5 * time.Second
	}
	if opts.Hard == nil {
		opts.Hard = context.Background()
	}
	e := &Executor{opts: opts}
	e.runCtx, e.runCancel = context.WithCancel(opts.Hard)
	return e
}

// CancelRunning cancels the contexts of the tries running now.
func (e *Executor) CancelRunning() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runCancel()
	e.runCtx, e.runCancel = context.WithCancel(e.opts.Hard)
}

func (e *Executor) parent() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runCtx
}

// Execute runs the starter hook and the processing function of one try,
// and returns how long the function ran (0 when it did not run); the
// job's observer is told of each try the function ran.
func (e *Executor) Execute(a *engine.Attempt) (engine.Outcome, time.Duration) {
	if err := a.Cancelled(); err != nil {
		return engine.Outcome{Attempt: a, Err: err}, 0 // cancelled while it waited to start
	}
	if h := a.Job.Hooks.Starter; h != nil {
		err := e.opts.Store.Tx(e.opts.Hard, func(ctx context.Context, tx *sql.Tx) error {
			return h(ctx, tx, a)
		})
		if err != nil {
			return engine.Outcome{Attempt: a, Err: fmt.Errorf("starter hook: %w", err)}, 0
		}
	}
	start := time.Now()
	err := e.Process(a)
	d := time.Since(start)
	var panicked *engine.PanicError
	a.Job.Observe().TryEnded(d, err != nil && errors.As(err, &panicked))
	return engine.Outcome{Attempt: a, Err: err}, d
}

// Process calls the processing function with the job's deadline.
func (e *Executor) Process(a *engine.Attempt) error {
	max := a.Job.MaxJobDuration
	parent, release := a.Context(e.parent())
	defer release()
	ctx, cancel := context.WithTimeout(parent, max)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- &engine.PanicError{Value: p, Stack: string(debug.Stack())}
			}
		}()
		done <- a.Job.Hooks.Process(ctx, a)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done:
		case <-time.After(e.opts.OverrunGrace):
			a.Seal(true) // it may go on running: nothing it sets counts
			return fmt.Errorf("the processing function did not return within %s of its context ending (%v); abandoned",
				e.opts.OverrunGrace, context.Cause(ctx))
		}
	}
	if cause := a.Cancelled(); cause != nil {
		// The row is failed for good already: nothing of the try counts.
		a.Seal(true)
		return cause
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return late(a, err, max)
	}
	a.Seal(false)
	return err
}

// late judges a try that returned after its deadline: it failed, and what
// it returned or set is dropped (and said so in the log).
func late(a *engine.Attempt, err error, max time.Duration) error {
	if set := a.Seal(true); set > 0 || err == nil {
		a.Log.Warn("late result dropped: the try returned after its max_job_duration",
			"max_job_duration", max, "returned_error", err != nil, "columns_set", set)
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after max_job_duration %s: %w", max, err)
	}
	if err != nil {
		return fmt.Errorf("timed out after max_job_duration %s (then returned: %v): %w", max, err, context.DeadlineExceeded)
	}
	return fmt.Errorf("timed out after max_job_duration %s (it returned later, without error; result dropped): %w", max, context.DeadlineExceeded)
}
