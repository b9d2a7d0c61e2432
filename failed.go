package pampa

import (
	"context"
	"database/sql"
	"fmt"
)

// FailedTask is a task that used all its tries, kept for inspection until
// it is retried with [Client.Retry].
type FailedTask struct {
	Key      any     `json:"key"`
	Worker   string  `json:"worker"` // the worker of the last try
	Tries    int64   `json:"tries"`
	Error    string  `json:"error"` // the last try's error description
	EndedAgo float64 `json:"ended_seconds_ago"`
}

// FailedTasks lists up to limit of a job's tasks that failed for good,
// the most recent first.
func (c *Client) FailedTasks(ctx context.Context, job string, limit int) ([]FailedTask, error) {
	j, err := c.job(job)
	if err != nil {
		return nil, err
	}
	rows, err := j.sql.Failed(ctx, c.store.DB, limit)
	if err != nil {
		return nil, fmt.Errorf("job %s: list failed tasks: %w", job, err)
	}
	out := make([]FailedTask, len(rows))
	for i, r := range rows {
		out[i] = FailedTask(r)
	}
	return out, nil
}

// Retry re-drives tasks that failed for good: they become pending again
// with a fresh count of tries (their last error description stays until
// the next try ends). With no keys it retries every failed task of the job.
// It returns the keys it retried; keys that are not failed for good are
// left alone.
func (c *Client) Retry(ctx context.Context, job string, keys ...any) ([]any, error) {
	return c.inTx(ctx, job, "retry failed tasks", func(ctx context.Context, tx *sql.Tx, j *jobRuntime) ([]any, error) {
		done, err := j.sql.Redrive(ctx, tx, keys)
		if err != nil {
			return nil, err
		}
		return done, c.engineJob(j).Relaunched(ctx, tx, done)
	})
}

// Discard fails for good tasks whose last try failed and that still have
// tries left, so that they are not tried again: they join the tasks that
// failed for good (FailedTasks lists them; Retry re-drives them). Keys of
// tasks pending, running, succeeded or already failed for good are left
// alone; it returns the keys it discarded.
func (c *Client) Discard(ctx context.Context, job string, keys ...any) ([]any, error) {
	return c.inTx(ctx, job, "discard failed tries", func(ctx context.Context, tx *sql.Tx, j *jobRuntime) ([]any, error) {
		return j.sql.Discard(ctx, tx, keys)
	})
}

// Cancel stops tasks for good, whatever they are doing: pending (a failed
// try with tries left included), reserved or running. In one transaction
// each becomes failed for good, with the error "cancelled by an operator":
// FailedTasks lists it, and Retry re-drives it. A running try's context is
// cancelled, with ErrCancelled as its cause, at its worker's next
// heartbeat; its result is dropped. Tasks that succeeded or already failed
// for good are left alone. It returns the keys it cancelled: a try that
// finishes as it is cancelled either is recorded (and its key not
// returned) or is cancelled, never both.
func (c *Client) Cancel(ctx context.Context, job string, keys ...any) ([]any, error) {
	return c.inTx(ctx, job, "cancel tasks", func(ctx context.Context, tx *sql.Tx, j *jobRuntime) ([]any, error) {
		return j.sql.Cancel(ctx, tx, job, keys)
	})
}

// inTx runs an action on some of job's tasks in one transaction and
// returns the keys it changed; what names it in the error.
func (c *Client) inTx(ctx context.Context, job, what string, fn func(context.Context, *sql.Tx, *jobRuntime) ([]any, error)) ([]any, error) {
	j, err := c.job(job)
	if err != nil {
		return nil, err
	}
	var done []any
	err = c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		done, err = fn(ctx, tx, j)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("job %s: %s: %w", job, what, err)
	}
	return done, nil
}
