package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// JobSpec is what the store needs to know of a job: its table, key and
// tracking columns, and its try limit. The tracking columns carry the
// same names everywhere in Pampa (the public TrackingFields, the config
// keys in brackets, the quoted fragments of JobSQL).
type JobSpec struct {
	Table            Ident
	PrimaryKey       string
	ReservationID    string // the worker the row is reserved for [field_id]
	ReservationTime  string // when it was reserved [field_time]
	ReservationTimes string // tries started [field_times]
	StartTime        string // when the current try started [field_start_time]
	EndTime          string // when it ended [field_end_time]
	Success          string // its outcome [field_success]
	ErrorDescription string // the last failure's description [field_error_description]
	// CreatedAt, optional, is a timestamp column the user's rows carry:
	// when each was made [field_created_at].
	CreatedAt string
	// RunAt, optional, is a timestamp column: a row whose run-at is in the
	// future (database clock) is scheduled, not pending, until then
	// [field_run_at].
	RunAt       string
	MaxTryTimes int
	// Limits, when set, make the job's rows go out through ReserveLimited.
	Limits Limits
	// Drains is set for a job with an on_drained hook: Indexes adds the
	// one its drain counts read.
	Drains bool
	// GroupsDone is set for a job with group_by and an on_group_done
	// hook: ReserveLimited records each group it serves as a candidate
	// for completion, and Indexes adds those the checks read.
	GroupsDone bool
}

// JobSQL holds a job's statements, generated once with quoted identifiers.
// Methods take a Querier so callers can run several in one transaction
// (and user hooks beside them).
type JobSQL struct {
	s    *Store
	spec JobSpec

	t, pk, reservationID, reservationTime, reservationTimes, startTime, endTime, success, errorDescription string
	createdAt, runAt                                                                                       string // "" when the job has none

	pending, reset, claim, occupied, inflight, countPending string

	casts  atomic.Pointer[map[string]string] // PostgreSQL column types, for batched finishes
	pkType atomic.Pointer[string]            // the key column's declared type (see KeyArg)

	// pendingFrom is the FROM target of the queries that pick pending
	// rows, retryFrom the UPDATE target of the relaunch of failed tries:
	// on SQLite they name the pending and retry indexes once those are
	// known to exist (see PinIndexes).
	pendingFrom, retryFrom string
	// explainSettings run in Explain's transaction first: tests of the
	// plans of small tables set the planner's options with them.
	explainSettings []string
	// rowids carries SQLite's last count of a large table forward.
	rowids rowidCount
}

// Job generates the statements of one job.
func (s *Store) Job(spec JobSpec) *JobSQL {
	j := &JobSQL{s: s, spec: spec,
		t: spec.Table.Quoted(), pk: Quote(spec.PrimaryKey), reservationID: Quote(spec.ReservationID), reservationTime: Quote(spec.ReservationTime),
		reservationTimes: Quote(spec.ReservationTimes), startTime: Quote(spec.StartTime), endTime: Quote(spec.EndTime),
		success: Quote(spec.Success), errorDescription: Quote(spec.ErrorDescription),
	}
	if spec.CreatedAt != "" {
		j.createdAt = Quote(spec.CreatedAt)
	}
	d := s.Dialect
	now := d.Now()
	j.pending = fmt.Sprintf("%s IS NULL AND %s IS NULL AND COALESCE(%s, 0) < ?", j.reservationID, j.startTime, j.reservationTimes)
	if spec.RunAt != "" {
		// Only with the option: without it, the pending reads are as ever.
		j.runAt = Quote(spec.RunAt)
		j.pending += " AND " + j.due()
	}
	j.reset = fmt.Sprintf("%s = NULL, %s = NULL, %s = NULL, %s = NULL, %s = NULL", j.reservationID, j.reservationTime, j.startTime, j.endTime, j.success)
	j.pendingFrom, j.retryFrom = j.t, j.t
	j.pickStatements()
	// The rows to take are picked in a MATERIALIZED CTE, run once. Written
	// as "IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)", PostgreSQL may
	// re-run the sub-select for each row of a nested loop; each re-run skips
	// the rows the statement already updated and picks others, so far more
	// than n rows are taken.
	j.claim = s.q(fmt.Sprintf(`WITH picked AS MATERIALIZED (
			SELECT %[7]s FROM %[1]s WHERE %[8]s = ? AND %[2]s IS NULL AND %[5]s IS NULL ORDER BY %[9]s, %[7]s LIMIT ?%[10]s)
		UPDATE %[1]s SET %[2]s = %[3]s, %[4]s = COALESCE(%[4]s, 0) + 1, %[5]s = NULL, %[6]s = NULL
		WHERE %[7]s IN (SELECT %[7]s FROM picked) AND %[8]s = ? AND %[2]s IS NULL
		RETURNING *`, j.t, j.startTime, now, j.reservationTimes, j.endTime, j.success, j.pk, j.reservationID, j.reservationTime, d.SkipLocked()))
	j.occupied = s.q(fmt.Sprintf(`SELECT %[2]s, COUNT(*) FROM %[1]s WHERE %[2]s IS NOT NULL AND %[3]s IS NULL AND %[4]s IS NULL GROUP BY %[2]s`,
		j.t, j.reservationID, j.startTime, j.endTime))
	j.inflight = s.q(fmt.Sprintf(`SELECT DISTINCT %[2]s FROM %[1]s WHERE %[2]s IS NOT NULL AND %[3]s IS NULL`, j.t, j.reservationID, j.endTime))
	return j
}

