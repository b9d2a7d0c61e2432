package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Task states as the read API names them (docs/state-machine.md). Each is
// one condition over the tracking columns (stateConds); the conditions
// exclude each other, so a row is in one state at most.
const (
	TaskPending   = "pending"
	TaskRetrying  = "retrying"
	TaskReserved  = "reserved"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	// TaskScheduled is a pending row whose run-at is still in the future
	// (jobs with a run-at column only).
	TaskScheduled = "scheduled"
)

// taskStates lists the task states in the order of a task's life.
var taskStates = []string{TaskScheduled, TaskPending, TaskReserved, TaskRunning, TaskSucceeded, TaskRetrying, TaskFailed}

// TaskRow is a task as the read API shows it: its key, state and tracking
// columns. State is "" for a row whose tracking columns match no state
// (written by hand).
type TaskRow struct {
	Key                            any
	State                          string
	Worker                         string
	Tries                          int64
	ReservedAt, StartedAt, EndedAt *time.Time
	Error                          string
}

// TaskQuery says which tasks Tasks lists; zero fields match any task.
type TaskQuery struct {
	State         string
	Worker        string // the reservation column, exactly
	Key           any    // nil: any key
	ErrorContains string // in the error description, case-insensitive
	After         any    // nil: from the first key
	Limit         int
}

// stateCond is a state's condition, SQL over the tracking columns with
// its arguments.
type stateCond struct {
	sql  string
	args []any
}

// stateConds are the conditions of each state. Those of pending, reserved
// and running hold the predicate of the pending or in-flight index, and
// those of retrying and failed the failed index's, written as in Indexes
// and countSQL so that both planners read those indexes.
func (j *JobSQL) stateConds() map[string]stateCond {
	unfinished := j.success + " IS NULL"
	inflight := fmt.Sprintf("%s IS NOT NULL AND %s IS NULL AND %s", j.reservationID, j.endTime, unfinished)
	maxTries := []any{j.spec.MaxTryTimes}
	pending := j.pendingIndexPredicate() + " AND " + unfinished
	conds := map[string]stateCond{
		TaskPending:   {pending, nil},
		TaskReserved:  {fmt.Sprintf("%s AND %s IS NULL", inflight, j.startTime), nil},
		TaskRunning:   {fmt.Sprintf("%s AND %s IS NOT NULL", inflight, j.startTime), nil},
		TaskSucceeded: {j.success + " = TRUE", nil},
		TaskRetrying:  {fmt.Sprintf("%s = FALSE AND COALESCE(%s, 0) < ?", j.success, j.reservationTimes), maxTries},
		TaskFailed:    {fmt.Sprintf("%s = FALSE AND COALESCE(%s, 0) >= ?", j.success, j.reservationTimes), maxTries},
	}
	// Without a run-at column no row is scheduled; the pending condition
	// stays as it was.
	conds[TaskScheduled] = stateCond{pending + " AND 1 = 0", nil}
	if j.runAt != "" {
		conds[TaskPending] = stateCond{pending + " AND " + j.due(), nil}
		conds[TaskScheduled] = stateCond{pending + " AND " + j.notDue(), nil}
	}
	return conds
}

// taskColumns selects a TaskRow (scanned by scanTask), and returns its
// arguments: the key, the state (the first whose condition holds, in the
// order of taskStates) and the tracking columns.
func (j *JobSQL) taskColumns() (string, []any) {
	conds := j.stateConds()
	var b strings.Builder
	var args []any
	b.WriteString("CASE")
	for _, st := range taskStates {
		fmt.Fprintf(&b, " WHEN %s THEN '%s'", conds[st].sql, st)
		args = append(args, conds[st].args...)
	}
	b.WriteString(" ELSE '' END")
	return fmt.Sprintf("%s, %s, %s, %s, %s, %s, %s, %s", j.pk, b.String(), j.reservationID, j.reservationTimes,
		j.reservationTime, j.startTime, j.endTime, j.errorDescription), args
}

