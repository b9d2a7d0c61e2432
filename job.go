package pampa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/pampa-go/pampa/internal/cronexpr"
)

// Job defaults, applied by [Job.WithDefaults] to fields left at their zero value.
const (
	DefaultQueueSize       = 5
	DefaultMaxJobDuration  = 15 * time.Minute
	DefaultMaxTryTimes     = 3
	DefaultMaxPendingTasks = 100
	DefaultFilterWorkerID  = ".*"
)

// TrackingFields names the columns, on the job's own table, that record a
// task's progress. Every field is required; `pampa setup` adds the missing
// ones with the right types.
type TrackingFields struct {
	// ReservationID holds the id of the worker the row is reserved for
	// (text). NULL means not reserved. The original's :field_id.
	ReservationID string `yaml:"field_id"`
	// ReservationTime is when the row was reserved (timestamp). :field_time.
	ReservationTime string `yaml:"field_time"`
	// ReservationTimes counts the tries: it goes up by one each time a
	// worker starts the task (integer). :field_times.
	ReservationTimes string `yaml:"field_times"`
	// StartTime is when the current try started (timestamp). :field_start_time.
	StartTime string `yaml:"field_start_time"`
	// EndTime is when the current try ended (timestamp). :field_end_time.
	EndTime string `yaml:"field_end_time"`
	// Success is true when the task succeeded, false when its last try
	// failed (boolean). :field_success.
	Success string `yaml:"field_success"`
	// ErrorDescription holds why the last try failed (text).
	// :field_error_description.
	ErrorDescription string `yaml:"field_error_description"`
}

// fields returns each tracking field with its config name, in a stable order.
func (f TrackingFields) fields() []namedField {
	return []namedField{
		{"field_id", f.ReservationID, KindText},
		{"field_time", f.ReservationTime, KindTime},
		{"field_times", f.ReservationTimes, KindInt},
		{"field_start_time", f.StartTime, KindTime},
		{"field_end_time", f.EndTime, KindTime},
		{"field_success", f.Success, KindBool},
		{"field_error_description", f.ErrorDescription, KindText},
	}
}

// columns are the columns Pampa checks and `pampa setup` adds: the
// tracking columns, and the run-at column when the job has one.
func (j *Job) columns() []namedField {
	fs := j.Fields.fields()
	if j.RunAt != "" {
		fs = append(fs, namedField{"field_run_at", j.RunAt, KindTime})
	}
	return fs
}

type namedField struct {
	option string
	column string
	kind   ColumnKind
}

// ColumnKind is the SQL type family a tracking column must have.
type ColumnKind string

// Column kinds of tracking columns.
const (
	KindText ColumnKind = "text"
	KindTime ColumnKind = "timestamp"
	KindInt  ColumnKind = "integer"
	KindBool ColumnKind = "boolean"
)

// ProcessFunc processes one task. The context carries the job's
// MaxJobDuration as its deadline and is cancelled when the worker stops hard.
// Returning an error, or panicking, records a failed try with its
// description; the worker goes on with the rest of its queue.
type ProcessFunc func(ctx context.Context, task *Task) error

