package pampa

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/store"
)

// Task states as the read API names them (docs/state-machine.md defines
// them). A row is in one of them, read from its tracking columns; one
// whose columns were written by hand to match none has the state "".
const (
	// StatePending: neither reserved nor started, never tried or handed
	// back (also a row out of tries that a lowered max_try_times left
	// neither failed nor dispatchable).
	StatePending  = "pending"
	StateRetrying = "retrying" // last try failed, tries left, waiting for its relaunch
	StateReserved = "reserved" // in a worker's queue, not started
	StateRunning  = "running"  // started, not ended
	// StateSucceeded: the last try succeeded.
	StateSucceeded = "succeeded"
	StateFailed    = "failed" // failed for good: no tries left
	// StateScheduled: pending, but its run-at (Job.RunAt) is still in the
	// future by the database's clock; pending from then on.
	StateScheduled = "scheduled"
)

// TaskFilter says which of a job's tasks Client.Tasks lists. Zero fields
// match every task.
type TaskFilter struct {
	State         string // "" for any; one of the states above (unknown: error naming the value)
	Worker        string // exact worker id of the row's field_id, "" for any
	Key           string // exact key, as text (converted as the key column needs), "" for any
	ErrorContains string // substring of the error description, case-insensitive, "" for any
	After         string // keyset paging: only keys greater than this one (as text), "" from the start
	Limit         int    // 1..1000; 0 means 50
}

// Limits of TaskFilter.Limit.
const (
	DefaultTaskLimit = 50
	MaxTaskLimit     = 1000
)

// TaskInfo is one task as Client.Tasks lists it: its key, state and
// tracking columns.
type TaskInfo struct {
	Key        any        `json:"key"`
	State      string     `json:"state"`
	Worker     string     `json:"worker"` // field_id: the worker it is reserved for, or of its last try
	Tries      int64      `json:"tries"`
	ReservedAt *time.Time `json:"reserved_at"` // nil when NULL
	StartedAt  *time.Time `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	Error      string     `json:"error"` // the last failed try's description
}

// TaskColumn is one of a task's own columns, as text.
type TaskColumn struct {
	Name      string `json:"name"`
	Value     string `json:"value"`     // the value as text, "" for NULL
	Null      bool   `json:"null"`      // the value is NULL
	Truncated bool   `json:"truncated"` // Value was cut to TaskColumnMax bytes (on a UTF-8 boundary)
}

// TaskColumnMax is the longest TaskColumn.Value, in bytes.
const TaskColumnMax = 1024

// TaskDetail is one task with the row's other columns.
type TaskDetail struct {
	TaskInfo
	Columns []TaskColumn `json:"columns"` // the row's other (non-tracking) columns, in table order
}

// ErrNoTask is returned (wrapped, naming the job and key) by Client.Task
// when no row has the key.
var ErrNoTask = errors.New("no such task")

// Tasks lists up to f.Limit of job's tasks matching f, in key order. Page
// through them by passing the last key listed as the next call's f.After.
//
// A state filter reads the partial index of that state made by `pampa
// setup` (succeeded, most rows, walks the primary key); a filter on the
// worker or the error text alone walks the primary key until it has
// f.Limit matches, which may read the whole table. The text match is
// case-insensitive as the database's LOWER is: ASCII letters only on
// SQLite.
func (c *Client) Tasks(ctx context.Context, job string, f TaskFilter) ([]TaskInfo, error) {
	j, err := c.job(job)
	if err != nil {
		return nil, err
	}
	q := store.TaskQuery{State: f.State, Worker: f.Worker, ErrorContains: f.ErrorContains, Limit: f.Limit}
	switch {
	case f.Limit == 0:
		q.Limit = DefaultTaskLimit
	case f.Limit < 1 || f.Limit > MaxTaskLimit:
		return nil, fmt.Errorf("job %q: limit %d: want 1 to %d (0 means %d)", job, f.Limit, MaxTaskLimit, DefaultTaskLimit)
	}
	for _, k := range []struct {
		field, text string
		dst         *any
	}{{"key", f.Key, &q.Key}, {"after", f.After, &q.After}} {
		if k.text == "" {
			continue
		}
		if *k.dst, err = keyArg(ctx, j, k.field, k.text); err != nil {
			return nil, err
		}
	}
	rows, err := j.sql.Tasks(ctx, c.store.DB, q)
	if err != nil {
		return nil, fmt.Errorf("job %q: list tasks: %w", job, err)
	}
	out := make([]TaskInfo, len(rows))
	for i, r := range rows {
		out[i] = TaskInfo(r)
	}
	return out, nil
}

// Task reads one task by its key, written as text (converted as the key
// column needs), with the row's other columns. It returns ErrNoTask
// (wrapped, naming the job and key) when no row has the key.
func (c *Client) Task(ctx context.Context, job, key string) (TaskDetail, error) {
	j, err := c.job(job)
	if err != nil {
		return TaskDetail{}, err
	}
	k, err := keyArg(ctx, j, "key", key)
	if err != nil {
		return TaskDetail{}, err
	}
	d, ok, err := j.sql.Task(ctx, c.store.DB, k)
	switch {
	case err != nil:
		return TaskDetail{}, fmt.Errorf("job %q: read task %q: %w", job, key, err)
	case !ok:
		return TaskDetail{}, fmt.Errorf("job %q: task %q: %w", job, key, ErrNoTask)
	}
	out := TaskDetail{TaskInfo: TaskInfo(d.TaskRow), Columns: make([]TaskColumn, len(d.Other.Columns))}
	for i, name := range d.Other.Columns {
		out.Columns[i] = taskColumn(name, d.Other.Values[i])
	}
	return out, nil
}

// ParseKey converts a key written as text (a command line, a URL) to the
// value the job's key column is compared with: an integer for an integer
// column (so "007" finds 7, and a text key "007" stays text), the text
// for any other. Client.Tasks and Client.Task convert their keys so; use
// it for the keys of Retry and Discard.
func (c *Client) ParseKey(ctx context.Context, job, key string) (any, error) {
	j, err := c.job(job)
	if err != nil {
		return nil, err
	}
	return keyArg(ctx, j, "key", key)
}

// keyArg converts a key given as text for field of a call on job j.
func keyArg(ctx context.Context, j *jobRuntime, field, text string) (any, error) {
	k, err := j.sql.KeyArg(ctx, text)
	if err != nil {
		return nil, fmt.Errorf("job %q: %s: %w", j.Name, field, err)
	}
	return k, nil
}

// taskColumn is a column's value as text, cut to TaskColumnMax bytes.
// Bytes that are not UTF-8 are shown in hex, as \x… (PostgreSQL's form
// for bytea).
func taskColumn(name string, v any) TaskColumn {
	col := TaskColumn{Name: name, Null: v == nil}
	if b, ok := v.([]byte); ok && !utf8.Valid(b) {
		col.Value = `\x` + hex.EncodeToString(b)
	} else {
		col.Value = valueText(v)
	}
	if len(col.Value) > TaskColumnMax {
		cut := TaskColumnMax
		for cut > 0 && !utf8.RuneStart(col.Value[cut]) {
			cut--
		}
		col.Value, col.Truncated = col.Value[:cut], true
	}
	return col
}
