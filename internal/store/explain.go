package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Plan is the query plan of one of a job's hot statements.
type Plan struct {
	Name  string
	SQL   string
	Lines []string // as the engine prints it; SQLite's tree indented
	// ScansTable is true when the plan reads the whole job table: a
	// sequential scan (SQLite: SCAN of the table), or a walk of an index
	// other than the partial ones of `pampa setup` (Indexes) with no
	// condition on it.
	ScansTable bool
	Indexes    []string      // indexes the plan reads, in order
	Execution  time.Duration // PostgreSQL: the EXPLAIN ANALYZE execution time
	JIT        bool          // PostgreSQL: the statement was JIT-compiled
}

// Explain returns the plans of the job's hot statements, each run through
// the method that runs it for real, with realistic arguments: the pending
// count; shares of 5 rows reserved for 10 workers, worker first; queue
// lengths and in-flight workers; worker's claim of 5; the batched finish
// of 5 of worker's rows with one user column set; and recovery (expired
// tries, failed tries, then the other share workers' rows, as if they
// died). On PostgreSQL each statement runs under EXPLAIN (ANALYZE,
// BUFFERS), so it really executes, in one transaction that is rolled back;
// its lines are those of COSTS OFF, plus the JIT section that COSTS OFF
// would hide. On SQLite it is EXPLAIN QUERY PLAN, which runs nothing.
func (j *JobSQL) Explain(ctx context.Context, worker string) ([]Plan, error) {
	if err := j.LoadColumnTypes(ctx); err != nil {
		return nil, err
	}
	tx, err := j.s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	for _, set := range j.explainSettings {
		if _, err := tx.ExecContext(ctx, set); err != nil {
			return nil, err
		}
	}
	e := &explainer{j: j, tx: tx}
	shares := []Share{{worker, 5}}
	for i := 2; i <= 10; i++ {
		shares = append(shares, Share{fmt.Sprintf("%s-%d", worker, i), 5})
	}
	var gone []string
	for _, sh := range shares[1:] {
		gone = append(gone, sh.Worker)
	}
	steps := []struct {
		names []string
		run   func() error
	}{
		{[]string{"count_pending"}, func() error { _, err := j.CountPending(ctx, e, 50); return err }},
		{[]string{"reserve_shares"}, func() error { _, err := j.ReserveShares(ctx, e, shares); return err }},
		{[]string{"queue_lengths"}, func() error { _, err := j.QueueLengths(ctx, e); return err }},
		{[]string{"inflight_workers"}, func() error { _, err := j.InFlightWorkers(ctx, e); return err }},
		{[]string{"claim"}, func() error { _, err := j.Claim(ctx, e, worker, 5); return err }},
		{[]string{"finish_many"}, func() error {
			fs, outs, err := j.explainFinish(ctx, tx, worker)
			if err == nil {
				_, err = j.FinishMany(ctx, e, fs, outs)
			}
			return err
		}},
		{[]string{"recover_expired.relaunch", "recover_expired.fail"}, func() error {
			_, _, err := j.RecoverExpired(ctx, e, time.Minute, "explain")
			return err
		}},
		{[]string{"relaunch_failed"}, func() error { _, err := j.RelaunchFailed(ctx, e, Backoff{Base: time.Minute}); return err }},
		{[]string{"recover_workers.hand_back", "recover_workers.relaunch", "recover_workers.fail"}, func() error {
			_, _, _, err := j.RecoverWorkers(ctx, e, gone, "explain")
			return err
		}},
	}
	for _, st := range steps {
		from := len(e.plans)
		if err := st.run(); err != nil {
			return nil, fmt.Errorf("explain %s: %w", st.names[0], err)
		}
		if e.err != nil {
			return nil, fmt.Errorf("explain %s: %w", st.names[0], e.err)
		}
		for i := range e.plans[from:] {
			name := fmt.Sprintf("%s.%d", st.names[0], i+1)
			if len(e.plans)-from == len(st.names) {
				name = st.names[i]
			}
			e.plans[from+i].Name = name
		}
	}
	return e.plans, nil
}