// Querier is what hooks get to run their own SQL: a *sql.DB or a *sql.Tx.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Hooks customise how a job picks, starts, finishes, relaunches and counts
// its tasks. Every hook is optional; nil keeps the default described on each
// field. Where a hook exists both as SQL and as a Go function, set one.
//
// SQL hooks are plain queries in the database's own dialect. They may use
// the named parameters @n (how many rows are wanted) and @worker (a worker's
// id); Pampa binds them, it never pastes values into SQL.
type Hooks struct {
	// Selecting picks up to n rows to reserve, returning their primary keys.
	// Default: rows not reserved, not started, tried fewer than MaxTryTimes
	// times, in primary-key order. Rows already reserved are skipped whatever
	// the hook returns, so two dispatchers never reserve one row twice.
	Selecting func(ctx context.Context, db Querier, n int) ([]any, error) `yaml:"-"`
	// SelectingSQL is Selecting as a query; it must return the primary key
	// column (SELECT * is fine) and should honour LIMIT @n.
	SelectingSQL string `yaml:"selecting_sql"`

	// Relaunching picks up to n finished rows to run again (the original's
	// periodic re-check). Pampa's own recovery of expired, failed and
	// orphaned tasks always runs as well; rows still reserved or running are
	// never touched by this hook.
	Relaunching func(ctx context.Context, db Querier, n int) ([]any, error) `yaml:"-"`
	// RelaunchingSQL is Relaunching as a query returning the primary key.
	RelaunchingSQL string `yaml:"relaunching_sql"`

	// Relauncher runs, in the same transaction, after Pampa has reset a row
	// for relaunch (reservation, start, end and success cleared).
	Relauncher func(ctx context.Context, tx Querier, key any) error `yaml:"-"`
	// Starter runs, in a transaction of its own, once Pampa has marked a
	// task started (start time set, tries counted) and before the
	// processing function. An error rolls its writes back and fails the try
	// ("starter hook: …"); the processing function is not called, and the
	// task is retried like any failed try.
	Starter func(ctx context.Context, tx Querier, task *Task) error `yaml:"-"`
	// Finisher runs, in the same transaction, after Pampa has recorded a
	// task's outcome; taskErr is nil on success. It does not run for a late
	// result that the fence dropped.
	Finisher func(ctx context.Context, tx Querier, task *Task, taskErr error) error `yaml:"-"`

	// Occupied counts the tasks waiting in a worker's queue. Default: rows
	// reserved for the worker and not started.
	Occupied func(ctx context.Context, db Querier, workerID string) (int, error) `yaml:"-"`
	// OccupiedSQL is Occupied as a query returning one integer; @worker is bound.
	OccupiedSQL string `yaml:"occupied_sql"`

	// Allowing decides whether the dispatcher may give this worker more
	// tasks of the job now (say, while a customer still has credits).
	// Default: always.
	Allowing func(ctx context.Context, db Querier, workerID string) (bool, error) `yaml:"-"`
	// AllowingSQL is Allowing as a query returning one boolean; @worker is bound.
	AllowingSQL string `yaml:"allowing_sql"`

	// Reporting hooks replace one figure of [Report] each; write them when a
	// custom Selecting or Relaunching makes the default counts meaningless.
	Total     func(ctx context.Context, db Querier) (int64, error) `yaml:"-"`
	Completed func(ctx context.Context, db Querier) (int64, error) `yaml:"-"`
	Pending   func(ctx context.Context, db Querier) (int64, error) `yaml:"-"`
	Failed    func(ctx context.Context, db Querier) (int64, error) `yaml:"-"`
	// The same reporting hooks as queries returning one integer.
	TotalSQL     string `yaml:"total_sql"`
	CompletedSQL string `yaml:"completed_sql"`
	PendingSQL   string `yaml:"pending_sql"`
	FailedSQL    string `yaml:"failed_sql"`

	// Completion hooks (docs/completion.md), called by the leading
	// dispatcher once per event; set one form of each. OnDrained is
	// called each time the job's backlog goes from non-empty to empty
	// with nothing reserved, running or retrying. A Go function or a
	// command is called at least once (twice only if a dispatcher died
	// during its call: DrainedEvent.ID deduplicates); a failed call is
	// retried with a backoff, up to 10 calls. :on_drained (new).
	OnDrained func(ctx context.Context, db Querier, e DrainedEvent) error `yaml:"-"`
	// OnDrainedSQL is OnDrained as a statement, run in the transaction
	// that marks the event fired, so exactly once; it may use @job,
	// @event_id, @run, @started_at, @ended_at, @succeeded, @failed and
	// @attempt.
	OnDrainedSQL string `yaml:"on_drained_sql"`
	// OnDrainedExec is OnDrained as a command, given the event as JSON on
	// stdin (on_drained_exec: [program, args...]).
	OnDrainedExec *HookCommand `yaml:"-"`
	// OnGroupDone is called when every task of a group (GroupBy) has
	// ended, none pending, reserved, running or retrying; again for a
	// group given new rows after it. Needs GroupBy. :on_group_done (new).
	OnGroupDone func(ctx context.Context, db Querier, e GroupDoneEvent) error `yaml:"-"`
	// OnGroupDoneSQL is OnGroupDone as a statement, as OnDrainedSQL,
	// with @group bound too.
	OnGroupDoneSQL string `yaml:"on_group_done_sql"`
	// OnGroupDoneExec is OnGroupDone as a command (on_group_done_exec).
	OnGroupDoneExec *HookCommand `yaml:"-"`
}

