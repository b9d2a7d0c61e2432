package pampa

import (
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/bridge"
	"github.com/pampa-go/pampa/internal/engine"
)

// Task is one row of a job's table, handed to the processing function.
// Its columns are readable by name; columns it [Task.Set]s are written back
// in the same statement that records the try's outcome.
type Task struct {
	a   *engine.Attempt
	job *Job
	db  *sql.DB
}

// Key is the row's primary key.
func (t *Task) Key() any { return t.a.Key }

// Try is the number of this try, 1 for the first.
func (t *Task) Try() int { return int(t.a.Try) }

// Job is the job the task belongs to.
func (t *Task) Job() *Job { return t.job }

// WorkerID is the id of the worker running the task.
func (t *Task) WorkerID() string { return t.a.Worker }

// Log is the worker's logger, with the job, task key and try attached.
func (t *Task) Log() *slog.Logger { return t.a.Log }

// DB is the database, for queries of the processing function's own. Writes
// to the task's row are better done with Set: they are then fenced, and
// dropped if the task moved on to another worker.
func (t *Task) DB() *sql.DB { return t.db }

// Columns lists the row's column names.
func (t *Task) Columns() []string { return t.a.Row.Columns }

// Get returns a column's value as the driver gave it (int64, float64,
// bool, string, []byte, time.Time or nil), or nil if there is no such
// column.
func (t *Task) Get(column string) any {
	v, _ := t.a.Row.Get(column)
	return v
}

// Has reports whether the row has the column.
func (t *Task) Has(column string) bool {
	_, ok := t.a.Row.Get(column)
	return ok
}

// Int64 returns a column as an integer.
func (t *Task) Int64(column string) (int64, error) {
	v, ok := t.a.Row.Get(column)
	if !ok {
		return 0, fmt.Errorf("task %v: no column %q", t.a.Key, column)
	}
	if n, ok := engine.AsInt64(v); ok {
		return n, nil
	}
	return 0, fmt.Errorf("task %v: column %q holds %T %v, not an integer", t.a.Key, column, v, v)
}

// String returns a column formatted as text ("" for NULL).
func (t *Task) String(column string) string { return valueText(t.Get(column)) }

// valueText formats a value as the driver gave it as text ("" for nil;
// times in RFC 3339).
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(x)
	}
}

// Set records a value for a column of the task's row; it is written when
// the try finishes, in the statement that records the outcome, whether the
// try succeeds or fails. Tracking columns cannot be set.
func (t *Task) Set(column string, value any) {
	if err := checkName(column, maxNameLen); err != nil {
		t.a.RefuseSet(fmt.Errorf("Set(%q): %w", column, err))
		return
	}
	if column == t.job.PrimaryKey {
		t.a.RefuseSet(fmt.Errorf("Set(%q): the primary key cannot be changed", column))
		return
	}
	for _, f := range t.job.Fields.fields() {
		if f.column == column {
			t.a.RefuseSet(fmt.Errorf("Set(%q): %s is a tracking column, managed by Pampa", column, f.option))
			return
		}
	}
	t.a.SetColumn(column, value)
}

func init() {
	bridge.NewTask = func(job any, a *engine.Attempt) any { return &Task{a: a, job: job.(*Job)} }
	bridge.AttemptOf = func(task any) *engine.Attempt { return task.(*Task).a }
	bridge.Commits = func(client any) int64 { return client.(*Client).store.Commits() }
}
