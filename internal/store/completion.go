package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Completion events: a job's drain runs (pampa_runs) and its groups'
// runs (pampa_groups), and the events their ends write to the outbox
// (pampa_events, see events.go). docs/completion.md gives the rules.
//
// A run opens when the leader hands out a task of an idle job (or of a
// group that is no candidate), in the transaction of the hand-out, or
// when its maintenance pass finds the job busy. It closes when a check
// finds nothing left: the check, the counts and the event are one
// statement, in the transaction that closes the run, so that an event is
// written once per run whoever checks and however often.

// Event kinds.
const (
	EventDrained   = "drained"
	EventGroupDone = "group_done"
)

// EventID is the stable id of a run's event: the kind, the job, the run
// number and (for a group) its key, each path-escaped so that none holds
// the separator.
func EventID(kind, job string, run int64, group string) string {
	id := kind + "/" + url.PathEscape(job) + "/" + strconv.FormatInt(run, 10)
	if kind == EventGroupDone {
		id += "/" + url.PathEscape(group)
	}
	return id
}

// GroupKey names a group value in pampa_groups: its type and its text
// ("i:42", "s:example.org", "null"), so that GroupValue gives back a
// value of the type the driver read.
func GroupKey(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case int64:
		return "i:" + strconv.FormatInt(x, 10)
	case float64:
		return "f:" + strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return "b:" + strconv.FormatBool(x)
	case time.Time:
		return "t:" + x.Format(time.RFC3339Nano)
	case string:
		return "s:" + x
	}
	return "s:" + fmt.Sprint(v)
}

// GroupValue is the value GroupKey named.
func GroupValue(key string) any {
	kind, text, _ := strings.Cut(key, ":")
	switch kind {
	case "null":
		return nil
	case "i":
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n
		}
	case "f":
		if f, err := strconv.ParseFloat(text, 64); err == nil {
			return f
		}
	case "b":
		return text == "true"
	case "t":
		if t, err := time.Parse(time.RFC3339Nano, text); err == nil {
			return t
		}
	}
	return text
}

// Busy is what a check found that keeps a job (or a group) from being
// done.
type Busy struct {
	Pending  bool // a row waits to be handed out (for a job: due now, or a retry)
	InFlight bool // a row is reserved or running
	Retrying bool // a failed try has tries left
}

// Any reports whether anything was found.
func (b Busy) Any() bool { return b.Pending || b.InFlight || b.Retrying }

// backlogCond is the condition of a job's backlog, and its arguments: rows
// not reserved, not started, with tries left; with a run-at column, only
// those due now and those tried before (retries waiting for their
// backoff), not those first scheduled for later. It reads the pending
// index.
func (j *JobSQL) backlogCond() (string, []any) {
	cond := fmt.Sprintf("%s AND COALESCE(%s, 0) < ?", j.pendingIndexPredicate(), j.reservationTimes)
	if j.runAt != "" {
		cond += fmt.Sprintf(" AND (%s OR COALESCE(%s, 0) > 0)", j.due(), j.reservationTimes)
	}
	return cond, []any{j.spec.MaxTryTimes}
}

// inFlightCond holds for rows reserved or running (the in-flight index).
func (j *JobSQL) inFlightCond() string {
	return fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", j.reservationID, j.endTime)
}

// retryingCond holds for failed tries with tries left (the failed index);
// it binds MaxTryTimes.
func (j *JobSQL) retryingCond() string {
	return fmt.Sprintf("%s = FALSE AND COALESCE(%s, 0) < ?", j.success, j.reservationTimes)
}

// busySQL is the job's three checks as one SELECT list, each an EXISTS
// that stops at the first row, and its arguments.
func (j *JobSQL) busySQL() (string, []any) {
	backlog, args := j.backlogCond()
	return fmt.Sprintf(`EXISTS (SELECT 1 FROM %s WHERE %s), EXISTS (SELECT 1 FROM %s WHERE %s), EXISTS (SELECT 1 FROM %s WHERE %s)`,
		j.pendingFrom, backlog, j.t, j.inFlightCond(), j.t, j.retryingCond()), append(args, j.spec.MaxTryTimes)
}