// Job is a kind of work: a function run over the rows of one table.
type Job struct {
	// Name identifies the job; it must be unique in a cluster.
	Name string
	// Table holds the tasks, one per row: "table" or "schema.table", split
	// at the dot. A name is taken as written, spaces and case included
	// ("Order Lines"); one that holds a dot, or starts with a double
	// quote, is written in double quotes with "" for a quote inside
	// ("my.table", app."my.table"). Column names are taken as written.
	Table string
	// PrimaryKey is the column that identifies a row. :field_primary_key.
	PrimaryKey string
	// Fields names the tracking columns.
	Fields TrackingFields
	// CreatedAt optionally names a timestamp column of the table that the
	// rows carry from their INSERT (or a column DEFAULT): when each task
	// was made. It is not a tracking column: Pampa only reads it. Set,
	// `pampa setup` indexes it over pending rows, and reports give the age
	// of the oldest pending task (JobReport.OldestPending). Default "":
	// none. :field_created_at (new).
	CreatedAt string
	// RunAt optionally names a timestamp column: a row whose run-at is in
	// the future, by the database's clock, is scheduled, not pending, until
	// then (NULL: due at once). An INSERT that sets it schedules a task.
	// `pampa setup` adds the column like a tracking column, and an index
	// of the pending rows that have one. Default "": none. :field_run_at
	// (new).
	RunAt string

	// QueueSize is how many unstarted tasks the dispatcher keeps reserved
	// for each assigned worker, at least. Default 5.
	QueueSize int
	// QueueSizeMax bounds the queue a worker is given when its tasks are
	// short: beyond QueueSize, the dispatcher keeps in a worker's queue
	// what it runs in 100 ms at its measured rate, up to this (see
	// docs/performance.md, "The queue rule"). Equal to QueueSize, every
	// queue stays at QueueSize, as in the original. Default 50 ×
	// QueueSize, at most 1,000 (and never under QueueSize).
	// :queue_size_max (new).
	QueueSizeMax int
	// MaxJobDuration is how long one try may run; its context is cancelled
	// then and the try fails. Default 15 minutes.
	MaxJobDuration time.Duration
	// MaxTryTimes is how many times a task is tried before it is failed for
	// good. Default 3.
	MaxTryTimes int
	// RetryBackoff is how long a failed try waits before it is relaunched.
	// Default 0: on the dispatcher's next relaunch pass.
	RetryBackoff time.Duration
	// RetryBackoffMax, set, makes the backoff exponential: after try n,
	// min(RetryBackoffMax, RetryBackoff * 2^(n-1)); with RunAt, times a
	// jitter drawn in [0.8, 1.2] per task (docs/scheduling.md). Default 0:
	// every try waits RetryBackoff. :retry_backoff_max (new).
	RetryBackoffMax time.Duration
	// FilterWorkerID is a regular expression; only workers whose id matches
	// may be assigned to the job. Default ".*" (any worker).
	FilterWorkerID string
	// MaxAssignedWorkers caps how many workers the job may hold at once.
	// Default 0: no cap.
	MaxAssignedWorkers int
	// MaxPendingTasks is the backlog per worker above which the dispatcher
	// assigns more workers to the job. Default 100.
	MaxPendingTasks int

	// MaxRunning caps the tries of the job running at once across the
	// cluster: every worker and node, tasks reserved and not yet started
	// included. Default 0: no cap. :max_running (new; docs/limits.md).
	MaxRunning int
	// RateLimit caps the job's task starts: at most N in any window of
	// Per across the cluster, paced one every Per/N. Default: none.
	// :rate_limit, written "60/1m" (new).
	RateLimit Rate
	// GroupBy names a column of the task's own data (a domain, a
	// customer) whose value puts it in a group. Groups with work share the
	// workers fairly, and the per-group limits apply to each. Rows whose
	// column is NULL form one group. Default "": no groups. :group_by (new).
	GroupBy string
	// MaxRunningPerGroup caps the tries of one group running at once.
	// Needs GroupBy. Default 0: no cap. :max_running_per_group (new).
	MaxRunningPerGroup int
	// RateLimitPerGroup caps one group's task starts, as RateLimit does the
	// job's. Needs GroupBy. :rate_limit_per_group (new).
	RateLimitPerGroup Rate

	// Process is the processing function. A job without one can still be
	// dispatched and reported on, but only a program that registers the
	// function can run workers for it, unless Exec names one.
	Process ProcessFunc
	// Exec, instead of Process, runs the processing function as a
	// command, in any language (docs/handlers.md): the stock `pampa`
	// binary runs its workers. Set one of Process, Exec and HTTP.
	Exec *ExecSpec
	// HTTP, instead of Process, posts each try to a URL
	// (docs/handlers-http.md); the stock binary runs its workers too.
	HTTP *HTTPSpec
	// RelaunchCron (relaunch_cron) runs the relaunching hook once per due
	// time of a cron expression ("*/5 * * * *"; 6 fields with seconds;
	// @hourly) instead of at every maintenance pass. It runs on the leading dispatcher, and the
	// last run is kept in the database: a restart or a fail-over neither
	// repeats a due time nor loses the latest one missed meanwhile.
	RelaunchCron string
	// RelaunchTimeZone (relaunch_time_zone) is the IANA zone in which
	// RelaunchCron is read; "" is the dispatcher's local zone.
	RelaunchTimeZone string
	// Hooks customise selection, relaunch, start, finish and counting.
	Hooks Hooks
	// Files are files and directories the job needs on the nodes, such
	// as the scripts its command runs: `pampa nodes deploy` ships them in
	// the release of every node whose workers FilterWorkerID accepts.
	// Paths are relative to the config file's directory (the working
	// directory for a cluster defined in Go) and keep that place in the
	// release, beside its pampa.yaml. Default none. :files (new).
	Files []string

	filter *regexp.Regexp
	// relaunchSchedule is RelaunchCron parsed by Validate.
	relaunchSchedule cronexpr.Schedule
}

