package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// Rate is at most N hand-outs in any window of Per; the zero Rate is none.
type Rate struct {
	N   int
	Per time.Duration
}

// Set reports whether the rate limits anything.
func (r Rate) Set() bool { return r.N > 0 && r.Per > 0 }

// spacing is the pace: one hand-out every Per/N.
func (r Rate) spacing() time.Duration { return r.Per / time.Duration(r.N) }

// String writes the rate as the config does ("60/1m0s").
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }

// Limits are a job's caps on its tasks, enforced where they are handed
// out (ReserveLimited); docs/limits.md gives the rules.
type Limits struct {
	MaxRunning         int // tries reserved or running at once; 0: no cap
	Rate               Rate
	GroupBy            string // column of the task's group; "" for none
	MaxRunningPerGroup int
	RatePerGroup       Rate
}

// Any reports whether the job has a limit or groups.
func (l Limits) Any() bool {
	return l.MaxRunning > 0 || l.Rate.Set() || l.GroupBy != "" || l.MaxRunningPerGroup > 0 || l.RatePerGroup.Set()
}

// GroupCursor is where the fair share across groups resumes: the group
// served last. The dispatcher keeps one per job, in memory; a new leader
// starts from the first group.
type GroupCursor struct {
	last  any
	valid bool
}

// Limited is what one ReserveLimited did.
type Limited struct {
	// Keys are the keys each share got, in the order of the shares.
	Keys [][]any
	// HeldBack counts the free slots left empty while tasks were pending,
	// because a limit held them back; Reason says which.
	HeldBack int
	Reason   string
	// Wake, when positive, is when a rate limit next makes room for a
	// task held back: the dispatcher runs a round then.
	Wake time.Duration
}

// maxGroupScan bounds the groups one round walks to find some that may
// start a task, so that a round costs the same with ten thousand groups
// held back as with one.
const maxGroupScan = 2000

// ReserveLimited reserves pending rows into the shares (the free slots of
// the job's workers) as far as the job's limits allow, within tx:
//
//   - it takes the job's row in pampa_limits first, so that the
//     reservations of two dispatchers (an old leader not yet aware it lost
//     the lease) are counted one after the other, never side by side;
//   - max_running counts the rows reserved or running (not ended): a try
//     starts only from a reservation, so what runs never exceeds it;
//   - rate_limit counts the hand-outs of the last interval in
//     pampa_starts, paced one per Per/N, a tenth of N at most after a
//     quiet spell, and never N in any window;
//   - with group_by, groups with pending rows are walked from the one
//     after cur's and served a row each in turn (as the per-group limits
//     allow) until the shares are full, so that no group starves another.
//
// The job's row also records how many free slots the limits left empty,
// and why, for the report.
func (j *JobSQL) ReserveLimited(ctx context.Context, tx Querier, job string, shares []Share, cur *GroupCursor) (Limited, error) {
	l := j.spec.Limits
	out := Limited{Keys: make([][]any, len(shares))}
	total := 0
	for _, sh := range shares {
		total += sh.N
	}
	if total == 0 {
		return out, nil
	}
	d := j.s.Dialect
	if _, err := j.s.exec(ctx, tx, j.s.q(`INSERT INTO pampa_limits (job, locked_at) VALUES (?, `+d.Now()+`)
		ON CONFLICT (job) DO UPDATE SET locked_at = excluded.locked_at`), job); err != nil {
		return out, fmt.Errorf("lock the limits: %w", err)
	}
	st, err := j.limitState(ctx, tx, job)
	if err != nil {
		return out, err
	}
	room, why := total, ""
	if l.MaxRunning > 0 && l.MaxRunning-st.running < room {
		room, why = max(0, l.MaxRunning-st.running), fmt.Sprintf("max_running %d reached", l.MaxRunning)
	}
	if l.Rate.Set() {
		n, wait := st.job.allowance(l.Rate)
		if n < room {
			room, why = n, fmt.Sprintf("rate_limit %s: next start in %s", l.Rate, wait.Round(time.Millisecond))
			out.Wake = wait
		}
	}
	var got map[string]int // hand-outs by group scope
	if room > 0 && l.GroupBy != "" {
		var picked []groupRow
		picked, why, out.Wake, err = j.pickGroups(ctx, tx, job, st, room, cur, why, out.Wake)
		if err != nil {
			return out, err
		}
		got, err = j.reserveGroupRows(ctx, tx, shares, picked, out.Keys)
		if err == nil && j.spec.GroupsDone {
			err = j.markGroups(ctx, tx, job, picked, got)
		}
	} else if room > 0 {
		got, err = j.reservePlain(ctx, tx, shares, room, out.Keys)
	}
	if err != nil {
		return out, err
	}
	handed := 0
	for _, n := range got {
		handed += n
	}
	if err := j.recordStarts(ctx, tx, job, handed, got); err != nil {
		return out, err
	}
	if handed < total {
		left, err := j.CountPending(ctx, tx, total-handed)
		if err != nil {
			return out, fmt.Errorf("count pending: %w", err)
		}
		if out.HeldBack = left; left == 0 {
			why, out.Wake = "", 0
		}
	}
	if out.HeldBack == 0 || why == "" {
		// Only a limit holds tasks back; fewer handed out for want of
		// rows is not one.
		out.HeldBack, why = 0, ""
	}
	out.Reason = why
	if _, err := j.s.exec(ctx, tx, j.s.q(`UPDATE pampa_limits SET held_back = ?, reason = ?, noted_at = `+d.Now()+` WHERE job = ?`),
		out.HeldBack, why, job); err != nil {
		return out, fmt.Errorf("note the limits: %w", err)
	}
	return out, nil
}

