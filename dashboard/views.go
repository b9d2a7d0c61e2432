package dashboard

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pampa-go/pampa"
)

// The data of each page. The JSON API serves the same structs the pages
// render, so that the two never disagree; docs/dashboard-api.md shows
// each.

// Overview is the front page: every job's counts and rates, and the
// workers by state.
type Overview struct {
	Jobs        []JobSummary   `json:"jobs"`
	Workers     map[string]int `json:"workers"` // registered workers by state
	GeneratedAt time.Time      `json:"generated_at"`
}

// JobSummary is a job's counts (as `pampa report` gives them) with the
// rates measured from the dashboard's samples.
type JobSummary struct {
	pampa.JobReport
	// TasksPerSecond: tasks completed per second over the last minute;
	// null until two samples are taken.
	TasksPerSecond *float64 `json:"tasks_per_second"`
	// FailedPerMinute: tasks failed for good per minute, likewise.
	FailedPerMinute *float64 `json:"failed_per_minute"`
	// Series: completions per second between samples, the last minutes.
	Series []Point `json:"series"`
}

// Option is one of a job's settings, as the config file names it.
type Option struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// JobPage is one job: its settings, assigned workers, counts and chart.
type JobPage struct {
	JobSummary
	Options []Option             `json:"options"`
	Workers []pampa.WorkerStatus `json:"workers"` // those assigned to the job
}

// FailedPage lists a job's failed tasks.
type FailedPage struct {
	Job    string             `json:"job"`
	Jobs   []string           `json:"jobs"`
	Failed []pampa.FailedTask `json:"failed"`
	// More: the list is cut at failedLimit tasks.
	More bool `json:"more"`
}

// WorkersPage is the worker registry.
type WorkersPage struct {
	Workers []pampa.WorkerStatus `json:"workers"`
}

func (s *Server) overview(ctx context.Context) (Overview, error) {
	reports, err := s.client.Report(ctx)
	if err != nil {
		return Overview{}, err
	}
	workers, err := s.client.Workers(ctx)
	if err != nil {
		return Overview{}, err
	}
	o := Overview{Workers: map[string]int{}, GeneratedAt: time.Now().UTC()}
	for _, r := range reports {
		o.Jobs = append(o.Jobs, s.summary(r))
	}
	for _, w := range workers {
		o.Workers[workerState(w)]++
	}
	return o, nil
}

func (s *Server) summary(r pampa.JobReport) JobSummary {
	ps, fm, series := s.samples.rates(r.Job)
	return JobSummary{JobReport: r, TasksPerSecond: ps, FailedPerMinute: fm, Series: series}
}

// workerState is a worker's state as shown: running workers whose
// heartbeat lapsed are shown dead before a dispatcher marks them so.
func workerState(w pampa.WorkerStatus) string {
	if w.State == "running" && !w.Alive {
		return "dead"
	}
	return w.State
}

func (s *Server) jobPage(ctx context.Context, name string) (JobPage, error) {
	job := s.client.Cluster().Job(name)
	if job == nil {
		return JobPage{}, notFoundf("no job is named %q", name)
	}
	r, err := s.client.JobReport(ctx, name)
	if err != nil {
		return JobPage{}, err
	}
	workers, err := s.client.Workers(ctx)
	if err != nil {
		return JobPage{}, err
	}
	p := JobPage{JobSummary: s.summary(r), Options: jobOptions(job), Workers: []pampa.WorkerStatus{}}
	for _, w := range workers {
		if w.Job == name {
			p.Workers = append(p.Workers, w)
		}
	}
	return p, nil
}

// jobOptions lists a job's settings under their config-file names.
func jobOptions(j *pampa.Job) []Option {
	f := j.Fields
	opts := []Option{
		{"table", j.Table}, {"field_primary_key", j.PrimaryKey},
		{"field_id", f.ReservationID}, {"field_time", f.ReservationTime}, {"field_times", f.ReservationTimes},
		{"field_start_time", f.StartTime}, {"field_end_time", f.EndTime}, {"field_success", f.Success},
		{"field_error_description", f.ErrorDescription},
		{"queue_size", fmt.Sprint(j.QueueSize)}, {"max_job_duration", j.MaxJobDuration.String()},
		{"max_try_times", fmt.Sprint(j.MaxTryTimes)}, {"retry_backoff", j.RetryBackoff.String()},
		{"filter_worker_id", j.FilterWorkerID}, {"max_assigned_workers", fmt.Sprint(j.MaxAssignedWorkers)},
		{"max_pending_tasks", fmt.Sprint(j.MaxPendingTasks)},
	}
	if hooks := hookNames(j.Hooks); len(hooks) > 0 {
		opts = append(opts, Option{"hooks", strings.Join(hooks, ", ")})
	}
	return opts
}

// hookNames names the hooks a job sets, Go or SQL.
func hookNames(h pampa.Hooks) []string {
	var out []string
	for _, x := range []struct {
		name string
		set  bool
	}{
		{"selecting", h.Selecting != nil || h.SelectingSQL != ""},
		{"relaunching", h.Relaunching != nil || h.RelaunchingSQL != ""},
		{"relauncher", h.Relauncher != nil}, {"starter", h.Starter != nil}, {"finisher", h.Finisher != nil},
		{"occupied", h.Occupied != nil || h.OccupiedSQL != ""},
		{"allowing", h.Allowing != nil || h.AllowingSQL != ""},
		{"total", h.Total != nil || h.TotalSQL != ""}, {"completed", h.Completed != nil || h.CompletedSQL != ""},
		{"pending", h.Pending != nil || h.PendingSQL != ""}, {"failed", h.Failed != nil || h.FailedSQL != ""},
	} {
		if x.set {
			out = append(out, x.name)
		}
	}
	return out
}

// failedLimit is how many failed tasks a page lists.
const failedLimit = 200

func (s *Server) failedPage(ctx context.Context, job string) (FailedPage, error) {
	p := FailedPage{Job: job, Failed: []pampa.FailedTask{}}
	for _, j := range s.client.Cluster().Jobs() {
		p.Jobs = append(p.Jobs, j.Name)
	}
	if job == "" && len(p.Jobs) > 0 {
		p.Job = p.Jobs[0]
	}
	if s.client.Cluster().Job(p.Job) == nil {
		return FailedPage{}, notFoundf("no job is named %q", p.Job)
	}
	tasks, err := s.client.FailedTasks(ctx, p.Job, failedLimit+1)
	if err != nil {
		return FailedPage{}, err
	}
	if len(tasks) > failedLimit {
		tasks, p.More = tasks[:failedLimit], true
	}
	p.Failed = append(p.Failed, tasks...)
	return p, nil
}

func (s *Server) workersPage(ctx context.Context) (WorkersPage, error) {
	ws, err := s.client.Workers(ctx)
	if err != nil {
		return WorkersPage{}, err
	}
	return WorkersPage{Workers: append([]pampa.WorkerStatus{}, ws...)}, nil
}

// notFound is a request for something that does not exist; its text is
// safe to show.
type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }

func notFoundf(format string, args ...any) error { return notFound{fmt.Sprintf(format, args...)} }

// badRequest is a request the dashboard cannot act on; its text is safe to
// show.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badRequestf(format string, args ...any) error { return badRequest{fmt.Sprintf(format, args...)} }