// Tasks lists up to q.Limit tasks matching q, in key order. What each
// filter costs, by EXPLAIN ANALYZE on PostgreSQL (200,000 rows: 98.5%
// succeeded, 2,463 failed, 1,000 in flight, 900 pending; TestTasksPlans
// checks the plans on every engine):
//   - no state, or succeeded: the primary key, walked from After until
//     Limit rows match; most rows match, so 50 took 0.06 ms;
//   - pending: the pending index, in key order from After: Limit entries,
//     0.1 to 0.2 ms (SQLite is pinned to it, see PinIndexes);
//   - reserved, running: the in-flight index, every row in flight (queues
//     and running tries), sorted: 1 ms for 900. These four states read
//     their index through a materialized CTE (see tasksSQL);
//   - retrying, failed: the failed index, every failed row of both kinds,
//     sorted: 1.6 ms for 2,463, growing with the failed rows (83 ms for
//     9,900 among 10,000,000 rows, cold);
//   - Worker or ErrorContains with no state: the primary key, walked until
//     Limit rows match: up to the whole table for a worker or text that
//     few rows have (PostgreSQL then scans it: 28 and 50 ms here, seconds
//     at 10,000,000 rows); with a state, that state's index;
//   - Key: one lookup of the primary key.
func (j *JobSQL) Tasks(ctx context.Context, q Querier, f TaskQuery) ([]TaskRow, error) {
	query, args, err := j.tasksSQL(f)
	if err != nil {
		return nil, err
	}
	rows, err := j.s.query(ctx, q, query, j.s.planEach(args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TaskRow
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// tasksSQL is the statement of Tasks, and its arguments.
func (j *JobSQL) tasksSQL(f TaskQuery) (string, []any, error) {
	cols, args := j.taskColumns()
	from, conds := j.t, []string{}
	add := func(cond string, arg ...any) { conds, args = append(conds, cond), append(args, arg...) }
	if f.State != "" {
		cond, ok := j.stateConds()[f.State]
		if !ok {
			return "", nil, fmt.Errorf("state %q: no such state (want one of %s)", f.State, strings.Join(taskStates, ", "))
		}
		add(cond.sql, cond.args...)
		if f.State == TaskPending || f.State == TaskScheduled {
			from = j.pendingFrom
		}
	}
	if f.Worker != "" {
		add(j.reservationID+" = ?", f.Worker)
	}
	if f.Key != nil {
		add(j.pk+" = ?", f.Key)
	}
	if f.ErrorContains != "" {
		add(fmt.Sprintf(`LOWER(%s) LIKE LOWER(?) ESCAPE '\'`, j.errorDescription), "%"+escapeLike(f.ErrorContains)+"%")
	}
	if f.After != nil {
		add(j.pk+" > ?", f.After)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	query := fmt.Sprintf("SELECT %s FROM %s%s ORDER BY %s LIMIT ?", cols, from, where, j.pk)
	switch f.State {
	case TaskReserved, TaskRunning, TaskRetrying, TaskFailed:
		// Read the state's own index in full, then sort: left to itself,
		// PostgreSQL may walk the primary key in order instead, hoping to
		// meet Limit matches early, and read the whole table when the
		// state has few rows (1.4 s at 10,000,000 rows for a retrying
		// list with none).
		query = fmt.Sprintf("WITH m AS MATERIALIZED (SELECT %s FROM %s%s) SELECT * FROM m ORDER BY 1 LIMIT ?", cols, from, where)
	}
	return j.s.q(query), append(args, f.Limit), nil
}

// escapeLike makes text match itself in a LIKE pattern escaped by '\'.
func escapeLike(text string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(text)
}

// TaskDetail is a task with the row's other columns: neither the key nor
// tracking ones, in table order.
type TaskDetail struct {
	TaskRow
	Other Row
}

// Task reads the task of one key; ok is false when no row has it.
func (j *JobSQL) Task(ctx context.Context, q Querier, key any) (d TaskDetail, ok bool, err error) {
	selected, args := j.taskColumns()
	query := j.s.q(fmt.Sprintf("SELECT %s, * FROM %s WHERE %s = ?", selected, j.t, j.pk))
	// Planned at each call, never kept prepared: a prepared SELECT * would
	// fail once the table gains a column.
	rows, err := j.s.query(ctx, q, query, j.s.planEach(append(args, key)...)...)
	if err != nil {
		return d, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return d, false, rows.Err()
	}
	cols, err := rows.Columns()
	if err != nil {
		return d, false, err
	}
	vals := make([]any, len(cols)-taskFields)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if d.TaskRow, err = scanTask(rows, ptrs...); err != nil {
		return d, false, err
	}
	tracking := map[string]bool{j.spec.PrimaryKey: true, j.spec.ReservationID: true, j.spec.ReservationTime: true,
		j.spec.ReservationTimes: true, j.spec.StartTime: true, j.spec.EndTime: true, j.spec.Success: true, j.spec.ErrorDescription: true}
	for i, col := range cols[taskFields:] {
		if !tracking[col] {
			d.Other.Columns = append(d.Other.Columns, col)
			d.Other.Values = append(d.Other.Values, normalizeKey(vals[i]))
		}
	}
	return d, true, rows.Err()
}

// taskFields is the number of columns taskColumns selects.
const taskFields = 8

// scanTask scans the columns of taskColumns, and those after them into
// more.
func scanTask(rows *sql.Rows, more ...any) (TaskRow, error) {
	var t TaskRow
	var worker, why sql.NullString
	var tries sql.NullInt64
	var times [3]any
	dest := []any{&t.Key, &t.State, &worker, &tries, &times[0], &times[1], &times[2], &why}
	if err := rows.Scan(append(dest, more...)...); err != nil {
		return t, err
	}
	t.Key, t.Worker, t.Tries, t.Error = normalizeKey(t.Key), worker.String, tries.Int64, why.String
	for i, dst := range []**time.Time{&t.ReservedAt, &t.StartedAt, &t.EndedAt} {
		tm, err := timeOf(times[i])
		if err != nil {
			return t, fmt.Errorf("task %v: %w", t.Key, err)
		}
		*dst = tm
	}
	return t, nil
}

// timeOf reads a timestamp column as either driver returns it: a time, or
// (SQLite, a column declared TEXT) the text the database clock wrote.
func timeOf(v any) (*time.Time, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		return &x, nil
	case []byte:
		return timeOf(string(x))
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return &t, nil
			}
		}
		return nil, fmt.Errorf("timestamp %q: unknown format", x)
	}
	return nil, fmt.Errorf("timestamp of type %T", v)
}

// ErrBadKey is a key written as text that the key column cannot hold.
var ErrBadKey = errors.New("bad key")

// KeyArg converts a key written as text (a command line, a URL) to the
// value the key column is compared with: an integer for an integer column
// (so that 9 comes before 10, and "007" finds 7), the text for any other,
// which the database converts as it binds it. A SQLite column declared
// with no type holds what it was given: text that reads as an integer is
// taken as one.
func (j *JobSQL) KeyArg(ctx context.Context, text string) (any, error) {
	typ, err := j.keyType(ctx)
	if err != nil {
		return nil, err
	}
	n, perr := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	switch {
	case typ == "" && perr == nil:
		return n, nil
	case typ == "" || !j.s.Dialect.AcceptsKind(KindInt, typ):
		return text, nil
	case perr != nil:
		return nil, fmt.Errorf("%q is not an integer (column %s is %s): %w", text, j.spec.PrimaryKey, typ, ErrBadKey)
	}
	return n, nil
}

// keyType is the declared type of the key column, read once.
func (j *JobSQL) keyType(ctx context.Context) (string, error) {
	if typ := j.pkType.Load(); typ != nil {
		return *typ, nil
	}
	cols, _, err := j.s.Dialect.Columns(ctx, j.s.DB, j.spec.Table)
	if err != nil {
		return "", fmt.Errorf("read columns of %s: %w", j.t, err)
	}
	for _, c := range cols {
		if c.Name == j.spec.PrimaryKey {
			j.pkType.Store(&c.Type)
			return c.Type, nil
		}
	}
	return "", fmt.Errorf("table %s has no column %s", j.spec.Table, j.spec.PrimaryKey)
}

// OldestPending is the age, in seconds, of the pending row (neither
// reserved nor started) created first, by the job's created-at column:
// nil when nothing is pending or the job names no such column. MIN over
// the created-at index (see Indexes), whose predicate is the pending
// index's: its first entry.
func (j *JobSQL) OldestPending(ctx context.Context, q Querier) (*float64, error) {
	if j.createdAt == "" {
		return nil, nil
	}
	var age sql.NullFloat64
	err := j.s.queryRow(ctx, q, j.oldestPendingSQL()).Scan(&age)
	if err != nil || !age.Valid {
		return nil, err
	}
	return &age.Float64, nil
}

func (j *JobSQL) oldestPendingSQL() string {
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s", j.s.Dialect.SecondsSince("MIN("+j.createdAt+")"), j.t, j.pendingIndexPredicate())
}

// pendingIndexPredicate is the predicate of the pending and created-at
// indexes, and the pending count's.
func (j *JobSQL) pendingIndexPredicate() string {
	return fmt.Sprintf("%s IS NULL AND %s IS NULL", j.reservationID, j.startTime)
}

// due holds for a row whose run-at is unset or not in the future, by the
// database's clock; notDue for one scheduled later. Only for a job with a
// run-at column. Partial index predicates cannot read the clock, so these
// filter at query time.
func (j *JobSQL) due() string {
	return fmt.Sprintf("(%s IS NULL OR %s >= 0)", j.runAt, j.s.Dialect.SecondsSince(j.runAt))
}

func (j *JobSQL) notDue() string {
	return fmt.Sprintf("%s IS NOT NULL AND %s < 0", j.runAt, j.s.Dialect.SecondsSince(j.runAt))
}

// scheduledIndexPredicate is the scheduled index's: pending rows that
// carry a run-at, due or not.
func (j *JobSQL) scheduledIndexPredicate() string {
	return fmt.Sprintf("%s AND %s IS NOT NULL", j.pendingIndexPredicate(), j.runAt)
}

// NextDue is how long until the earliest run-at still in the future of a
// pending row, by the database's clock: nil when none is scheduled or the
// job has no run-at column. MIN over the scheduled index, whose first
// entries past the due ones are read.
func (j *JobSQL) NextDue(ctx context.Context, q Querier) (*time.Duration, error) {
	if j.runAt == "" {
		return nil, nil
	}
	var since sql.NullFloat64
	query := fmt.Sprintf("SELECT %s FROM %s WHERE %s AND %s", j.s.Dialect.SecondsSince("MIN("+j.runAt+")"), j.t, j.scheduledIndexPredicate(), j.notDue())
	if err := j.s.queryRow(ctx, q, j.s.q(query)).Scan(&since); err != nil || !since.Valid {
		return nil, err
	}
	in := time.Duration(-since.Float64 * float64(time.Second))
	return &in, nil
}
