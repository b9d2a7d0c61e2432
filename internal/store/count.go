package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Counts are a job's tasks by state.
type Counts struct {
	Total, Succeeded, Failed, Reserved, Running int64
	// Scheduled: neither reserved nor started, with a run-at in the
	// future (jobs with a run-at column only); not in Pending.
	Scheduled int64
	// Estimated: Total is from PostgreSQL's statistics of the table, not
	// a count, and Succeeded is Total less the other states, which are
	// still counted exactly.
	Estimated bool
}

// Pending is what is neither done nor in flight: never tried, or waiting
// for another try.
func (c Counts) Pending() int64 {
	return c.Total - c.Succeeded - c.Failed - c.Reserved - c.Running - c.Scheduled
}

// Count counts the job's rows by state, exactly (CountEstimate with no
// estimate).
func (j *JobSQL) Count(ctx context.Context, q Querier) (Counts, error) {
	return j.CountEstimate(ctx, q, 0)
}

// CountEstimate counts the job's rows by state. Only the unfinished states
// are looked for, each through a partial index of `pampa setup`, so that
// their cost follows the backlog and not the table:
//   - pending (pending index): neither reserved nor started, plus (failed
//     index) failed tries with tries left, waiting for a relaunch;
//   - reserved and running (in-flight index): reserved, not ended; not
//     started or started;
//   - failed (failed index): failed with no tries left.
//
// Succeeded is the rest, Total less those, which spares reading every
// finished row. Total is the one figure that needs the whole table; COUNT(*)
// gets it at least cost (SQLite counts the entries of its smallest index).
// On PostgreSQL, when its statistics put the table at estimateMin rows or
// more (estimateMin > 0), Total is taken from them instead (see
// estimateRows), and Estimated is set.
func (j *JobSQL) CountEstimate(ctx context.Context, q Querier, estimateMin int64) (Counts, error) {
	var c Counts
	if estimateMin > 0 && j.s.Dialect.EstimatesRowCount() {
		n, err := j.estimateRows(ctx, q)
		if err != nil {
			return Counts{}, fmt.Errorf("table statistics: %w", err)
		}
		c.Total, c.Estimated = n, n >= estimateMin
	}
	var pending, waiting int64
	dest := []any{&pending, &c.Scheduled, &c.Reserved, &c.Running, &c.Failed, &waiting}
	if !c.Estimated {
		dest = append([]any{&c.Total}, dest...)
	}
	// One statement, so that the states come from one snapshot and a row
	// moving between two of them is counted once.
	if err := j.s.queryRow(ctx, q, j.countSQL(!c.Estimated), j.spec.MaxTryTimes).Scan(dest...); err != nil {
		return Counts{}, err
	}
	others := pending + waiting + c.Reserved + c.Running + c.Failed
	if c.Estimated {
		// The statistics lag a little behind inserts: the table holds at
		// least the rows just counted.
		c.Total = max(c.Total, others)
	}
	c.Succeeded = max(0, c.Total-others)
	return c, nil
}

// countSQL is the counting statement: each unfinished state through its
// partial index (the predicates are those of Indexes, so that both
// databases use them), and the whole table's COUNT(*) when total is set.
func (j *JobSQL) countSQL(total bool) string {
	all := ""
	if total {
		all = fmt.Sprintf("(SELECT COUNT(*) FROM %s), ", j.t)
	}
	// Without a run-at column, scheduled is a constant 0: the pending
	// count reads nothing more.
	scheduled := "0"
	if j.runAt != "" {
		scheduled = "COUNT(CASE WHEN " + j.notDue() + " THEN 1 END)"
	}
	return j.s.q(fmt.Sprintf(`SELECT %[1]sp.n, p.scheduled, i.reserved, i.running, f.failed, f.n - f.failed FROM
		(SELECT COUNT(*) AS n, %[8]s AS scheduled FROM %[2]s WHERE %[3]s IS NULL AND %[4]s IS NULL) p,
		(SELECT COUNT(*) - COUNT(%[4]s) AS reserved, COUNT(%[4]s) AS running FROM %[2]s WHERE %[3]s IS NOT NULL AND %[5]s IS NULL) i,
		(SELECT COUNT(*) AS n, COUNT(CASE WHEN COALESCE(%[6]s, 0) >= ? THEN 1 END) AS failed FROM %[2]s WHERE %[7]s = FALSE) f`,
		all, j.t, j.reservationID, j.startTime, j.endTime, j.reservationTimes, j.success, scheduled))
}

// estimateRows is PostgreSQL's estimate of the table's rows: the smaller
// of two statistics, as each errs upwards in its own way (an unknown one
// is left out).
//   - The planner's: live rows per page at the last VACUUM or ANALYZE
//     (reltuples/relpages) times the pages now. Every try updates its row
//     three times (reserve, claim, finish), so between vacuums the table
//     fills with dead versions and this grows far past the rows (nearly
//     double once half the rows have been run since). Unknown before a
//     first VACUUM or ANALYZE (reltuples -1, relpages 0).
//   - The live-row count (n_live_tup): set by each VACUUM and ANALYZE, then
//     moved by every insert and delete, so updates leave it be. Changes
//     committed just before a VACUUM or ANALYZE but reported after it
//     (backends report at most once a second) count twice. 0 once the
//     statistics are reset or lost in a crash: then the table is counted.
func (j *JobSQL) estimateRows(ctx context.Context, q Querier) (int64, error) {
	var n sql.NullInt64
	err := j.s.queryRow(ctx, q, j.s.q(`SELECT LEAST(pg_stat_get_live_tuples(c.oid),
		CASE WHEN c.reltuples >= 0 AND c.relpages > 0 THEN
			round(c.reltuples::float8 / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint END)
		FROM pg_class c WHERE c.oid = to_regclass(?)`), j.t).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil // no such table: the count will say so
	}
	return n.Int64, err
}