// window is what pampa_starts holds of one scope's last interval.
type window struct {
	count                int
	newestAge, oldestAge time.Duration // since the newest and oldest hand-out
}

// allowance is how many hand-outs the rate lets go now, and when it lets
// the next one go if that is none.
func (w window) allowance(r Rate) (int, time.Duration) {
	if w.count >= r.N {
		return 0, max(time.Millisecond, r.Per-w.oldestAge)
	}
	if w.count == 0 {
		return max(1, r.N/10), 0
	}
	paced := int(w.newestAge / r.spacing())
	if paced == 0 {
		return 0, max(time.Millisecond, r.spacing()-w.newestAge)
	}
	return min(paced, r.N-w.count), 0
}

// limitState is what the limits count: the rows in flight, for the job
// and by group, and the windows of the rate limits.
type limitState struct {
	running int
	byGroup map[string]int // rows in flight by group scope
	job     window
	groups  map[string]window   // by group scope, of those read
	read    map[string]struct{} // the group scopes whose windows were read
}

// scopeOf names a group in pampa_starts and in maps: "=" and the value,
// or "null" for the rows whose group column is NULL.
func scopeOf(v any) string {
	if v == nil {
		return "null"
	}
	return "=" + fmt.Sprint(v)
}

func (j *JobSQL) limitState(ctx context.Context, tx Querier, job string) (limitState, error) {
	l, d := j.spec.Limits, j.s.Dialect
	st := limitState{byGroup: map[string]int{}, groups: map[string]window{}, read: map[string]struct{}{}}
	inflight := fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", j.reservationID, j.endTime)
	switch {
	case l.MaxRunningPerGroup > 0:
		rows, err := j.s.query(ctx, tx, j.s.q(fmt.Sprintf(`SELECT %s, COUNT(*) FROM %s WHERE %s GROUP BY %s`,
			j.groupCol(), j.t, inflight, j.groupCol())))
		if err != nil {
			return st, fmt.Errorf("count the groups' tasks in flight: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var g any
			var n int
			if err := rows.Scan(&g, &n); err != nil {
				return st, err
			}
			st.byGroup[scopeOf(normalizeKey(g))] = n
			st.running += n
		}
		if err := rows.Err(); err != nil {
			return st, err
		}
		rows.Close()
	case l.MaxRunning > 0:
		if err := j.s.queryRow(ctx, tx, j.s.q(fmt.Sprintf(`SELECT COUNT(*) FROM %s WHERE %s`, j.t, inflight))).Scan(&st.running); err != nil {
			return st, fmt.Errorf("count the tasks in flight: %w", err)
		}
	}
	if !l.Rate.Set() && !l.RatePerGroup.Set() {
		return st, nil
	}
	keep := max(l.Rate.Per, l.RatePerGroup.Per)
	if _, err := j.s.exec(ctx, tx, j.s.q(`DELETE FROM pampa_starts WHERE job = ? AND at < `+d.Ago()), job, d.AgoArg(keep)); err != nil {
		return st, fmt.Errorf("forget old hand-outs: %w", err)
	}
	if l.Rate.Set() {
		if err := j.readWindows(ctx, tx, job, "scope = ''", nil, l.Rate.Per, func(_ string, w window) { st.job = w }); err != nil {
			return st, err
		}
	}
	// The groups' windows are read as the walk reaches them (groupWindows).
	return st, nil
}

// readWindows reads the hand-outs of the last per in pampa_starts, by
// scope, of the scopes cond (with args) selects.
func (j *JobSQL) readWindows(ctx context.Context, tx Querier, job, cond string, args []any, per time.Duration, into func(scope string, w window)) error {
	d := j.s.Dialect
	// The ages of the newest and oldest hand-out, from MAX and MIN of
	// the times: two conversions a scope, not two a row.
	rows, err := j.s.query(ctx, tx, j.s.q(fmt.Sprintf(`SELECT scope, SUM(n), %s, %s FROM pampa_starts
		WHERE job = ? AND %s AND at > %s GROUP BY scope`, d.SecondsSince("MAX(at)"), d.SecondsSince("MIN(at)"), cond, d.Ago())),
		append(append([]any{job}, args...), d.AgoArg(per))...)
	if err != nil {
		return fmt.Errorf("read the hand-outs of the last %s: %w", per, err)
	}
	defer rows.Close()
	for rows.Next() {
		var scope string
		var n int
		var newest, oldest float64
		if err := rows.Scan(&scope, &n, &newest, &oldest); err != nil {
			return err
		}
		into(scope, window{count: n, newestAge: seconds(newest), oldestAge: seconds(oldest)})
	}
	return rows.Err()
}

// groupWindows reads, with rate_limit_per_group, the windows of the
// groups the walk reached that it has not read yet: a round reads the
// hand-outs of the groups it looks at, not of every group that started a
// task in the last interval.
func (j *JobSQL) groupWindows(ctx context.Context, tx Querier, job string, st limitState, scopes []string) error {
	per := j.spec.Limits.RatePerGroup.Per
	if !j.spec.Limits.RatePerGroup.Set() {
		return nil
	}
	var args []any
	for _, sc := range scopes {
		if _, ok := st.read[sc]; !ok {
			st.read[sc] = struct{}{}
			args = append(args, sc)
		}
	}
	if len(args) == 0 {
		return nil
	}
	return j.readWindows(ctx, tx, job, "scope IN ("+placeholders(len(args))+")", args, per, func(sc string, w window) { st.groups[sc] = w })
}

func seconds(s float64) time.Duration {
	return time.Duration(math.Max(0, s) * float64(time.Second))
}

// groupCol is the quoted group column.
func (j *JobSQL) groupCol() string { return Quote(j.spec.Limits.GroupBy) }

// groupRoom is how many more rows a group may be handed now, and when a
// rate makes room if none.
func (j *JobSQL) groupRoom(st limitState, scope string, room int) (n int, wait time.Duration, why string) {
	l := j.spec.Limits
	n = room
	if l.MaxRunningPerGroup > 0 {
		if free := l.MaxRunningPerGroup - st.byGroup[scope]; free < n {
			n, why = max(0, free), "max_running_per_group"
		}
	}
	if l.RatePerGroup.Set() {
		if a, w := st.groups[scope].allowance(l.RatePerGroup); a < n {
			n, wait, why = a, w, "rate_limit_per_group"
		}
	}
	return n, wait, why
}

// groupRow is a pending row picked for a group.
type groupRow struct {
	key   any
	scope string
	value any // the group's value
}

// pickGroups walks the groups with pending rows from the one after cur's,
// and picks up to room rows, a row per group in turn. It returns the
// reason (and wake-up) for what the groups' limits held back.
func (j *JobSQL) pickGroups(ctx context.Context, tx Querier, job string, st limitState, room int, cur *GroupCursor, why string, wake time.Duration) ([]groupRow, string, time.Duration, error) {
	type group struct {
		value any
		scope string
		room  int
	}
	// The walk and the picks read the groups index in its order. Every
	// plan that sorts instead reads all the pending rows of the range it
	// sorts, and PostgreSQL may take one: it multiplies the selectivities
	// of "not reserved" and "not started" as if independent, so on a table
	// with few pending rows it counts on one or two where there are
	// hundreds, and reading them all through the pending index and sorting
	// them looks as cheap as the index's first entry (seen at 20,000 rows,
	// 1% pending). Sorts off, for this transaction, leaves only the index.
	if q := j.s.Dialect.SortOff(); q != "" {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, why, wake, fmt.Errorf("plan the walk of the groups: %w", err)
		}
	}
	var open []group
	held := map[string]int{}
	// seen: the groups looked at this round. The walk is in the
	// database's order of the column (its collation, which Go need not
	// share): after wrapping, the first group seen again is where the
	// round began; a group is never taken twice, which would count its
	// room twice.
	seen := map[string]bool{}
	start := *cur
	after, wrapped := start, false
	for scanned := 0; len(open) < room && scanned < maxGroupScan; {
		ask := min(room*2+16, maxGroupScan-scanned)
		vals, err := j.groupsAfter(ctx, tx, after, ask)
		if err != nil {
			return nil, why, wake, fmt.Errorf("list the groups with pending tasks: %w", err)
		}
		scanned += len(vals)
		scopes := make([]string, len(vals))
		for i, v := range vals {
			scopes[i] = scopeOf(v)
		}
		if err := j.groupWindows(ctx, tx, job, st, scopes); err != nil {
			return nil, why, wake, err
		}
		stop := false
		for _, v := range vals {
			scope := scopeOf(v)
			if seen[scope] {
				stop = true // back where this round began
				break
			}
			seen[scope] = true
			n, w, reason := j.groupRoom(st, scope, room)
			if n == 0 {
				held[reason]++
				if w > 0 && (wake == 0 || w < wake) {
					wake = w
				}
				continue
			}
			open = append(open, group{v, scope, n})
			if len(open) == room {
				break
			}
		}
		if stop || len(open) == room {
			break
		}
		if len(vals) == ask {
			after = GroupCursor{last: vals[len(vals)-1], valid: true}
			continue
		}
		// The end of the groups: the NULL group, then from the first group
		// again, once.
		if !seen["null"] {
			seen["null"] = true
			ok, err := j.nullGroupPending(ctx, tx)
			if err == nil && ok {
				err = j.groupWindows(ctx, tx, job, st, []string{"null"})
			}
			if err != nil {
				return nil, why, wake, err
			}
			if n, w, reason := j.groupRoom(st, "null", room); ok && n > 0 {
				open = append(open, group{nil, "null", n})
			} else if ok {
				held[reason]++
				if w > 0 && (wake == 0 || w < wake) {
					wake = w
				}
			}
		}
		if wrapped || !start.valid {
			break
		}
		wrapped, after = true, GroupCursor{}
	}
	if len(open) == 0 {
		return nil, heldReason(held, why), wake, nil
	}
	// Fetch what each open group may be handed: one row each when there
	// are as many groups as room, else up to its room.
	per := make([]int, len(open))
	for i, g := range open {
		per[i] = min(g.room, room)
		if len(open) >= room {
			per[i] = 1
		}
	}
	avail := make([][]any, len(open))
	const chunk = 50
	for lo := 0; lo < len(open); lo += chunk {
		hi := min(lo+chunk, len(open))
		var parts []string
		var args []any
		for i := lo; i < hi; i++ {
			cond := j.groupCol() + " = ?"
			if open[i].value == nil {
				cond = j.groupCol() + " IS NULL"
			} else {
				args = append(args, open[i].value)
			}
			parts = append(parts, fmt.Sprintf(`SELECT * FROM (SELECT %[1]s, %[2]d FROM %[3]s WHERE %[4]s AND %[5]s ORDER BY %[1]s LIMIT %[6]d) g%[2]d`,
				j.pk, i, j.t, cond, j.pending, per[i]))
			args = append(args, j.spec.MaxTryTimes)
		}
		rows, err := j.s.query(ctx, tx, j.s.q(strings.Join(parts, " UNION ALL ")), args...)
		if err != nil {
			return nil, why, wake, fmt.Errorf("pick the groups' pending tasks: %w", err)
		}
		for rows.Next() {
			var k any
			var i int
			if err := rows.Scan(&k, &i); err != nil {
				rows.Close()
				return nil, why, wake, err
			}
			avail[i] = append(avail[i], normalizeKey(k))
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, why, wake, err
		}
	}
	// A row per group in turn until room is used.
	var picked []groupRow
	given := make([]int, len(open))
	for level := 0; len(picked) < room; level++ {
		more := false
		for i := range open {
			if level < len(avail[i]) && len(picked) < room {
				picked = append(picked, groupRow{avail[i][level], open[i].scope, open[i].value})
				given[i]++
				*cur = GroupCursor{last: open[i].value, valid: open[i].value != nil}
				more = true
			}
		}
		if !more {
			break
		}
	}
	// A group handed all its limit allows is held back from here on.
	for i, g := range open {
		if _, _, reason := j.groupRoom(st, g.scope, room); reason != "" && given[i] == g.room {
			held[reason]++
		}
	}
	return picked, heldReason(held, why), wake, nil
}