// pickStatements generates the statements that read pending rows (the
// reserving one is built per call, by reserveSharesSQL).
func (j *JobSQL) pickStatements() {
	j.countPending = j.s.q(fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %s WHERE %s LIMIT ?) p`, j.pendingFrom, j.pending))
}

// PinIndexes makes, on SQLite, the queries that pick pending rows read
// them through the job's pending index, and the relaunch of failed tries
// through its retry index (see Indexes), where they exist. SQLite's
// planner, with statistics taken while every row was pending, prefers
// walking the table in key order; a statement prepared then keeps that
// plan, and steps over every finished row at the front of the table on
// each call once most are done. For the failed tries it prefers the end
// times of the failed index, which hold every task failed for good. Call
// it before the statements are used.
func (j *JobSQL) PinIndexes(ctx context.Context, job string) error {
	pin := func(suffix string) (string, error) {
		name := indexBase(job) + suffix
		hint := j.s.Dialect.IndexHint(name)
		if hint == "" {
			return j.t, nil
		}
		ok, err := j.s.IndexExists(ctx, j.spec.Table, name)
		if err != nil || !ok {
			return j.t, err
		}
		return j.t + hint, nil
	}
	var err error
	if j.pendingFrom, err = pin("_pending"); err != nil {
		return err
	}
	j.pickStatements()
	j.retryFrom, err = pin(j.retryIndex())
	return err
}

// Spec returns the job's spec.
func (j *JobSQL) Spec() JobSpec { return j.spec }

// Reserve reserves up to n pending rows (not reserved, not started, tried
// fewer than MaxTryTimes) for worker, in key order, and returns their keys.
// Rows locked by a concurrent reserve are skipped, never taken twice.
func (j *JobSQL) Reserve(ctx context.Context, q Querier, worker string, n int) ([]any, error) {
	keys, err := j.ReserveShares(ctx, q, []Share{{worker, n}})
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// Share is how many rows a worker should be given.
type Share struct {
	Worker string
	N      int
}

// ReserveShares reserves pending rows for several workers in one
// statement, in key order: each worker gets a contiguous run of keys, so
// that its later writes touch few pages. When fewer rows are pending than
// asked for, every share shrinks in proportion instead of the first ones
// taking all. It returns the keys each share got, in order.
func (j *JobSQL) ReserveShares(ctx context.Context, q Querier, shares []Share) ([][]any, error) {
	got := make([][]any, len(shares))
	total := 0
	args := []any{j.spec.MaxTryTimes, 0, 0}
	for _, sh := range shares {
		args = append(args, sh.Worker, total, total+sh.N)
		total += sh.N
	}
	if total == 0 {
		return got, nil
	}
	args[1], args[2] = total, total
	rows, err := j.s.query(ctx, q, j.reserveSharesSQL(len(shares)), j.s.planEach(args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	index := make(map[string]int, len(shares))
	for i, sh := range shares {
		index[sh.Worker] = i
	}
	for rows.Next() {
		var k any
		var w string
		if err := rows.Scan(&k, &w); err != nil {
			return nil, err
		}
		got[index[w]] = append(got[index[w]], normalizeKey(k))
	}
	return got, rows.Err()
}

// reserveSharesSQL is ReserveShares' statement for n shares. Share i owns
// the positions [lo, hi) of 0 … total-1; the picked rows, numbered in key
// order, are spread over those positions (row r of c at r*total/c).
func (j *JobSQL) reserveSharesSQL(n int) string {
	d := j.s.Dialect
	cast := d.Cast
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("(?%s, ?%s, ?%s)", cast("text"), cast("bigint"), cast("bigint"))
	}
	// The table is aliased "r": its own name may be schema-qualified,
	// which SQLite does not take in a column reference. SQLite's RETURNING
	// names only the target's columns, unqualified; PostgreSQL's could be
	// ambiguous without "r.".
	returning := j.pk + ", " + j.reservationID
	if d.QualifiesReturning() {
		returning = "r." + j.pk + ", r." + j.reservationID
	}
	return j.s.q(fmt.Sprintf(`WITH picked AS MATERIALIZED (
			SELECT %[5]s FROM %[10]s WHERE %[6]s ORDER BY %[5]s LIMIT ?%[7]s),
		numbered AS (SELECT %[5]s AS k, (row_number() OVER (ORDER BY %[5]s) - 1) * ?%[9]s / COUNT(*) OVER () AS pos FROM picked),
		share (w, lo, hi) AS (VALUES %[8]s)
		UPDATE %[1]s AS r SET %[2]s = share.w, %[3]s = %[4]s
		FROM numbered JOIN share ON numbered.pos >= share.lo AND numbered.pos < share.hi
		WHERE r.%[5]s = numbered.k AND r.%[2]s IS NULL
		RETURNING %[11]s`, j.t, j.reservationID, j.reservationTime, d.Now(), j.pk, j.pending, d.SkipLocked(), strings.Join(values, ", "), cast("bigint"), j.pendingFrom, returning))
}

// ReserveKeys reserves the given rows for worker, skipping any that are
// already reserved, and returns the keys it reserved.
func (j *JobSQL) ReserveKeys(ctx context.Context, q Querier, worker string, keys []any) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	query := j.s.q(fmt.Sprintf(`UPDATE %[1]s SET %[2]s = ?, %[3]s = %[4]s WHERE %[5]s IN (%[6]s) AND %[2]s IS NULL RETURNING %[5]s`,
		j.t, j.reservationID, j.reservationTime, j.s.Dialect.Now(), j.pk, placeholders(len(keys))))
	return j.s.queryKeys(ctx, q, query, append([]any{worker}, keys...)...)
}

// Row is a task row as RETURNING * gave it.
type Row struct {
	Columns []string
	Values  []any
}

// Get returns a column's value and whether the row has that column.
func (r Row) Get(col string) (any, bool) {
	for i, c := range r.Columns {
		if c == col {
			return r.Values[i], true
		}
	}
	return nil, false
}

// Claim starts up to n of worker's reserved rows, oldest reservation first:
// sets the start time, counts the try and clears the last outcome. It
// returns the rows as they are after the update.
func (j *JobSQL) Claim(ctx context.Context, q Querier, worker string, n int) ([]Row, error) {
	return j.readRows(ctx, q, j.claim, worker, n, worker)
}

// Started reads the rows started under worker and not ended, oldest start
// first: the tries it runs, and those a dispatcher started for it in the
// hand-out itself (one hop), which it adopts with this read.
func (j *JobSQL) Started(ctx context.Context, q Querier, worker string) ([]Row, error) {
	query := j.s.q(fmt.Sprintf(`SELECT * FROM %s WHERE %s = ? AND %s IS NOT NULL AND %s IS NULL ORDER BY %s, %s`,
		j.t, j.reservationID, j.startTime, j.endTime, j.startTime, j.pk))
	return j.readRows(ctx, q, query, worker)
}

// Holding returns which of workers hold a row of the job, reserved or
// running.
func (j *JobSQL) Holding(ctx context.Context, q Querier, workers []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(workers) == 0 {
		return out, nil
	}
	query := j.s.q(fmt.Sprintf(`SELECT DISTINCT %[2]s FROM %[1]s WHERE %[2]s IN (%[4]s) AND %[3]s IS NULL`,
		j.t, j.reservationID, j.endTime, strings.TrimSuffix(strings.Repeat("?, ", len(workers)), ", ")))
	args := make([]any, len(workers))
	for i, w := range workers {
		args[i] = w
	}
	rows, err := j.s.query(ctx, q, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// readRows runs a statement that returns whole rows of the table.
func (j *JobSQL) readRows(ctx context.Context, q Querier, query string, args ...any) ([]Row, error) {
	rows, err := j.s.query(ctx, q, query, args...)
	if err != nil {
		return nil, err
	}
	return scanRows(rows)
}

// Fence identifies one try of one task by one worker. A write carrying a
// fence lands only while the row is still that try: reserved for that
// worker, started, not ended, with that try count.
type Fence struct {
	Key    any
	Worker string
	Try    int64
}

// Outcome is what a finished try wrote.
type Outcome struct {
	Success bool
	Error   string         // stored when !Success; cleared on success
	Set     map[string]any // user columns written in the same statement
	// Final, on a failure, fails the task for good: its try count is
	// raised to MaxTryTimes in the same statement, as Discard does, so
	// that it is not relaunched whatever tries it had left.
	Final bool
}

// final reports whether o fails its task for good.
func (o Outcome) final() bool { return o.Final && !o.Success }

// finalSQL is the assignment that raises a row's try count to MaxTryTimes
// (never lowers it), for Final outcomes; it binds MaxTryTimes twice. qual
// prefixes the column where the statement aliases the table.
func (j *JobSQL) finalSQL(qual string) string {
	return fmt.Sprintf(", %[1]s = CASE WHEN COALESCE(%[2]s%[1]s, 0) < ? THEN ? ELSE %[2]s%[1]s END", j.reservationTimes, qual)
}

// Finish records a try's outcome. applied is false when the fence no
// longer matches (the task was relaunched or handed to another worker):
// nothing is written then.
func (j *JobSQL) Finish(ctx context.Context, q Querier, f Fence, o Outcome) (applied bool, err error) {
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s SET %s = %s, %s = ?, %s = ?", j.t, j.endTime, j.s.Dialect.Now(), j.success, j.errorDescription)
	var errArg any
	if !o.Success {
		errArg = o.Error
	}
	args := []any{o.Success, errArg}
	if o.final() {
		b.WriteString(j.finalSQL(""))
		args = append(args, j.spec.MaxTryTimes, j.spec.MaxTryTimes)
	}
	for _, col := range sortedKeys(o.Set) {
		fmt.Fprintf(&b, ", %s = ?", Quote(col))
		args = append(args, o.Set[col])
	}
	fmt.Fprintf(&b, " WHERE %s = ? AND %s = ? AND %s = ? AND %s IS NOT NULL AND %s IS NULL",
		j.pk, j.reservationID, j.reservationTimes, j.startTime, j.endTime)
	args = append(args, f.Key, f.Worker, f.Try)
	res, err := j.s.exec(ctx, q, j.s.q(b.String()), args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Unstart undoes a claim the worker never acted on (a task it had taken
// ahead and held too long): the row is reserved for the worker again,
// unstarted, and the try is not counted.
func (j *JobSQL) Unstart(ctx context.Context, q Querier, f Fence) (bool, error) {
	query := j.s.q(fmt.Sprintf(`UPDATE %s SET %s = NULL, %s = %s - 1 WHERE %s = ? AND %s = ? AND %s = ? AND %s IS NOT NULL AND %s IS NULL`,
		j.t, j.startTime, j.reservationTimes, j.reservationTimes, j.pk, j.reservationID, j.reservationTimes, j.startTime, j.endTime))
	res, err := j.s.exec(ctx, q, query, f.Key, f.Worker, f.Try)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// HandBack returns worker's unstarted reservations to the pending pool; no
// try is counted.
func (j *JobSQL) HandBack(ctx context.Context, q Querier, workers ...string) (int64, error) {
	if len(workers) == 0 {
		return 0, nil
	}
	query := fmt.Sprintf(`UPDATE %s SET %s = NULL, %s = NULL WHERE %s IN (%s) AND %s IS NULL AND %s IS NULL`,
		j.t, j.reservationID, j.reservationTime, j.reservationID, placeholders(len(workers)), j.startTime, j.endTime)
	res, err := j.s.exec(ctx, q, j.s.q(query), toAny(workers)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// RecoverRunning deals with tries that will never report back, chosen by
// cond (SQL over the job's columns) and its args: a try with tries left is
// reset to pending (relaunched keys are returned); one that used its last
// try is failed for good with reason (failed keys are returned).
func (j *JobSQL) recoverRunning(ctx context.Context, q Querier, cond string, reason string, args ...any) (relaunched, failed []any, err error) {
	inflight := fmt.Sprintf("%s IS NOT NULL AND %s IS NOT NULL AND %s IS NULL AND (%s)", j.reservationID, j.startTime, j.endTime, cond)
	resetQ := fmt.Sprintf(`UPDATE %s SET %s WHERE %s AND COALESCE(%s, 0) < ? RETURNING %s`, j.t, j.reset, inflight, j.reservationTimes, j.pk)
	relaunched, err = j.s.queryKeys(ctx, q, j.s.q(resetQ), append(append([]any{}, args...), j.spec.MaxTryTimes)...)
	if err != nil {
		return nil, nil, err
	}
	failQ := fmt.Sprintf(`UPDATE %s SET %s = FALSE, %s = %s, %s = ? WHERE %s AND COALESCE(%s, 0) >= ? RETURNING %s`,
		j.t, j.success, j.endTime, j.s.Dialect.Now(), j.errorDescription, inflight, j.reservationTimes, j.pk)
	failed, err = j.s.queryKeys(ctx, q, j.s.q(failQ), append(append([]any{reason}, args...), j.spec.MaxTryTimes)...)
	return relaunched, failed, err
}

// RecoverWorkers hands on the tasks of workers that are gone: unstarted
// reservations go back to pending at once, running tries are relaunched
// (or failed for good when that was the last try).
func (j *JobSQL) RecoverWorkers(ctx context.Context, q Querier, workers []string, reason string) (released int64, relaunched, failed []any, err error) {
	if len(workers) == 0 {
		return 0, nil, nil, nil
	}
	if released, err = j.HandBack(ctx, q, workers...); err != nil {
		return 0, nil, nil, err
	}
	cond := fmt.Sprintf("%s IN (%s)", j.reservationID, placeholders(len(workers)))
	relaunched, failed, err = j.recoverRunning(ctx, q, cond, reason, toAny(workers)...)
	return released, relaunched, failed, err
}

// RecoverExpired relaunches tries running longer than maxRun.
func (j *JobSQL) RecoverExpired(ctx context.Context, q Querier, maxRun time.Duration, reason string) (relaunched, failed []any, err error) {
	cond := fmt.Sprintf("%s < %s", j.startTime, j.s.Dialect.Ago())
	return j.recoverRunning(ctx, q, cond, reason, j.s.Dialect.AgoArg(maxRun))
}

// RelaunchKeys resets finished (or never reserved) rows to pending so they
// run again; rows still reserved or running are left alone. A succeeded
// row, or one failed for good, starts a new cycle of tries (kept at its
// count, a row failed for good would be neither pending nor failed:
// stranded); a row failed with tries left keeps its count.
func (j *JobSQL) RelaunchKeys(ctx context.Context, q Querier, keys []any) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	query := fmt.Sprintf(`UPDATE %[1]s SET %[2]s = CASE WHEN %[3]s = TRUE OR COALESCE(%[2]s, 0) >= ? THEN 0 ELSE %[2]s END, %[4]s
		WHERE %[5]s IN (%[6]s) AND (%[7]s IS NULL OR %[8]s IS NOT NULL) RETURNING %[5]s`,
		j.t, j.reservationTimes, j.success, j.reset, j.pk, placeholders(len(keys)), j.reservationID, j.endTime)
	return j.s.queryKeys(ctx, q, j.s.q(query), append([]any{j.spec.MaxTryTimes}, keys...)...)
}

// Queued reports whether worker has a reserved, unstarted row: a read,
// cheap on the in-flight index.
func (j *JobSQL) Queued(ctx context.Context, q Querier, worker string) (bool, error) {
	query := j.s.q(fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %s WHERE %s = ? AND %s IS NULL AND %s IS NULL LIMIT 1) q`,
		j.t, j.reservationID, j.startTime, j.endTime))
	var n int
	err := j.s.queryRow(ctx, q, query, worker).Scan(&n)
	return n > 0, err
}