// DefaultQueueSizeMax is QueueSizeMax when it is left out: 50 ×
// queueSize, at most 1,000, and never under queueSize. At the default
// queue_size of 5 that is 250, the queue at which a worker of no-op tasks
// stops waiting on its refills.
func DefaultQueueSizeMax(queueSize int) int { return min(50*queueSize, max(queueSize, 1000)) }

// WithDefaults returns a copy of j with defaults filled in for unset fields.
func (j Job) WithDefaults() Job {
	if j.QueueSize == 0 {
		j.QueueSize = DefaultQueueSize
	}
	if j.QueueSizeMax == 0 && j.QueueSize > 0 {
		j.QueueSizeMax = DefaultQueueSizeMax(j.QueueSize)
	}
	if j.MaxJobDuration == 0 {
		j.MaxJobDuration = DefaultMaxJobDuration
	}
	if j.MaxTryTimes == 0 {
		j.MaxTryTimes = DefaultMaxTryTimes
	}
	if j.MaxPendingTasks == 0 {
		j.MaxPendingTasks = DefaultMaxPendingTasks
	}
	if j.FilterWorkerID == "" {
		j.FilterWorkerID = DefaultFilterWorkerID
	}
	return j
}

// Validate checks a job after defaults; the error names the job, the field
// and the bad value.
func (j *Job) Validate() error {
	bad := func(field string, value any, why string) error {
		return &ConfigError{Job: j.Name, Field: field, Value: fmt.Sprint(value), Reason: why}
	}
	if j.Name == "" {
		return bad("name", "", "a job needs a name")
	}
	if j.Table == "" {
		return bad("table", "", "a job needs a table")
	}
	if err := checkTableName(j.Table, maxNameLen); err != nil {
		return bad("table", j.Table, err.Error())
	}
	if j.PrimaryKey == "" {
		return bad("field_primary_key", "", "a job needs its table's primary key column")
	}
	if err := checkName(j.PrimaryKey, maxNameLen); err != nil {
		return bad("field_primary_key", j.PrimaryKey, err.Error())
	}
	seen := map[string]string{j.PrimaryKey: "field_primary_key"}
	for _, f := range j.columns() {
		if f.column == "" {
			return bad(f.option, "", "tracking column is not set")
		}
		if err := checkName(f.column, maxNameLen); err != nil {
			return bad(f.option, f.column, err.Error())
		}
		if other, dup := seen[f.column]; dup {
			return bad(f.option, f.column, "same column as "+other)
		}
		seen[f.column] = f.option
	}
	if j.CreatedAt != "" {
		if err := checkName(j.CreatedAt, maxNameLen); err != nil {
			return bad("field_created_at", j.CreatedAt, err.Error())
		}
		if other, dup := seen[j.CreatedAt]; dup {
			return bad("field_created_at", j.CreatedAt, "same column as "+other)
		}
	}
	if j.QueueSize < 1 {
		return bad("queue_size", j.QueueSize, "must be at least 1")
	}
	if j.QueueSizeMax < j.QueueSize {
		return bad("queue_size_max", j.QueueSizeMax, fmt.Sprintf("must be at least queue_size (%d); leave it out for the default (%d)", j.QueueSize, DefaultQueueSizeMax(j.QueueSize)))
	}
	if j.MaxJobDuration <= 0 {
		return bad("max_job_duration", j.MaxJobDuration, "must be positive")
	}
	if j.MaxTryTimes < 1 {
		return bad("max_try_times", j.MaxTryTimes, "must be at least 1")
	}
	if j.RetryBackoff < 0 {
		return bad("retry_backoff", j.RetryBackoff, "must not be negative")
	}
	if j.RetryBackoffMax < 0 || (j.RetryBackoffMax > 0 && j.RetryBackoffMax < j.RetryBackoff) || (j.RetryBackoffMax > 0 && j.RetryBackoff == 0) {
		return bad("retry_backoff_max", j.RetryBackoffMax, "must be at least retry_backoff, which must be set")
	}
	if j.MaxAssignedWorkers < 0 {
		return bad("max_assigned_workers", j.MaxAssignedWorkers, "must not be negative (0 means no cap)")
	}
	if j.MaxPendingTasks < 1 {
		return bad("max_pending_tasks", j.MaxPendingTasks, "must be at least 1")
	}
	if f, why := checkFiles(j.Files); why != "" {
		return bad("files", f, why)
	}
	if j.Exec != nil {
		if j.Process != nil {
			return bad("exec", j.Exec.commandText(), "the job has a Go processing function (Process) too; set one of them")
		}
		if err := j.Exec.validate(bad); err != nil {
			return err
		}
	}
	if j.HTTP != nil {
		switch {
		case j.Process != nil:
			return bad("http", j.HTTP.URL, "the job has a Go processing function (Process) too; set one of them")
		case j.Exec != nil:
			return bad("http", j.HTTP.URL, "the job runs a command (exec) too; set one of them")
		}
		if err := j.HTTP.validate(bad); err != nil {
			return err
		}
	}
	re, err := regexp.Compile(j.FilterWorkerID)
	if err != nil {
		return bad("filter_worker_id", j.FilterWorkerID, "not a regular expression: "+err.Error())
	}
	j.filter = re
	if err := j.checkRelaunchCron(bad); err != nil {
		return err
	}
	if err := j.checkLimits(bad); err != nil {
		return err
	}
	if err := j.checkCompletion(bad); err != nil {
		return err
	}
	h := j.Hooks
	for _, pair := range []struct {
		name string
		fn   bool
		sql  string
	}{
		{"selecting", h.Selecting != nil, h.SelectingSQL},
		{"relaunching", h.Relaunching != nil, h.RelaunchingSQL},
		{"occupied", h.Occupied != nil, h.OccupiedSQL},
		{"allowing", h.Allowing != nil, h.AllowingSQL},
		{"total", h.Total != nil, h.TotalSQL},
		{"completed", h.Completed != nil, h.CompletedSQL},
		{"pending", h.Pending != nil, h.PendingSQL},
		{"failed", h.Failed != nil, h.FailedSQL},
	} {
		if pair.fn && pair.sql != "" {
			return bad(pair.name+"_sql", pair.sql, "set either the Go hook or the SQL hook, not both")
		}
	}
	return nil
}