// heldReason adds to why the count of groups each per-group limit holds
// back.
func heldReason(held map[string]int, why string) string {
	parts := []string{}
	for _, reason := range []string{"max_running_per_group", "rate_limit_per_group"} {
		if held[reason] > 0 {
			parts = append(parts, fmt.Sprintf("%d groups at %s", held[reason], reason))
		}
	}
	if why != "" {
		parts = append(parts, why)
	}
	return strings.Join(parts, "; ")
}

// groupsAfter lists up to n group values that have pending rows, in
// order, after cur's (from the first without one): a walk of the groups
// index that reads one entry per group (a "loose index scan").
//
// Each step is "ORDER BY … LIMIT 1", not MIN(): PostgreSQL turns a MIN()
// into a probe of the index's first entry only when it judges that
// cheaper, and for the walk's first step it chose to aggregate every
// pending row after the cursor instead (from the first group: all
// pending rows, 100,000 of a 10,000,000-row table 1% pending). A LIMIT 1
// over the index order reads one entry whatever the estimates.
func (j *JobSQL) groupsAfter(ctx context.Context, tx Querier, cur GroupCursor, n int) ([]any, error) {
	g := j.groupCol()
	first := fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[1]s IS NOT NULL AND %[3]s ORDER BY %[1]s LIMIT 1`, g, j.t, j.pending)
	args := []any{j.spec.MaxTryTimes}
	if cur.valid {
		first = fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[1]s > ? AND %[3]s ORDER BY %[1]s LIMIT 1`, g, j.t, j.pending)
		args = []any{cur.last, j.spec.MaxTryTimes}
	}
	query := fmt.Sprintf(`WITH RECURSIVE walk (v, depth) AS (
			SELECT (%[1]s), 1
			UNION ALL
			SELECT (SELECT %[2]s FROM %[3]s WHERE %[2]s > walk.v AND %[4]s ORDER BY %[2]s LIMIT 1), depth + 1 FROM walk WHERE walk.v IS NOT NULL AND depth < ?
		) SELECT v FROM walk WHERE v IS NOT NULL`, first, g, j.t, j.pending)
	rows, err := j.s.query(ctx, tx, j.s.q(query), append(args, j.spec.MaxTryTimes, n)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []any
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, normalizeKey(v))
	}
	return out, rows.Err()
}

