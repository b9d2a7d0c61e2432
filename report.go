package pampa

import (
	"context"
	"fmt"
)

// JobReport counts a job's tasks by state. Completed are the tasks that
// succeeded; Failed those that used all their tries; Reserved wait in a
// worker's queue; Running have started and not ended; Pending are all
// others: never tried, or waiting for another try.
type JobReport struct {
	Job       string `json:"job"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	Pending   int64  `json:"pending"`
	Failed    int64  `json:"failed"`
	Reserved  int64  `json:"reserved"`
	Running   int64  `json:"running"`
}

// Report counts the tasks of every job, in definition order.
func (c *Client) Report(ctx context.Context) ([]JobReport, error) {
	out := make([]JobReport, 0, len(c.jobs))
	for _, j := range c.jobs {
		r, err := c.jobReport(ctx, j)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// JobReport counts the tasks of one job.
func (c *Client) JobReport(ctx context.Context, name string) (JobReport, error) {
	j, err := c.job(name)
	if err != nil {
		return JobReport{}, err
	}
	return c.jobReport(ctx, j)
}

func (c *Client) jobReport(ctx context.Context, j *jobRuntime) (JobReport, error) {
	counts, err := j.sql.Count(ctx, c.store.DB)
	if err != nil {
		return JobReport{}, fmt.Errorf("job %s: count tasks: %w", j.Name, err)
	}
	r := JobReport{Job: j.Name, Total: counts.Total, Completed: counts.Succeeded, Pending: counts.Pending(),
		Failed: counts.Failed, Reserved: counts.Reserved, Running: counts.Running}
	h := j.Hooks
	for _, o := range []struct {
		name string
		fn   func(context.Context, Querier) (int64, error)
		sql  string
		dst  *int64
	}{
		{"total", h.Total, h.TotalSQL, &r.Total},
		{"completed", h.Completed, h.CompletedSQL, &r.Completed},
		{"pending", h.Pending, h.PendingSQL, &r.Pending},
		{"failed", h.Failed, h.FailedSQL, &r.Failed},
	} {
		if o.fn == nil && o.sql == "" {
			continue
		}
		n, err := c.reportHook(ctx, o.fn, o.sql)
		if err != nil {
			return JobReport{}, fmt.Errorf("job %s: %s hook: %w", j.Name, o.name, err)
		}
		*o.dst = n
	}
	return r, nil
}

// reportHook runs a counting hook given as Go or as SQL.
func (c *Client) reportHook(ctx context.Context, fn func(context.Context, Querier) (int64, error), query string) (int64, error) {
	if fn != nil {
		return fn(ctx, c.querier())
	}
	var n int64
	err := c.store.Scalar(ctx, c.store.DB, query, nil, &n)
	return n, err
}
