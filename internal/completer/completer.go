// Package completer records the outcomes of a worker's tries. Outcomes
// wait in a batch and are written a few statements per job (one UPDATE
// per set of written columns), fenced by (key, worker, try), together
// with the finisher hooks, usually inside the worker's next claim
// transaction: one commit for many tasks. A batch that cannot be written
// as a whole (a column that cannot take its value, a failing finisher) is
// written again one outcome at a time, each with the full handling of
// [Completer.FinishOne]. Stop flushes what is left.
package completer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune a completer.
type Options struct {
	Store  *store.Store
	Worker string
	Log    *slog.Logger
	Stats  *engine.WorkerStats
	// Hard bounds every write: a graceful stop still records results, a
	// hard stop does not.
	Hard context.Context
	// MaxWait is how long the oldest outcome may wait before the batch is
	// due. Default 50ms.
	MaxWait time.Duration
	// MaxBatch is the batch size that makes a batch due. Default 1.
	MaxBatch int
	// Retryable reports passing database conditions, worth retrying.
	Retryable func(error) bool
}

// Completer holds outcomes not yet recorded. It is used by one goroutine.
type Completer struct {
	opts    Options
	batch   []engine.Outcome
	flushBy time.Time
}

// New returns a completer.
func New(opts Options) *Completer {
	if opts.MaxWait == 0 {
		opts.MaxWait = 50 * time.Millisecond
	}
	opts.MaxBatch = max(opts.MaxBatch, 1)
	if opts.Hard == nil {
		opts.Hard = context.Background()
	}
	if opts.Stats == nil {
		opts.Stats = &engine.WorkerStats{}
	}
	if opts.Retryable == nil {
		opts.Retryable = func(error) bool { return false }
	}
	return &Completer{opts: opts}
}

// Add queues an outcome.
func (c *Completer) Add(o engine.Outcome) {
	if len(c.batch) == 0 {
		c.flushBy = time.Now().Add(c.opts.MaxWait)
	}
	c.batch = append(c.batch, o)
}

// Holds reports whether the outcome of a's try waits here.
func (c *Completer) Holds(a *engine.Attempt) bool {
	for _, o := range c.batch {
		if o.Attempt.SameTry(a) {
			return true
		}
	}
	return false
}

// Len is how many outcomes wait.
func (c *Completer) Len() int { return len(c.batch) }

// Deadline is when the oldest waiting outcome must be recorded.
func (c *Completer) Deadline() time.Time { return c.flushBy }

// Due reports whether the batch must be written now, even without a
// claim to go with it: it is full, or its oldest outcome waited enough.
func (c *Completer) Due() bool {
	return len(c.batch) > 0 && (len(c.batch) >= c.opts.MaxBatch || !time.Now().Before(c.flushBy))
}

// Take hands the waiting outcomes over for writing.
func (c *Completer) Take() []engine.Outcome {
	b := c.batch
	c.batch = nil
	return b
}

// batchError is a failure inside a batched write that the one-by-one
// path knows how to handle.
type batchError struct{ err error }

func (e batchError) Error() string { return e.err.Error() }
func (e batchError) Unwrap() error { return e.err }

// WriteIn records outcomes within tx and runs the finisher hooks of the
// applied ones; it reports which were applied, in outcomes' order.
func (c *Completer) WriteIn(ctx context.Context, tx *sql.Tx, outcomes []engine.Outcome) ([]bool, error) {
	applied := make([]bool, len(outcomes))
	byJob := map[*engine.Job][]int{}
	var order []*engine.Job
	for i, o := range outcomes {
		if _, ok := byJob[o.Attempt.Job]; !ok {
			order = append(order, o.Attempt.Job)
		}
		byJob[o.Attempt.Job] = append(byJob[o.Attempt.Job], i)
	}
	for _, j := range order {
		idx := byJob[j]
		fences := make([]store.Fence, len(idx))
		outs := make([]store.Outcome, len(idx))
		for k, i := range idx {
			fences[k] = outcomes[i].Attempt.Fence()
			outs[k] = outcomes[i].Result()
		}
		ok, err := j.SQL.FinishMany(ctx, tx, fences, outs)
		if err != nil {
			return nil, batchError{err}
		}
		for k, i := range idx {
			applied[i] = ok[k]
		}
	}
	for i, o := range outcomes {
		if f := o.Attempt.Job.Hooks.Finisher; applied[i] && f != nil {
			if err := f(ctx, tx, o.Attempt, o.TaskErr()); err != nil {
				return nil, batchError{err}
			}
		}
	}
	return applied, nil
}