// explainFinish makes the fences and outcomes of a batched finish of 5
// rows: worker's running ones (on PostgreSQL the claim just started some),
// topped up with the first keys of the table; each sets the first user
// column to the value it holds.
func (j *JobSQL) explainFinish(ctx context.Context, q Querier, worker string) ([]Fence, []Outcome, error) {
	cols, _, err := j.s.Dialect.Columns(ctx, q, j.spec.Table)
	if err != nil {
		return nil, nil, err
	}
	set, setExpr := "", "NULL"
	for _, c := range cols {
		switch c.Name {
		case j.spec.PrimaryKey, j.spec.ReservationID, j.spec.ReservationTime, j.spec.ReservationTimes, j.spec.StartTime, j.spec.EndTime, j.spec.Success, j.spec.ErrorDescription:
		default:
			if set == "" {
				set, setExpr = c.Name, Quote(c.Name)
			}
		}
	}
	sel := fmt.Sprintf("SELECT %s, COALESCE(%s, 0), %s FROM %s", j.pk, j.reservationTimes, setExpr, j.t)
	var fs []Fence
	var outs []Outcome
	seen := map[string]bool{}
	for _, query := range []struct {
		sql  string
		args []any
	}{
		{sel + fmt.Sprintf(" WHERE %s = ? AND %s IS NOT NULL AND %s IS NULL ORDER BY %s LIMIT 5", j.reservationID, j.startTime, j.endTime, j.pk), []any{worker}},
		{sel + fmt.Sprintf(" ORDER BY %s LIMIT 10", j.pk), nil},
	} {
		rows, err := q.QueryContext(ctx, j.s.q(query.sql), query.args...)
		if err != nil {
			return nil, nil, err
		}
		for len(fs) < 5 && rows.Next() {
			f, o := Fence{Worker: worker}, Outcome{Success: true}
			var v any
			if err := rows.Scan(&f.Key, &f.Try, &v); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if f.Key = normalizeKey(f.Key); seen[keyString(f.Key)] {
				continue
			}
			seen[keyString(f.Key)] = true
			if set != "" {
				o.Set = map[string]any{set: v}
			}
			fs, outs = append(fs, f), append(outs, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}
	return fs, outs, nil
}

// explainer is a Querier that explains each statement instead of running
// it (on PostgreSQL EXPLAIN ANALYZE runs it too, in tx) and answers as if
// it had touched no row.
type explainer struct {
	j     *JobSQL
	tx    *sql.Tx
	plans []Plan
	err   error // of a QueryRowContext, which cannot return it
}

func (e *explainer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := e.explain(ctx, query, args); err != nil {
		return nil, err
	}
	return driver.RowsAffected(0), nil
}

func (e *explainer) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := e.explain(ctx, query, args); err != nil {
		return nil, err
	}
	return e.tx.QueryContext(ctx, "SELECT 0 WHERE 1 = 0")
}

func (e *explainer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if err := e.explain(ctx, query, args); err != nil && e.err == nil {
		e.err = err
	}
	return e.tx.QueryRowContext(ctx, "SELECT 0")
}

func (e *explainer) explain(ctx context.Context, query string, args []any) error {
	pg := e.j.s.Dialect.ExplainAnalyze()
	prefix := "EXPLAIN QUERY PLAN "
	if pg {
		prefix = "EXPLAIN (ANALYZE, BUFFERS) " // costs cut below
	}
	rows, err := e.tx.QueryContext(ctx, prefix+query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	p := Plan{SQL: query}
	depth := map[int]int{}
	for rows.Next() {
		if pg {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			p.Lines = append(p.Lines, pgCosts.ReplaceAllString(line, ""))
			continue
		}
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return err
		}
		depth[id] = depth[parent] + 1
		p.Lines = append(p.Lines, strings.Repeat("  ", depth[id]-1)+detail)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if pg {
		e.j.readPostgresPlan(&p)
	} else {
		e.j.readSQLitePlan(&p)
	}
	e.plans = append(e.plans, p)
	return nil
}

var (
	pgScan   = regexp.MustCompile(`(Seq Scan|Index Scan|Index Only Scan|Index Scan Backward|Index Only Scan Backward) (?:using (\S+) )?on (\S+)`)
	pgBitmap = regexp.MustCompile(`Bitmap Index Scan on (\S+)`)
	pgExec   = regexp.MustCompile(`Execution Time: ([0-9.]+) ms`)
	pgCosts  = regexp.MustCompile(`  \(cost=[^)]*\)`)
)

func (j *JobSQL) readPostgresPlan(p *Plan) {
	for i, line := range p.Lines {
		p.JIT = p.JIT || line == "JIT:"
		if m := pgExec.FindStringSubmatch(line); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			p.Execution = time.Duration(ms * float64(time.Millisecond))
		}
		if m := pgBitmap.FindStringSubmatch(line); m != nil {
			p.Indexes = append(p.Indexes, unquote(m[1]))
		}
		m := pgScan.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		index := unquote(m[2])
		if index != "" {
			p.Indexes = append(p.Indexes, index)
		}
		if unquote(m[3]) != j.spec.Table.Name {
			continue
		}
		if index == "" {
			p.ScansTable = true
			continue
		}
		// A walk of an index that holds every row, with no condition
		// to start and stop it, reads the whole table.
		cond := false
		for _, l := range p.Lines[i+1:] {
			if strings.Contains(l, "->") {
				break
			}
			cond = cond || strings.Contains(l, "Index Cond:")
		}
		p.ScansTable = p.ScansTable || (!cond && !isSetupIndex(index))
	}
}

func (j *JobSQL) readSQLitePlan(p *Plan) {
	for _, line := range p.Lines {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "SCAN" && f[0] != "SEARCH") {
			continue
		}
		index := ""
		if i := slices.Index(f, "USING"); i > 0 {
			index = strings.Join(f[i+1:], " ")
			if k := strings.Index(index, "INDEX "); k >= 0 {
				index = index[k+len("INDEX "):]
			}
			index, _, _ = strings.Cut(index, " (") // SEARCH's condition
			p.Indexes = append(p.Indexes, index)   // or (INTEGER) PRIMARY KEY
		}
		// The batched finish names the table r (see finishManySQL).
		if f[0] == "SCAN" && (f[1] == j.spec.Table.Name || f[1] == "r") && !isSetupIndex(index) {
			p.ScansTable = true
		}
	}
}

