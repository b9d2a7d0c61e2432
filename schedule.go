package pampa

import (
	"context"
	"fmt"
	"time"
)

// Reschedule moves pending tasks, scheduled or due, of a job with a run-at
// column (Job.RunAt) to run at at: their run-at becomes the database's now
// plus at's distance from this process's clock, so a time in the past
// makes them due at once. Tasks reserved, running or finished are left
// alone; it returns the keys it moved.
func (c *Client) Reschedule(ctx context.Context, job string, at time.Time, keys ...any) ([]any, error) {
	j, err := c.job(job)
	if err != nil {
		return nil, err
	}
	if j.RunAt == "" {
		return nil, &ConfigError{Job: job, Field: "field_run_at", Value: "", Reason: "the job has no run-at column to reschedule by"}
	}
	done, err := j.sql.Reschedule(ctx, c.store.DB, time.Until(at), keys)
	if err != nil {
		return nil, fmt.Errorf("job %s: reschedule tasks: %w", job, err)
	}
	return done, nil
}
