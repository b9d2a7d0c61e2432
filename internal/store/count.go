package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Counts are a job's tasks by state.
type Counts struct {
	Total, Succeeded, Failed, Reserved, Running int64
	// Scheduled: neither reserved nor started, with a run-at in the
	// future (jobs with a run-at column only); not in Pending.
	Scheduled int64
	// Estimated: Total is from PostgreSQL's statistics of the table (or
	// SQLite's last count and the rows added since), not a count, and
	// Succeeded is Total less the other states, which are still counted
	// exactly.
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
//   - pending (pending index): neither reserved nor started, plus (retry
//     index) failed tries with tries left, waiting for a relaunch;
//   - reserved and running (in-flight index): reserved, not ended; not
//     started or started;
//   - failed (failed index, less the retry index's): failed with no tries
//     left, as the relaunch sees them.
//
// Succeeded is the rest, Total less those, which spares reading every
// finished row. Total is the one figure that needs the whole table; COUNT(*)
// gets it at least cost (SQLite counts the entries of its smallest index).
// On PostgreSQL, when its statistics put the table at estimateMin rows or
// more (estimateMin > 0), Total is taken from them instead (see
// estimateRows), and Estimated is set; on SQLite, from the last count of
// estimateMin rows or more and the rows added since (rowidEstimate).
func (j *JobSQL) CountEstimate(ctx context.Context, q Querier, estimateMin int64) (Counts, error) {
	var c Counts
	var err error
	switch {
	case estimateMin <= 0:
	case j.s.Dialect.EstimatesRowCount():
		n, err := j.estimateRows(ctx, q)
		if err != nil {
			return Counts{}, fmt.Errorf("table statistics: %w", err)
		}
		c.Total, c.Estimated = n, n >= estimateMin
	case j.s.Dialect.CountsNewRowsByRowid():
		if c.Total, c.Estimated, err = j.rowidEstimate(ctx, q, estimateMin); err != nil {
			return Counts{}, fmt.Errorf("rows added since the last count: %w", err)
		}
	}
	// The largest rowid, read with an exact count of a large table, lets
	// the next reports count only the rows added since.
	rowid := ""
	if !c.Estimated && estimateMin > 0 && j.s.Dialect.CountsNewRowsByRowid() {
		rowid = j.rowidColumn(ctx, q)
	}
	var pending, waiting int64
	var maxRowid sql.NullInt64
	dest := []any{&pending, &c.Scheduled, &c.Reserved, &c.Running, &c.Failed, &waiting}
	if !c.Estimated {
		dest = append([]any{&c.Total}, dest...)
	}
	if rowid != "" {
		dest = append([]any{&maxRowid}, dest...)
	}
	// One statement, so that the states come from one snapshot and a row
	// moving between two of them is counted once.
	if err := j.s.queryRow(ctx, q, j.countSQL(!c.Estimated, rowid)).Scan(dest...); err != nil {
		return Counts{}, err
	}
	if rowid != "" && c.Total >= estimateMin && maxRowid.Valid {
		j.rowids.counted(c.Total, maxRowid.Int64)
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
// databases use them), the whole table's COUNT(*) when total is set, and
// first the largest value of the rowid column when one is named.
func (j *JobSQL) countSQL(total bool, rowid string) string {
	all := ""
	if rowid != "" {
		all = fmt.Sprintf("(SELECT MAX(%s) FROM %s), ", rowid, j.t)
	}
	if total {
		all += fmt.Sprintf("(SELECT COUNT(*) FROM %s), ", j.t)
	}
	// Without a run-at column, scheduled is a constant 0: the pending
	// count reads nothing more.
	scheduled := "0"
	if j.runAt != "" {
		scheduled = "COUNT(CASE WHEN " + j.notDue() + " THEN 1 END)"
	}
	// Failed tries with tries left are those of the retry index, counted
	// from it alone; failed for good, the other failed rows: neither reads
	// a row of the table (the try count is not in the failed index).
	return j.s.q(fmt.Sprintf(`SELECT %[1]sp.n, p.scheduled, i.reserved, i.running, f.n - r.n, r.n FROM
		(SELECT COUNT(*) AS n, %[7]s AS scheduled FROM %[2]s WHERE %[3]s IS NULL AND %[4]s IS NULL) p,
		(SELECT COUNT(*) - COUNT(%[4]s) AS reserved, COUNT(%[4]s) AS running FROM %[2]s WHERE %[3]s IS NOT NULL AND %[5]s IS NULL) i,
		(SELECT COUNT(*) AS n FROM %[2]s WHERE %[6]s = FALSE) f,
		(SELECT COUNT(*) AS n FROM %[2]s WHERE %[8]s) r`,
		all, j.t, j.reservationID, j.startTime, j.endTime, j.success, scheduled, j.retryPredicate()))
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

// rowidFresh is how long SQLite's count of a large table is carried
// forward by the rows added since (rowidEstimate) before the table is
// counted again: rows deleted in between, or inserted with a rowid below
// the largest, are missed until then.
const rowidFresh = 30 * time.Second

// rowidCount is the last exact count of a large SQLite table and the
// largest rowid it saw. SQLite keeps no statistics to estimate a table's
// rows from, and counting 10,000,000 of them takes a tenth of a second a
// report; the rows added since a count are a range of the table's own
// b-tree above that rowid, read as fast as they are few.
type rowidCount struct {
	mu     sync.Mutex
	n, max int64
	at     time.Time // of the exact count
	column string    // the name that reaches the rowid; "-": none does
}

func (r *rowidCount) counted(n, maxRowid int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n, r.max, r.at = n, maxRowid, time.Now()
}

// rowidEstimate is, on SQLite, the table's rows as the last exact count
// of estimateMin rows or more (at most rowidFresh old) plus those added
// since; ok is false when there is no such count to go on.
func (j *JobSQL) rowidEstimate(ctx context.Context, q Querier, estimateMin int64) (n int64, ok bool, err error) {
	r := &j.rowids
	r.mu.Lock()
	base, from, at, col := r.n, r.max, r.at, r.column
	r.mu.Unlock()
	if at.IsZero() || time.Since(at) > rowidFresh || base < estimateMin || col == "" || col == "-" {
		return 0, false, nil
	}
	var added int64
	var top sql.NullInt64
	err = j.s.queryRow(ctx, q, j.s.q(fmt.Sprintf(`SELECT COUNT(*), MAX(%[1]s) FROM %[2]s WHERE %[1]s > ?`, col, j.t)), from).Scan(&added, &top)
	if err != nil {
		return 0, false, err
	}
	if added > 0 && top.Valid {
		r.mu.Lock()
		if r.at.Equal(at) { // not counted again meanwhile
			r.n, r.max = base+added, top.Int64
		}
		r.mu.Unlock()
	}
	return base + added, true, nil
}

// rowidColumn is the name under which the table's rowid can be read: the
// first of SQLite's three names for it that no column of the table takes,
// "" when there is none or the table has no rowid (WITHOUT ROWID). It is
// looked up once.
func (j *JobSQL) rowidColumn(ctx context.Context, q Querier) string {
	r := &j.rowids
	r.mu.Lock()
	col := r.column
	r.mu.Unlock()
	if col == "" {
		col = j.findRowid(ctx, q)
		r.mu.Lock()
		r.column = col
		r.mu.Unlock()
	}
	if col == "-" {
		return ""
	}
	return col
}

func (j *JobSQL) findRowid(ctx context.Context, q Querier) string {
	cols, _, err := j.s.Dialect.Columns(ctx, q, j.spec.Table)
	if err != nil {
		return "-"
	}
	taken := map[string]bool{}
	for _, c := range cols {
		taken[strings.ToLower(c.Name)] = true
	}
	for _, name := range []string{"rowid", "_rowid_", "oid"} {
		if taken[name] {
			continue
		}
		var top sql.NullInt64
		if err := j.s.queryRow(ctx, q, fmt.Sprintf(`SELECT MAX(%s) FROM %s`, name, j.t)).Scan(&top); err != nil {
			return "-" // WITHOUT ROWID
		}
		return name
	}
	return "-"
}
