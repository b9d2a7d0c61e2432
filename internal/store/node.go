package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Two levels of dispatch. The central dispatcher reserves rows for a node
// dispatcher's entry in the registry as for any worker (Dispatchable);
// the node dispatcher then starts them for its own workers with StartFor,
// which moves each row to the worker that runs it, and heartbeats for
// itself and its workers with HeartbeatMany. From the start on a row
// carries its worker's id, so every later write is fenced by (key,
// worker, try) exactly as for a worker that claims for itself.

// StartFor starts, in one statement, rows reserved for node and not yet
// started, oldest reservation first, for the workers of shares: share i
// gets up to shares[i].N of them (when fewer are reserved, each share
// shrinks in proportion). Each row's reservation column becomes its
// worker's id, its start time is set, its try counted and its last
// outcome cleared. A row no longer reserved for node (handed back,
// relaunched, reserved for another) is not touched. It returns the rows
// as they are after the update; each row's reservation column names its
// worker.
func (j *JobSQL) StartFor(ctx context.Context, q Querier, node string, shares []Share) ([]Row, error) {
	total := 0
	args := []any{node, 0, 0}
	for _, sh := range shares {
		if sh.N <= 0 {
			continue
		}
		args = append(args, sh.Worker, total, total+sh.N)
		total += sh.N
	}
	if total == 0 {
		return nil, nil
	}
	args[1], args[2] = total, total
	args = append(args, node)
	rows, err := j.s.query(ctx, q, j.startForSQL((len(args)-4)/3), args...)
	if err != nil {
		return nil, err
	}
	return scanRows(rows)
}

// startForSQL is StartFor's statement for n shares, built like
// reserveSharesSQL's: share i owns the positions [lo, hi) of 0 … total-1,
// and the picked rows, numbered in reservation order, are spread over
// them.
func (j *JobSQL) startForSQL(n int) string {
	d := j.s.Dialect
	cast := d.Cast
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("(?%s, ?%s, ?%s)", cast("text"), cast("bigint"), cast("bigint"))
	}
	// SQLite's RETURNING names only the target's columns; PostgreSQL's *
	// would add the joined ones.
	//
	// The update's own fence leaves out "end IS NULL" (picked checked it,
	// and the rows are locked or the engine has one writer): with it, the
	// in-flight index matches the target, and a planner whose statistics
	// show that index nearly empty reads the table through it in the
	// outer loop with the numbered rows inside, every row reserved for the
	// node times every row started (30 s for 5,000 rows). Without it, the
	// target is reached by its key only.
	returning := "*"
	if d.QualifiesReturning() {
		returning = "r.*"
	}
	return j.s.q(fmt.Sprintf(`WITH picked AS MATERIALIZED (
			SELECT %[2]s AS k, %[3]s AS at FROM %[1]s WHERE %[4]s = ? AND %[5]s IS NULL AND %[6]s IS NULL ORDER BY %[3]s, %[2]s LIMIT ?%[7]s),
		numbered AS MATERIALIZED (SELECT k, (row_number() OVER (ORDER BY at, k) - 1) * ?%[8]s / COUNT(*) OVER () AS pos FROM picked),
		share (w, lo, hi) AS (VALUES %[9]s)
		UPDATE %[1]s AS r SET %[4]s = share.w, %[5]s = %[10]s, %[11]s = COALESCE(r.%[11]s, 0) + 1, %[6]s = NULL, %[12]s = NULL
		FROM numbered JOIN share ON numbered.pos >= share.lo AND numbered.pos < share.hi
		WHERE r.%[2]s = numbered.k AND r.%[4]s = ? AND r.%[5]s IS NULL
		RETURNING %[13]s`, j.t, j.pk, j.reservationTime, j.reservationID, j.startTime, j.endTime, d.SkipLocked(), cast("bigint"),
		strings.Join(values, ", "), d.Now(), j.reservationTimes, j.success, returning))
}

// scanRows reads rows as Rows and closes them.
func scanRows(rows *sql.Rows) ([]Row, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []Row
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = append([]byte(nil), b...)
			}
		}
		out = append(out, Row{Columns: cols, Values: vals})
	}
	return out, rows.Err()
}

// Beat is one registry entry a node dispatcher heartbeats for: the id and
// the instance its process registered.
type Beat struct {
	ID, Instance string
}

// Beaten is what the registry answered for one entry of HeartbeatMany.
type Beaten struct {
	Job     string // the assigned job ("" for none)
	Drained bool
}

// HeartbeatMany refreshes, in one statement, the heartbeats of several
// registry entries (a node dispatcher's and its workers'), each fenced by
// its instance, and writes memberJob ("" for none) as the job of those
// run through a node dispatcher, so that the registry shows what they
// work on. An entry missing from the answer is no longer this process's:
// declared dead, or taken by another process.
func (s *Store) HeartbeatMany(ctx context.Context, beats []Beat, memberJob string) (map[string]Beaten, error) {
	out := make(map[string]Beaten, len(beats))
	if len(beats) == 0 {
		return out, nil
	}
	pairs := make([]string, len(beats))
	args := []any{nullable(memberJob)}
	for i, b := range beats {
		pairs[i] = "(?, ?)"
		args = append(args, b.ID, b.Instance)
	}
	query := s.q(`UPDATE pampa_workers SET heartbeat_at = ` + s.Dialect.Now() + `, job = CASE WHEN via IS NULL THEN job ELSE ? END
		WHERE (id, instance) IN (VALUES ` + strings.Join(pairs, ", ") + `) AND state IN ('running', 'stopping')
		RETURNING id, COALESCE(job, ''), CASE WHEN drained_at IS NULL THEN 0 ELSE 1 END`)
	err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		clear(out)
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var b Beaten
			var drained int
			if err := rows.Scan(&id, &b.Job, &drained); err != nil {
				return err
			}
			b.Drained = drained == 1
			out[id] = b
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat %d workers: %w", len(beats), err)
	}
	return out, nil
}

// CancelsOf lists, in one read, the tries cancelled under any of the
// workers that they have not yet acted on.
func (s *Store) CancelsOf(ctx context.Context, workers []string) ([]CancelledTry, error) {
	var out []CancelledTry
	if len(workers) == 0 {
		return nil, nil
	}
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.DB.QueryContext(ctx, s.q(`SELECT worker, job, task FROM pampa_cancels WHERE worker IN (`+placeholders(len(workers))+`)`),
			toAny(workers)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c CancelledTry
			if err := rows.Scan(&c.Worker, &c.Job, &c.Task); err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read cancelled tasks of %d workers: %w", len(workers), err)
	}
	return out, nil
}

// UnstartFor undoes a start a node dispatcher's worker never acted on (a
// try taken ahead that waited too long, or that must not run now): the
// row is reserved for the node again, unstarted, and the try is not
// counted. Fenced by the try, as Unstart.
func (j *JobSQL) UnstartFor(ctx context.Context, q Querier, node string, f Fence) (bool, error) {
	query := j.s.q(fmt.Sprintf(`UPDATE %s SET %s = ?, %s = NULL, %s = %s - 1 WHERE %s = ? AND %s = ? AND %s = ? AND %s IS NOT NULL AND %s IS NULL`,
		j.t, j.reservationID, j.startTime, j.reservationTimes, j.reservationTimes, j.pk, j.reservationID, j.reservationTimes, j.startTime, j.endTime))
	res, err := j.s.exec(ctx, q, query, node, f.Key, f.Worker, f.Try)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
