package pampa

import (
	"context"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// PanicError is a panic in a processing function, recorded as the try's
// failure: the panic's value and the goroutine's stack.
type PanicError = engine.PanicError

// engineJobs turns jobs into the engine's view: limits, statements, and
// every hook as a plain function (hooks written as SQL become functions
// that run the query with its named parameters bound).
func (c *Client) engineJobs(jobs []*jobRuntime) []*engine.Job {
	out := make([]*engine.Job, len(jobs))
	for i, j := range jobs {
		out[i] = c.engineJob(j)
	}
	return out
}

func (c *Client) engineJob(j *jobRuntime) *engine.Job {
	e := &engine.Job{
		Name: j.Name, SQL: j.sql,
		QueueSize: j.QueueSize, QueueSizeMax: j.QueueSizeMax, MaxJobDuration: j.MaxJobDuration, RetryBackoff: store.Backoff{Base: j.RetryBackoff, Max: j.RetryBackoffMax},
		MaxAssignedWorkers: j.MaxAssignedWorkers, MaxPendingTasks: j.MaxPendingTasks, MaxRunning: j.MaxRunning,
		AcceptsWorker: j.AcceptsWorker, RelaunchSchedule: j.relaunchSchedule,
	}
	// The processing function is read at each try: a program may swap it
	// while its workers run.
	e.Hooks.Process = func(ctx context.Context, a *engine.Attempt) error { return j.Process(ctx, taskOf(a)) }
	c.taskHooks(j.Hooks, &e.Hooks)
	c.dispatchHooks(j, &e.Hooks)
	return e
}

// taskOf is the public task of an attempt.
func taskOf(a *engine.Attempt) *Task { return a.Handle.(*Task) }

// taskHooks wraps the hooks that run around one task or row.
func (c *Client) taskHooks(h Hooks, e *engine.Hooks) {
	if h.Starter != nil {
		e.Starter = func(ctx context.Context, tx store.Querier, a *engine.Attempt) error {
			return h.Starter(ctx, tx, taskOf(a))
		}
	}
	if h.Finisher != nil {
		e.Finisher = func(ctx context.Context, tx store.Querier, a *engine.Attempt, taskErr error) error {
			return h.Finisher(ctx, tx, taskOf(a), taskErr)
		}
	}
	if h.Relauncher != nil {
		e.Relauncher = func(ctx context.Context, tx store.Querier, key any) error { return h.Relauncher(ctx, tx, key) }
	}
}

// dispatchHooks wraps the hooks the dispatcher calls, given as Go or SQL.
func (c *Client) dispatchHooks(j *jobRuntime, e *engine.Hooks) {
	h, db := j.Hooks, c.store.DB
	keys := func(fn func(context.Context, Querier, int) ([]any, error), query string) func(context.Context, int) ([]any, error) {
		switch {
		case fn != nil:
			return func(ctx context.Context, n int) ([]any, error) { return fn(ctx, db, n) }
		case query != "":
			return func(ctx context.Context, n int) ([]any, error) {
				return j.sql.KeysFromQuery(ctx, db, query, map[string]any{"n": n})
			}
		}
		return nil
	}
	e.Selecting = keys(h.Selecting, h.SelectingSQL)
	e.Relaunching = keys(h.Relaunching, h.RelaunchingSQL)
	if h.Pending != nil || h.PendingSQL != "" {
		e.Pending = func(ctx context.Context) (int64, error) { return c.reportHook(ctx, h.Pending, h.PendingSQL) }
	}
	switch {
	case h.Occupied != nil:
		e.Occupied = func(ctx context.Context, w string) (int, error) { return h.Occupied(ctx, db, w) }
	case h.OccupiedSQL != "":
		e.Occupied = func(ctx context.Context, w string) (n int, err error) {
			err = c.store.Scalar(ctx, db, h.OccupiedSQL, map[string]any{"worker": w}, &n)
			return n, err
		}
	}
	switch {
	case h.Allowing != nil:
		e.Allowing = func(ctx context.Context, w string) (bool, error) { return h.Allowing(ctx, db, w) }
	case h.AllowingSQL != "":
		e.Allowing = func(ctx context.Context, w string) (ok bool, err error) {
			err = c.store.Scalar(ctx, db, h.AllowingSQL, map[string]any{"worker": w}, &ok)
			return ok, err
		}
	}
}