// checkRelaunchCron parses RelaunchCron in RelaunchTimeZone.
func (j *Job) checkRelaunchCron(bad func(string, any, string) error) error {
	j.relaunchSchedule = nil
	if j.RelaunchCron == "" {
		if j.RelaunchTimeZone != "" {
			return bad("relaunch_time_zone", j.RelaunchTimeZone, "is only used with relaunch_cron; set relaunch_cron or leave it out")
		}
		return nil
	}
	if j.Hooks.Relaunching == nil && j.Hooks.RelaunchingSQL == "" {
		return bad("relaunch_cron", j.RelaunchCron, "schedules the relaunching hook, and the job has none; set relaunching_sql (or Hooks.Relaunching)")
	}
	s, err := cronexpr.Parse(j.RelaunchCron, j.RelaunchTimeZone)
	switch {
	case errors.Is(err, cronexpr.ErrTimeZone):
		return bad("relaunch_time_zone", j.RelaunchTimeZone, err.Error())
	case err != nil:
		return bad("relaunch_cron", j.RelaunchCron, err.Error())
	}
	j.relaunchSchedule = s
	return nil
}

// AcceptsWorker reports whether a worker id matches the job's FilterWorkerID.
// It is only meaningful on a validated job.
func (j *Job) AcceptsWorker(workerID string) bool {
	if j.filter == nil {
		return false
	}
	return j.filter.MatchString(workerID)
}