// Recorded counts and logs outcomes whose batch committed.
func (c *Completer) Recorded(outcomes []engine.Outcome, applied []bool) {
	for i, o := range outcomes {
		c.logResult(o.Attempt, o.Result(), applied[i])
	}
}

// FinishEach records each outcome in a transaction of its own, after a
// batch could not be written.
func (c *Completer) FinishEach(outcomes []engine.Outcome) {
	for _, o := range outcomes {
		c.FinishOne(o)
	}
}

// Flush writes every waiting outcome now, in a transaction of its own
// (falling back to one at a time); the final flush of a stopping worker.
func (c *Completer) Flush() {
	batch := c.Take()
	if len(batch) == 0 {
		return
	}
	var applied []bool
	err := c.opts.Store.Tx(c.opts.Hard, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		applied, err = c.WriteIn(ctx, tx, batch)
		return err
	})
	if err != nil {
		c.FinishEach(batch)
		return
	}
	c.Recorded(batch, applied)
}

// logResult counts and logs a recorded (or dropped) result.
func (c *Completer) logResult(a *engine.Attempt, out store.Outcome, applied bool) {
	a.Job.Observe().Recorded(engine.FateOf(a, out, applied))
	switch {
	case !applied && a.Cancelled() != nil:
		c.opts.Stats.Dropped.Add(1)
		a.Log.Info("task cancelled by an operator: its try's result is dropped")
	case !applied:
		c.opts.Stats.Dropped.Add(1)
		a.Log.Warn("late result dropped: the task was relaunched, handed to another worker or cancelled", "success", out.Success)
	case out.Success:
		c.opts.Stats.Succeeded.Add(1)
		a.Log.Debug("task succeeded")
	case out.Final:
		c.opts.Stats.Failed.Add(1)
		a.Log.Info("task failed for good: not to be tried again", "err", out.Error)
	default:
		c.opts.Stats.Failed.Add(1)
		a.Log.Info("task failed", "err", out.Error)
	}
}

type finisherError struct{ err error }

func (e finisherError) Error() string { return "finisher hook: " + e.err.Error() }

// FinishOne records one outcome, fenced by (key, worker, try). It retries
// while the database is unreachable; a result it cannot write is left for
// the dispatcher to relaunch, never reported as done.
func (c *Completer) FinishOne(o engine.Outcome) {
	a := o.Attempt
	out := o.Result()
	taskErr := o.TaskErr()
	useFinisher := a.Job.Hooks.Finisher != nil
	for attempt := 0; ; attempt++ {
		applied, err := c.finishTx(a, out, taskErr, useFinisher)
		var fe finisherError
		switch {
		case err == nil:
			c.logResult(a, out, applied)
			return
		case errors.As(err, &fe):
			useFinisher = false
			taskErr = fe
			out = store.Outcome{Success: false, Error: engine.Describe(fe)}
		case len(out.Set) > 0 && !c.opts.Retryable(err):
			// A column the function set cannot be written: record that
			// as the failure instead.
			taskErr = fmt.Errorf("writing back columns set by the processing function: %w", err)
			out = store.Outcome{Success: false, Error: engine.Describe(taskErr)}
		case c.opts.Hard.Err() != nil:
			a.Log.Warn("worker killed before the outcome was recorded; the dispatcher will relaunch the task", "err", err)
			return
		case c.opts.Retryable(err):
			a.Log.Warn("cannot record outcome yet; retrying", "err", err, "attempt", attempt+1)
			select {
			case <-c.opts.Hard.Done():
			case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
			}
		default:
			a.Log.Error("cannot record outcome; the dispatcher will relaunch the task", "err", err)
			return
		}
	}
}

// finishTx writes one outcome and, when applied, runs the finisher hook.
func (c *Completer) finishTx(a *engine.Attempt, out store.Outcome, taskErr error, useFinisher bool) (bool, error) {
	var applied bool
	err := c.opts.Store.Tx(c.opts.Hard, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		applied, err = a.Job.SQL.Finish(ctx, tx, a.Fence(), out)
		if err != nil || !applied || !useFinisher {
			return err
		}
		if ferr := a.Job.Hooks.Finisher(ctx, tx, a, taskErr); ferr != nil {
			return finisherError{ferr}
		}
		return nil
	})
	return applied, err
}
