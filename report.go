package pampa

import (
	"context"
	"fmt"
)

// JobReport counts a job's tasks by state. Completed are the tasks that
// succeeded; Failed those that used all their tries; Reserved wait in a
// worker's queue; Running have started and not ended; Pending are all
// others: never tried, or waiting for another try.
//
// Estimated is set when Total comes from PostgreSQL's statistics of the
// table, or SQLite's last count of it and the rows added since, rather
// than a count of its own (see ReportOptions.Exact), and Completed
// therefore from Total less the other figures; those are always exact.
type JobReport struct {
	Job       string `json:"job"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	Pending   int64  `json:"pending"`
	// Scheduled: pending but with a run-at in the future (Job.RunAt); not
	// in Pending. Always 0 for a job without the option.
	Scheduled int64 `json:"scheduled"`
	Failed    int64 `json:"failed"`
	Reserved  int64 `json:"reserved"`
	Running   int64 `json:"running"`
	Estimated bool  `json:"estimated"`
	// Paused: an operator paused the job (Client.Pause); it gets no new
	// reservations until resumed.
	Paused bool `json:"paused"`
	// OldestPending is the age, in seconds, of the oldest task neither
	// reserved nor started (never tried, or handed back) by its created-at
	// column (Job.CreatedAt): nil when the job names none or no task is
	// pending. A failed try waiting for its relaunch is not counted.
	OldestPending *float64 `json:"oldest_pending_seconds"`
	// Limited counts the free worker slots that the job's limits
	// (max_running, rate_limit, the per-group ones) left empty in the
	// leading dispatcher's recent rounds while tasks were pending, and
	// LimitReason says which limit held them ("max_running 4 reached",
	// "12 groups at max_running_per_group"). 0 and "" when nothing is
	// held back.
	Limited     int64  `json:"limited"`
	LimitReason string `json:"limit_reason,omitempty"`
}

// reportEstimateMin is the table size, in rows by PostgreSQL's statistics
// (on SQLite, by its last count), from which a report estimates Total (and
// so Completed) instead of counting the whole table: a count reads every
// row (about 1.7 s at 10,000,000 rows on PostgreSQL, 80 ms on SQLite),
// while the unfinished states are counted exactly through their partial
// indexes at any size.
const reportEstimateMin = 1_000_000

// ReportOptions says which jobs to report and how.
type ReportOptions struct {
	// Jobs names the jobs to report, in that order; empty means every job,
	// in definition order.
	Jobs []string
	// Exact counts every table in full, never estimating Total: as slow
	// as the table is large.
	Exact bool

	estimateMin int64 // 0: reportEstimateMin; tests lower it
}

// Report counts the tasks of every job, in definition order. On
// PostgreSQL, Total and Completed of a table of 1,000,000 rows or more are
// estimated (JobReport.Estimated); ReportWith with Exact counts them.
func (c *Client) Report(ctx context.Context) ([]JobReport, error) {
	return c.ReportWith(ctx, ReportOptions{})
}

// JobReport counts the tasks of one job, as Report does.
func (c *Client) JobReport(ctx context.Context, name string) (JobReport, error) {
	r, err := c.ReportWith(ctx, ReportOptions{Jobs: []string{name}})
	if err != nil {
		return JobReport{}, err
	}
	return r[0], nil
}

// ReportWith counts the tasks of the jobs opts names (all by default), in
// that order.
func (c *Client) ReportWith(ctx context.Context, opts ReportOptions) ([]JobReport, error) {
	jobs := c.jobs
	if len(opts.Jobs) > 0 {
		jobs = make([]*jobRuntime, len(opts.Jobs))
		for i, name := range opts.Jobs {
			j, err := c.job(name)
			if err != nil {
				return nil, err
			}
			jobs[i] = j
		}
	}
	estimateMin := opts.estimateMin
	switch {
	case opts.Exact:
		estimateMin = 0
	case estimateMin == 0:
		estimateMin = reportEstimateMin
	}
	paused, err := c.store.Paused(ctx)
	if err != nil {
		return nil, err
	}
	notes, err := c.store.LimitNotes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the limits' notes: %w", err)
	}
	out := make([]JobReport, 0, len(jobs))
	for _, j := range jobs {
		r, err := c.jobReport(ctx, j, estimateMin)
		if err != nil {
			return nil, err
		}
		r.Paused = paused[j.Name]
		r.Limited, r.LimitReason = int64(notes[j.Name].HeldBack), notes[j.Name].Reason
		out = append(out, r)
	}
	return out, nil
}

// jobReport counts one job's tasks, estimating a table of estimateMin rows
// or more (0: never), then lets the job's reporting hooks replace figures.
func (c *Client) jobReport(ctx context.Context, j *jobRuntime, estimateMin int64) (JobReport, error) {
	counts, err := j.sql.CountEstimate(ctx, c.store.DB, estimateMin)
	if err != nil {
		return JobReport{}, fmt.Errorf("job %s: count tasks: %w", j.Name, err)
	}
	r := JobReport{Job: j.Name, Total: counts.Total, Completed: counts.Succeeded, Pending: counts.Pending(),
		Scheduled: counts.Scheduled, Failed: counts.Failed, Reserved: counts.Reserved, Running: counts.Running, Estimated: counts.Estimated}
	if r.OldestPending, err = j.sql.OldestPending(ctx, c.store.DB); err != nil {
		return JobReport{}, fmt.Errorf("job %s: oldest pending task: %w", j.Name, err)
	}
	h := j.Hooks
	if (h.Total != nil || h.TotalSQL != "") && (h.Completed != nil || h.CompletedSQL != "") {
		r.Estimated = false // the hooks give both figures that could be estimated
	}
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

// Pause stops new reservations of a job's tasks, in every dispatcher and
// until Resume: within a second the leading dispatcher hands back the rows
// reserved and not yet started, and the tries running go on to their
// end. It is stored in the database (pampa_paused), so it outlives
// restarts. Pausing a paused job changes nothing.
func (c *Client) Pause(ctx context.Context, job string) error {
	if _, err := c.job(job); err != nil {
		return err
	}
	return c.store.Pause(ctx, job)
}

// Resume lets a paused job's tasks be reserved again.
func (c *Client) Resume(ctx context.Context, job string) error {
	if _, err := c.job(job); err != nil {
		return err
	}
	return c.store.Resume(ctx, job)
}