// ProbeBusy checks whether the job has work: a backlog (see backlogCond),
// a row in flight, or a failed try with tries left. Three index probes.
func (j *JobSQL) ProbeBusy(ctx context.Context, q Querier) (Busy, error) {
	list, args := j.busySQL()
	var b Busy
	err := j.s.queryRow(ctx, q, j.s.q("SELECT "+list), args...).Scan(&b.Pending, &b.InFlight, &b.Retrying)
	return b, err
}

// RunState is a job's row of pampa_runs.
type RunState struct {
	Run  int64 // runs opened so far
	Open bool  // a run is open: the job was seen busy since its last drain
}

// RunState reads the job's drain run; a job never seen has none.
func (s *Store) RunState(ctx context.Context, job string) (RunState, error) {
	var st RunState
	err := s.retry(ctx, func(ctx context.Context) error {
		err := s.DB.QueryRowContext(ctx, s.q(`SELECT run, busy_since IS NOT NULL FROM pampa_runs WHERE job = ?`), job).Scan(&st.Run, &st.Open)
		if errors.Is(err, sql.ErrNoRows) {
			st, err = RunState{}, nil
		}
		return err
	})
	return st, err
}

// OpenRun opens a drain run of the job unless one is open, within q (the
// transaction that handed out its rows, or one of its own), and reports
// whether it opened one.
func (s *Store) OpenRun(ctx context.Context, q Querier, job string) (bool, error) {
	now := s.Dialect.Now()
	res, err := s.exec(ctx, q, s.q(`UPDATE pampa_runs SET run = run + 1, busy_since = `+now+` WHERE job = ? AND busy_since IS NULL`), job)
	if err != nil {
		return false, fmt.Errorf("open the drain run: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	res, err = s.exec(ctx, q, s.q(`INSERT INTO pampa_runs (job, run, busy_since) VALUES (?, 1, `+now+`) ON CONFLICT (job) DO NOTHING`), job)
	if err != nil {
		return false, fmt.Errorf("open the drain run: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// endedIn is the condition of rows whose last try ended in the run of
// the run row r (since names its start column): at or after its start,
// and after the last end its previous event counted (which ties at the
// clock's resolution would otherwise count twice).
func (j *JobSQL) endedIn(since string) string {
	return j.endTime + " >= r." + since + " AND (r.counted_after IS NULL OR " + j.endTime + " > r.counted_after)"
}

// countsSQL is the SELECT-list part of a closing INSERT: the run's
// succeeded and failed-for-good rows among those in where (a condition
// ending in AND, or "", with its arguments), and the last end among
// them; its arguments follow. since names the run row's start column.
func (j *JobSQL) countsSQL(where string, whereArgs []any, since string) (string, []any) {
	ended := j.endedIn(since)
	sub := func(what, outcome, more string) string {
		return "(SELECT " + what + " FROM " + j.t + " WHERE " + where + j.success + " = " + outcome + " AND " + ended + more + ")"
	}
	last := func(outcome string) string { return sub("MAX("+j.endTime+")", outcome, "") }
	ok, bad := last("TRUE"), last("FALSE")
	list := sub("COUNT(*)", "TRUE", "") + ", " +
		sub("COUNT(*)", "FALSE", " AND COALESCE("+j.reservationTimes+", 0) >= ?") + ", " +
		"CASE WHEN " + bad + " IS NULL OR " + ok + " > " + bad + " THEN " + ok + " ELSE " + bad + " END"
	var args []any
	args = append(args, whereArgs...)                             // succeeded
	args = append(append(args, whereArgs...), j.spec.MaxTryTimes) // failed for good
	for range 5 {                                                 // the last end: bad, ok, bad, ok, bad
		args = append(args, whereArgs...)
	}
	return list, args
}

// eventColumns are the columns a closing INSERT writes, in its order.
const eventColumns = `id, job, kind, grp, run, started_ms, ended_ms, succeeded, failed, last_end, state, attempts, due_at, created_at`

// CloseRun closes the job's open drain run if the job has drained —
// nothing in its backlog, in flight or retrying — within tx, and returns
// the event it wrote (nil when the run is not over, or none is open).
// The check, the counts and the event are one statement: one snapshot.
// The counts are the rows whose last try ended during the run (see
// endedIn), by outcome: succeeded, or failed for good (at a drain no
// other outcome is left).
func (j *JobSQL) CloseRun(ctx context.Context, tx Querier, job string) (*Event, error) {
	d := j.s.Dialect
	var run int64
	err := j.s.queryRow(ctx, tx, j.s.q(`SELECT run FROM pampa_runs WHERE job = ? AND busy_since IS NOT NULL`+d.LockRows()), job).Scan(&run)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock the drain run: %w", err)
	}
	id := EventID(EventDrained, job, run, "")
	counts, countArgs := j.countsSQL("", nil, "busy_since")
	backlog, backlogArgs := j.backlogCond()
	query := fmt.Sprintf(`INSERT INTO pampa_events (%s)
		SELECT ?, ?, ?, NULL, r.run, %s, %s, %s, 'pending', 0, %s, %s FROM pampa_runs r
		WHERE r.job = ? AND r.busy_since IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM %s WHERE %s) AND NOT EXISTS (SELECT 1 FROM %s WHERE %s) AND NOT EXISTS (SELECT 1 FROM %s WHERE %s)`,
		eventColumns, d.UnixMillis("r.busy_since"), d.UnixMillis(d.Now()), counts, d.Now(), d.Now(),
		j.pendingFrom, backlog, j.t, j.inFlightCond(), j.t, j.retryingCond())
	args := append([]any{id, job, EventDrained}, countArgs...)
	args = append(append(append(args, job), backlogArgs...), j.spec.MaxTryTimes)
	res, err := j.s.exec(ctx, tx, j.s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("record the drain: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, nil
	}
	if _, err := j.s.exec(ctx, tx, j.s.q(`UPDATE pampa_runs SET busy_since = NULL,
		counted_after = COALESCE((SELECT last_end FROM pampa_events WHERE id = ?), counted_after) WHERE job = ?`), id, job); err != nil {
		return nil, fmt.Errorf("close the drain run: %w", err)
	}
	e, err := j.s.readEvent(ctx, tx, id)
	return &e, err
}

// markGroups records, in the hand-out's transaction, each group that was
// handed a row as a candidate for completion: a new run for a group that
// was none (never seen, or done since), nothing for one that is.
func (j *JobSQL) markGroups(ctx context.Context, tx Querier, job string, picked []groupRow, got map[string]int) error {
	seen := map[string]bool{}
	var keys []string
	for _, r := range picked {
		k := GroupKey(r.value)
		if got[r.scope] > 0 && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	now := j.s.Dialect.Now()
	for lo := 0; lo < len(keys); lo += 100 {
		batch := keys[lo:min(lo+100, len(keys))]
		values := make([]string, len(batch))
		args := make([]any, 0, 2*len(batch))
		for i, k := range batch {
			values[i] = "(?, ?, 1, " + now + ")"
			args = append(args, job, k)
		}
		// A key appears once per statement: PostgreSQL refuses to update
		// one row twice in an upsert.
		if _, err := j.s.exec(ctx, tx, j.s.q(`INSERT INTO pampa_groups (job, grp, run, since) VALUES `+strings.Join(values, ", ")+`
			ON CONFLICT (job, grp) DO UPDATE SET run = pampa_groups.run + 1, since = excluded.since WHERE pampa_groups.since IS NULL`), args...); err != nil {
			return fmt.Errorf("record the groups handed out: %w", err)
		}
	}
	return nil
}

// OpenGroups lists up to n candidate groups of the job (GroupKey form),
// in order, after the key after ("" from the first): the groups handed
// out since they were last done.
func (s *Store) OpenGroups(ctx context.Context, job, after string, n int) ([]string, error) {
	var out []string
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.DB.QueryContext(ctx, s.q(`SELECT grp FROM pampa_groups WHERE job = ? AND since IS NOT NULL AND grp > ? ORDER BY grp LIMIT ?`), job, after, n)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// groupCond is the condition "in group key" on the group column, with
// its arguments (none for the NULL group).
func (j *JobSQL) groupCond(key string) (string, []any) {
	if v := GroupValue(key); v != nil {
		return j.groupCol() + " = ? AND ", []any{v}
	}
	return j.groupCol() + " IS NULL AND ", nil
}

// groupBusySQL is the check of one group as a boolean SQL expression,
// and its arguments: a pending row (scheduled ones too: a group is done
// when every task ended), a row in flight, or a retrying one; each probe
// reads one of the group indexes.
func (j *JobSQL) groupBusySQL(key string) (string, []any) {
	g, gargs := j.groupCond(key)
	expr := fmt.Sprintf(`EXISTS (SELECT 1 FROM %[1]s WHERE %[2]s%[3]s AND COALESCE(%[4]s, 0) < ?) OR EXISTS (SELECT 1 FROM %[1]s WHERE %[2]s%[5]s) OR EXISTS (SELECT 1 FROM %[1]s WHERE %[2]s%[6]s)`,
		j.t, g, j.pendingIndexPredicate(), j.reservationTimes, j.inFlightCond(), j.retryingCond())
	var args []any
	args = append(append(args, gargs...), j.spec.MaxTryTimes)
	args = append(args, gargs...)
	args = append(append(args, gargs...), j.spec.MaxTryTimes)
	return expr, args
}

// GroupsLookDone checks the groups given (GroupKey form) and returns
// those that have nothing left: a statement per 50 groups, three index
// probes each. It reads outside any lock; CloseGroup checks again.
func (j *JobSQL) GroupsLookDone(ctx context.Context, q Querier, keys []string) ([]string, error) {
	var done []string
	const chunk = 50
	for lo := 0; lo < len(keys); lo += chunk {
		hi := min(lo+chunk, len(keys))
		var parts []string
		var args []any
		for i := lo; i < hi; i++ {
			expr, a := j.groupBusySQL(keys[i])
			parts = append(parts, fmt.Sprintf("SELECT %d, CASE WHEN %s THEN 1 ELSE 0 END", i, expr))
			args = append(args, a...)
		}
		rows, err := j.s.query(ctx, q, j.s.q(strings.Join(parts, " UNION ALL ")), args...)
		if err != nil {
			return nil, fmt.Errorf("check the candidate groups: %w", err)
		}
		for rows.Next() {
			var i, busy int
			if err := rows.Scan(&i, &busy); err != nil {
				rows.Close()
				return nil, err
			}
			if busy == 0 {
				done = append(done, keys[i])
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return done, nil
}

// CloseGroup ends the run of a candidate group if every task of it has
// ended (none pending, in flight or retrying), within tx, and returns the
// event it wrote (nil when the group is not done, or no candidate). It
// takes the job's lock in pampa_limits first, as ReserveLimited does, so
// that no hand-out of the group runs beside the check. The counts are
// the group's rows whose last try ended during its run, as CloseRun's.
func (j *JobSQL) CloseGroup(ctx context.Context, tx Querier, job, key string) (*Event, error) {
	d := j.s.Dialect
	if _, err := j.s.exec(ctx, tx, j.s.q(`INSERT INTO pampa_limits (job, locked_at) VALUES (?, `+d.Now()+`)
		ON CONFLICT (job) DO UPDATE SET locked_at = excluded.locked_at`), job); err != nil {
		return nil, fmt.Errorf("lock the limits: %w", err)
	}
	var run int64
	err := j.s.queryRow(ctx, tx, j.s.q(`SELECT run FROM pampa_groups WHERE job = ? AND grp = ? AND since IS NOT NULL`+d.LockRows()), job, key).Scan(&run)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock the group: %w", err)
	}
	id := EventID(EventGroupDone, job, run, key)
	g, gargs := j.groupCond(key)
	counts, countArgs := j.countsSQL(g, gargs, "since")
	busy, busyArgs := j.groupBusySQL(key)
	query := fmt.Sprintf(`INSERT INTO pampa_events (%s)
		SELECT ?, ?, ?, r.grp, r.run, %s, %s, %s, 'pending', 0, %s, %s FROM pampa_groups r
		WHERE r.job = ? AND r.grp = ? AND r.since IS NOT NULL AND NOT (%s)`,
		eventColumns, d.UnixMillis("r.since"), d.UnixMillis(d.Now()), counts, d.Now(), d.Now(), busy)
	args := append([]any{id, job, EventGroupDone}, countArgs...)
	args = append(append(args, job, key), busyArgs...)
	res, err := j.s.exec(ctx, tx, j.s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("record the group's end: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, nil
	}
	if _, err := j.s.exec(ctx, tx, j.s.q(`UPDATE pampa_groups SET since = NULL,
		counted_after = COALESCE((SELECT last_end FROM pampa_events WHERE id = ?), counted_after) WHERE job = ? AND grp = ?`), id, job, key); err != nil {
		return nil, fmt.Errorf("close the group's run: %w", err)
	}
	e, err := j.s.readEvent(ctx, tx, id)
	return &e, err
}