// isSetupIndex reports whether name is one of the partial indexes that
// Indexes makes, which hold only the rows hot statements look for.
func isSetupIndex(name string) bool {
	for _, s := range []string{"_pending", "_inflight", "_failed", "_created", "_groups"} {
		if strings.HasPrefix(name, "pampa_") && strings.HasSuffix(name, s) {
			return true
		}
	}
	return strings.HasPrefix(name, "pampa_") && retryIndexName.MatchString(name)
}

// retryIndexName matches the name of a retry index, which ends in its
// max_try_times.
var retryIndexName = regexp.MustCompile(`_retry[0-9]+$`)

func unquote(s string) string {
	return strings.ReplaceAll(strings.Trim(s, `"`), `""`, `"`)
}

// ExplainLimited returns the plans of a limited job's reservation
// (ReserveLimited) into shares, from the first group, and then of the
// walk of the groups from the last group it served, as the next round
// would start. Unlike Explain, the reservation really runs, so that each
// statement sees what the ones before it returned (the groups walked, the
// rows picked), in a transaction rolled back at the end: each statement
// is explained first, with its real arguments (on PostgreSQL EXPLAIN
// ANALYZE inside a savepoint rolled back at once, so that it takes effect
// once), then run. The plans are named limits.<statement> (see
// limitedStatements); what the reservation did is returned too.
func (j *JobSQL) ExplainLimited(ctx context.Context, job string, shares []Share) ([]Plan, Limited, error) {
	if err := j.LoadColumnTypes(ctx); err != nil {
		return nil, Limited{}, err
	}
	tx, err := j.s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, Limited{}, err
	}
	defer tx.Rollback()
	t := &tee{explainer{j: j, tx: tx}}
	var cur GroupCursor
	out, err := j.ReserveLimited(ctx, t, job, shares, &cur)
	if err == nil && t.err == nil && cur.valid {
		_, err = j.groupsAfter(ctx, t, cur, 2*handed(out)+16)
	}
	if err == nil {
		err = t.err
	}
	if err != nil {
		return nil, out, fmt.Errorf("explain the limited reservation: %w", err)
	}
	seen := map[string]int{}
	for i := range t.plans {
		name := limitedStatementName(t.plans[i].SQL, cur.valid && i == len(t.plans)-1)
		if seen[name]++; seen[name] > 1 {
			name += "." + strconv.Itoa(seen[name])
		}
		t.plans[i].Name = name
	}
	return t.plans, out, nil
}

