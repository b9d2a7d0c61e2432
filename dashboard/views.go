package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
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

// JobPage is one job: its settings, assigned workers, counts and chart,
// and a page of its tasks.
type JobPage struct {
	JobSummary
	Options []Option             `json:"options"`
	Workers []pampa.WorkerStatus `json:"workers"` // those assigned to the job
	Tasks   TaskList             `json:"tasks"`
}

// TaskQuery selects a page of a job's tasks: the URL's query parameters
// state, worker, key, error, after and limit.
type TaskQuery struct {
	State  string `json:"state"`
	Worker string `json:"worker"`
	Key    string `json:"key"`
	Error  string `json:"error"` // a part of the error text, any case
	After  string `json:"after"` // the last key of the previous page
	Limit  int    `json:"limit"`
}

// TaskList is one page of a job's tasks, in key order.
type TaskList struct {
	Filter TaskQuery        `json:"filter"`
	Tasks  []pampa.TaskInfo `json:"tasks"`
	// Next is the "after" of the next page; "" on the last page.
	Next string `json:"next"`
}

// TaskPage is one task with its row's other columns.
type TaskPage struct {
	Job  string           `json:"job"`
	Task pampa.TaskDetail `json:"task"`
}

// FailedPage lists a job's tasks failed for good and those whose last try
// failed and that wait for another, both filtered by error text.
type FailedPage struct {
	Job      string   `json:"job"`
	Jobs     []string `json:"jobs"`
	Failed   TaskList `json:"failed"`
	Retrying TaskList `json:"retrying"`
}

// Session is who the request comes from, and the CSRF token its actions
// need ("" when they need none: a bearer token).
type Session struct {
	User      string `json:"user"`
	Role      Role   `json:"role"`
	CSRFToken string `json:"csrf_token"`
}

// WorkersPage is the worker registry.
type WorkersPage struct {
	Workers []WorkerRow `json:"workers"`
}

// WorkerRow is a registered worker and the tasks it holds.
type WorkerRow struct {
	pampa.WorkerStatus
	Held int `json:"tasks_held"` // reserved for it or running on it
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
	o := Overview{Jobs: []JobSummary{}, Workers: map[string]int{}, GeneratedAt: time.Now().UTC()}
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

func (s *Server) jobPage(ctx context.Context, name string, q TaskQuery) (JobPage, error) {
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
	tasks, err := s.taskList(ctx, name, q)
	if err != nil {
		return JobPage{}, err
	}
	p := JobPage{JobSummary: s.summary(r), Options: jobOptions(job), Workers: []pampa.WorkerStatus{}, Tasks: tasks}
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
	if j.CreatedAt != "" {
		opts = append(opts, Option{"field_created_at", j.CreatedAt})
	}
	if j.RelaunchCron != "" {
		opts = append(opts, Option{"relaunch_cron", j.RelaunchCron})
	}
	if j.RelaunchTimeZone != "" {
		opts = append(opts, Option{"relaunch_time_zone", j.RelaunchTimeZone})
	}
	if j.RunAt != "" {
		opts = append(opts, Option{"field_run_at", j.RunAt})
	}
	if j.RetryBackoffMax > 0 {
		opts = append(opts, Option{"retry_backoff_max", j.RetryBackoffMax.String()})
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

// Page sizes of task lists.
const (
	defaultPage = 50
	maxPage     = 500
)

var taskStates = []string{pampa.StatePending, pampa.StateReserved, pampa.StateRunning, pampa.StateSucceeded,
	pampa.StateRetrying, pampa.StateFailed}

// taskQuery reads a task list's filter from a request's query.
func taskQuery(r *http.Request) (TaskQuery, error) {
	v := r.URL.Query()
	q := TaskQuery{State: v.Get("state"), Worker: v.Get("worker"), Key: v.Get("key"), Error: v.Get("error"),
		After: v.Get("after"), Limit: defaultPage}
	if q.State != "" && !slices.Contains(taskStates, q.State) {
		return q, badRequestf("state %q is not one of %s", q.State, strings.Join(taskStates, ", "))
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPage {
			return q, badRequestf("limit %q: want 1 to %d", l, maxPage)
		}
		q.Limit = n
	}
	return q, nil
}

// taskList reads one page of tasks; it asks for one more than the page to
// know whether another follows.
func (s *Server) taskList(ctx context.Context, job string, q TaskQuery) (TaskList, error) {
	tasks, err := s.client.Tasks(ctx, job, pampa.TaskFilter{State: q.State, Worker: q.Worker, Key: q.Key,
		ErrorContains: q.Error, After: q.After, Limit: q.Limit + 1})
	if errors.Is(err, pampa.ErrBadKey) {
		return TaskList{}, badRequest{err.Error()}
	}
	if err != nil {
		return TaskList{}, err
	}
	l := TaskList{Filter: q, Tasks: tasks}
	if len(tasks) > q.Limit {
		l.Tasks = tasks[:q.Limit]
		l.Next = fmt.Sprint(l.Tasks[q.Limit-1].Key)
	}
	return l, nil
}

func (s *Server) taskPage(ctx context.Context, job, key string) (TaskPage, error) {
	if s.client.Cluster().Job(job) == nil {
		return TaskPage{}, notFoundf("no job is named %q", job)
	}
	t, err := s.client.Task(ctx, job, key)
	switch {
	case errors.Is(err, pampa.ErrNoTask):
		return TaskPage{}, notFoundf("job %q has no task %q", job, key)
	case errors.Is(err, pampa.ErrBadKey):
		return TaskPage{}, badRequest{err.Error()}
	case err != nil:
		return TaskPage{}, err
	}
	return TaskPage{Job: job, Task: t}, nil
}

func (s *Server) failedPage(ctx context.Context, job string, q TaskQuery) (FailedPage, error) {
	p := FailedPage{Job: job}
	for _, j := range s.client.Cluster().Jobs() {
		p.Jobs = append(p.Jobs, j.Name)
	}
	if len(p.Jobs) == 0 {
		return FailedPage{Jobs: []string{}, Failed: TaskList{Tasks: []pampa.TaskInfo{}}, Retrying: TaskList{Tasks: []pampa.TaskInfo{}}}, nil
	}
	if job == "" {
		p.Job = p.Jobs[0]
	}
	if s.client.Cluster().Job(p.Job) == nil {
		return FailedPage{}, notFoundf("no job is named %q", p.Job)
	}
	var err error
	// after pages the failed list; the retrying one shows its first page.
	q.State = pampa.StateFailed
	if p.Failed, err = s.taskList(ctx, p.Job, q); err != nil {
		return FailedPage{}, err
	}
	q.State, q.After = pampa.StateRetrying, ""
	if p.Retrying, err = s.taskList(ctx, p.Job, q); err != nil {
		return FailedPage{}, err
	}
	return p, nil
}

func (s *Server) workersPage(ctx context.Context) (WorkersPage, error) {
	ws, err := s.client.Workers(ctx)
	if err != nil {
		return WorkersPage{}, err
	}
	held, err := s.client.TasksHeld(ctx)
	if err != nil {
		return WorkersPage{}, err
	}
	p := WorkersPage{Workers: make([]WorkerRow, len(ws))}
	for i, w := range ws {
		p.Workers[i] = WorkerRow{WorkerStatus: w, Held: held[w.ID]}
	}
	return p, nil
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
