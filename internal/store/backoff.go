package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Backoff is how long a failed try waits before its task runs again.
// Without Max, every try waits Base. With Max, the wait doubles with each
// try: after try n, min(Max, Base * 2^(n-1)).
type Backoff struct {
	Base, Max time.Duration
}

// Jitter is the spread of an exponential backoff written as a run-at:
// each wait is drawn uniformly in [1-Jitter, 1+Jitter] times Delay, so
// that tasks failed together do not all come back together.
const Jitter = 0.2

// Delay is the wait after try n (1 for the first), without jitter.
func (b Backoff) Delay(try int) time.Duration {
	if b.Max <= 0 {
		return b.Base
	}
	d := b.Base
	for i := 1; i < try && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// delaySQL is the wait in seconds after the row's last try: a CASE on its
// try count, up to the first try that reaches Max, and its arguments.
func (j *JobSQL) delaySQL(b Backoff) (string, []any) {
	f := j.s.Dialect.Cast("float8")
	if b.Max <= 0 {
		return "?" + f, []any{b.Base.Seconds()}
	}
	var sb strings.Builder
	var args []any
	sb.WriteString("(CASE COALESCE(" + j.reservationTimes + ", 0)")
	try := 1
	for ; b.Delay(try) < b.Max && try < j.spec.MaxTryTimes; try++ {
		fmt.Fprintf(&sb, " WHEN %d THEN ?%s", try, f)
		args = append(args, b.Delay(try).Seconds())
	}
	sb.WriteString(" ELSE ?" + f + " END)")
	return sb.String(), append(args, b.Delay(try).Seconds())
}

// RelaunchFailed returns failed tries that have tries left to pending.
// Without a run-at column, those whose backoff has passed since they
// ended. With one, all of them at once, with their run-at set to their
// end plus the backoff (jittered, when exponential): pending but
// scheduled, they are due when the backoff ends.
func (j *JobSQL) RelaunchFailed(ctx context.Context, q Querier, b Backoff) ([]any, error) {
	d := j.s.Dialect
	failed := j.retryPredicate() + " AND " + j.endTime + " IS NOT NULL"
	if j.runAt == "" && b.Max <= 0 {
		query := fmt.Sprintf(`UPDATE %s SET %s WHERE %s AND %s < %s RETURNING %s`, j.retryFrom, j.reset, failed, j.endTime, d.Ago(), j.pk)
		return j.s.queryKeys(ctx, q, j.s.q(query), d.AgoArg(b.Base))
	}
	delay, args := j.delaySQL(b)
	if j.runAt == "" {
		query := fmt.Sprintf(`UPDATE %s SET %s WHERE %s AND %s <= %s RETURNING %s`, j.retryFrom, j.reset, failed, d.Later(j.endTime, delay), d.Now(), j.pk)
		return j.s.queryKeys(ctx, q, j.s.q(query), args...)
	}
	if b.Max > 0 {
		delay = fmt.Sprintf("%s * (%v + %v * %s)", delay, 1-Jitter, 2*Jitter, d.Random())
	}
	query := fmt.Sprintf(`UPDATE %s SET %s, %s = %s WHERE %s RETURNING %s`, j.retryFrom, j.reset, j.runAt, d.Later(j.endTime, delay), failed, j.pk)
	return j.s.queryKeys(ctx, q, j.s.q(query), args...)
}

// retryPredicate is the failed tries with tries left, the retry index's
// predicate and the relaunch's condition, written alike. max_try_times is
// a literal in it, not a bound value (it is a validated integer of the
// job's definition): a planner uses a partial index only for a query
// whose condition it can prove implies the index's, which it cannot do
// through a parameter. The try count is compared bare: a failed try has
// always counted its start.
func (j *JobSQL) retryPredicate() string {
	return fmt.Sprintf("%s = FALSE AND %s < %d", j.success, j.reservationTimes, j.spec.MaxTryTimes)
}

// retryIndex is the suffix of the retry index's name: it holds
// max_try_times, so that a job whose max_try_times changes gets an index
// of its own (setup makes it) rather than one whose rows no longer match.
func (j *JobSQL) retryIndex() string { return fmt.Sprintf("_retry%d", j.spec.MaxTryTimes) }