// handed counts the keys a limited reservation handed out.
func handed(out Limited) int {
	n := 0
	for _, k := range out.Keys {
		n += len(k)
	}
	return n
}

// limitedStatements names the statements of ReserveLimited by a piece of
// their SQL, the first that matches.
var limitedStatements = []struct{ has, name string }{
	{"INSERT INTO pampa_limits", "lock"},
	{"UPDATE pampa_limits", "note"},
	{"DELETE FROM pampa_starts", "forget_starts"},
	{"INSERT INTO pampa_starts", "record_starts"},
	{"scope = ''", "window_job"},
	{"scope IN (", "window_groups"},
	{"WITH RECURSIVE walk", "walk_groups"},
	{"SELECT * FROM (SELECT", "pick_rows"},
	{"GROUP BY", "inflight_by_group"},
	{"LIMIT 1) x", "null_group"},
	{"WITH picked AS MATERIALIZED", "reserve_shares"},
	{"RETURNING", "reserve_keys"},
	{"SELECT COUNT(*) FROM (SELECT 1 FROM", "count_pending"},
	{"COUNT(*)", "inflight"},
}

// limitedStatementName names one statement of ExplainLimited; next marks
// the walk from the last group served.
func limitedStatementName(sql string, next bool) string {
	if next {
		return "limits.walk_groups_next"
	}
	for _, s := range limitedStatements {
		if strings.Contains(sql, s.has) {
			return "limits." + s.name
		}
	}
	return "limits.other"
}

// tee explains each statement, then runs it in the transaction.
type tee struct{ explainer }

func (t *tee) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if strings.HasPrefix(query, "SET ") { // a setting, not a statement to explain
		return t.tx.ExecContext(ctx, query, args...)
	}
	if err := t.explainOnce(ctx, query, args); err != nil {
		return nil, err
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t *tee) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := t.explainOnce(ctx, query, args); err != nil {
		return nil, err
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *tee) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if err := t.explainOnce(ctx, query, args); err != nil && t.err == nil {
		t.err = err
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// explainOnce explains a statement; where EXPLAIN runs it (ANALYZE), its
// effects are undone at once, so that the run that follows is the only
// one that counts.
func (t *tee) explainOnce(ctx context.Context, query string, args []any) error {
	if !t.j.s.Dialect.ExplainAnalyze() {
		return t.explain(ctx, query, args)
	}
	if _, err := t.tx.ExecContext(ctx, "SAVEPOINT pampa_explain"); err != nil {
		return err
	}
	err := t.explain(ctx, query, args)
	if _, rerr := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT pampa_explain"); rerr != nil && err == nil {
		err = rerr
	}
	if _, rerr := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT pampa_explain"); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