// nullGroupPending reports whether a pending row has no group value.
func (j *JobSQL) nullGroupPending(ctx context.Context, tx Querier) (bool, error) {
	var n int
	err := j.s.queryRow(ctx, tx, j.s.q(fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %s WHERE %s IS NULL AND %s LIMIT 1) x`,
		j.t, j.groupCol(), j.pending)), j.spec.MaxTryTimes).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look for pending tasks without a group: %w", err)
	}
	return n > 0, nil
}

// reservePlain reserves up to room rows over the shares, in order, for a
// job without groups.
func (j *JobSQL) reservePlain(ctx context.Context, tx Querier, shares []Share, room int, keys [][]any) (map[string]int, error) {
	trimmed := make([]Share, len(shares))
	left := room
	for i, sh := range shares {
		trimmed[i] = Share{Worker: sh.Worker, N: min(sh.N, left)}
		left -= trimmed[i].N
	}
	got, err := j.ReserveShares(ctx, tx, trimmed)
	if err != nil {
		return nil, fmt.Errorf("reserve: %w", err)
	}
	n := 0
	for i := range got {
		keys[i] = got[i]
		n += len(got[i])
	}
	return map[string]int{"": n}, nil
}

// reserveGroupRows reserves the picked rows, filling the shares in order,
// and counts the rows each group was handed.
func (j *JobSQL) reserveGroupRows(ctx context.Context, tx Querier, shares []Share, picked []groupRow, keys [][]any) (map[string]int, error) {
	scope := make(map[any]string, len(picked))
	for _, r := range picked {
		scope[r.key] = r.scope
	}
	got := map[string]int{}
	for i, sh := range shares {
		n := min(sh.N, len(picked))
		if n == 0 {
			break
		}
		batch := make([]any, n)
		for k := range batch {
			batch[k] = picked[k].key
		}
		picked = picked[n:]
		done, err := j.ReserveKeys(ctx, tx, sh.Worker, batch)
		if err != nil {
			return nil, fmt.Errorf("reserve for %s: %w", sh.Worker, err)
		}
		keys[i] = done
		for _, k := range done {
			got[scope[k]]++
		}
	}
	return got, nil
}

// recordStarts adds this round's hand-outs to the rate limits' windows:
// a row for the job, and one per group, each with its count.
func (j *JobSQL) recordStarts(ctx context.Context, tx Querier, job string, handed int, byScope map[string]int) error {
	l := j.spec.Limits
	type start struct {
		scope string
		n     int
	}
	var starts []start
	if l.Rate.Set() && handed > 0 {
		starts = append(starts, start{"", handed})
	}
	if l.RatePerGroup.Set() {
		for scope, n := range byScope {
			if n > 0 && scope != "" {
				starts = append(starts, start{scope, n})
			}
		}
	}
	for lo := 0; lo < len(starts); lo += 100 {
		batch := starts[lo:min(lo+100, len(starts))]
		values := make([]string, len(batch))
		args := make([]any, 0, 3*len(batch))
		for i, st := range batch {
			values[i] = "(?, ?, " + j.s.Dialect.Now() + ", ?)"
			args = append(args, job, st.scope, st.n)
		}
		if _, err := j.s.exec(ctx, tx, j.s.q(`INSERT INTO pampa_starts (job, scope, at, n) VALUES `+strings.Join(values, ", ")), args...); err != nil {
			return fmt.Errorf("record the hand-outs: %w", err)
		}
	}
	return nil
}

// LimitNote is what the last limited reservation of a job noted.
type LimitNote struct {
	HeldBack int
	Reason   string
}

// noteFresh is how long a limit note stands: the leader notes a limited
// job at each round in which its workers have free slots, so an older
// note is from before they filled up (or from a dispatcher gone).
const noteFresh = 10 * time.Second

// LimitNotes reads what the limits held back in the leader's recent
// rounds, by job.
func (s *Store) LimitNotes(ctx context.Context) (map[string]LimitNote, error) {
	out := map[string]LimitNote{}
	err := s.retry(ctx, func(ctx context.Context) error {
		rows, err := s.DB.QueryContext(ctx, s.q(`SELECT job, held_back, reason FROM pampa_limits WHERE noted_at > `+s.Dialect.Ago()), s.Dialect.AgoArg(noteFresh))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var job string
			var n LimitNote
			if err := rows.Scan(&job, &n.HeldBack, &n.Reason); err != nil {
				return err
			}
			out[job] = n
		}
		return rows.Err()
	})
	return out, err
}