// QueueLengths counts each worker's reserved, unstarted rows.
func (j *JobSQL) QueueLengths(ctx context.Context, q Querier) (map[string]int, error) {
	return j.countByWorker(ctx, q, j.occupied)
}

// Held counts each worker's reserved or running rows, through the
// in-flight index.
func (j *JobSQL) Held(ctx context.Context, q Querier) (map[string]int, error) {
	return j.countByWorker(ctx, q, j.s.q(fmt.Sprintf(`SELECT %[2]s, COUNT(*) FROM %[1]s WHERE %[2]s IS NOT NULL AND %[3]s IS NULL GROUP BY %[2]s`,
		j.t, j.reservationID, j.endTime)))
}

// countByWorker reads (worker, count) rows.
func (j *JobSQL) countByWorker(ctx context.Context, q Querier, query string) (map[string]int, error) {
	rows, err := j.s.query(ctx, q, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// InFlightWorkers lists the workers holding reserved or running rows.
func (j *JobSQL) InFlightWorkers(ctx context.Context, q Querier) ([]string, error) {
	rows, err := j.s.query(ctx, q, j.inflight)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// CountPending counts pending rows, stopping at limit so a large backlog
// costs no more than a small one.
func (j *JobSQL) CountPending(ctx context.Context, q Querier, limit int) (int, error) {
	var n int
	err := j.s.queryRow(ctx, q, j.countPending, j.s.planEach(j.spec.MaxTryTimes, limit)...).Scan(&n)
	return n, err
}

// KeysFromQuery runs a user's selecting or relaunching query and returns
// the primary key column of each row.
func (j *JobSQL) KeysFromQuery(ctx context.Context, q Querier, query string, named map[string]any) ([]any, error) {
	rows, err := q.QueryContext(ctx, query, j.s.Dialect.NamedArgs(named)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	idx := -1
	for i, c := range cols {
		if strings.EqualFold(c, j.spec.PrimaryKey) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("the query returns no %q column (the primary key); columns: %s", j.spec.PrimaryKey, strings.Join(cols, ", "))
	}
	var keys []any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		keys = append(keys, normalizeKey(vals[idx]))
	}
	return keys, rows.Err()
}

func (s *Store) queryKeys(ctx context.Context, q Querier, query string, args ...any) ([]any, error) {
	rows, err := s.query(ctx, q, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []any
	for rows.Next() {
		var k any
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, normalizeKey(k))
	}
	return keys, rows.Err()
}

// normalizeKey copies driver-owned bytes so keys outlive their rows.
func normalizeKey(k any) any {
	if b, ok := k.([]byte); ok {
		return string(b)
	}
	return k
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// Scalar runs a user's query that returns one value (a count or a
// boolean), binding named parameters.
func (s *Store) Scalar(ctx context.Context, q Querier, query string, named map[string]any, dest any) error {
	err := q.QueryRowContext(ctx, query, s.Dialect.NamedArgs(named)...).Scan(dest)
	if err == sql.ErrNoRows {
		return fmt.Errorf("the query returned no row")
	}
	return err
}
