package store

import (
	"context"
	"fmt"
)

// FailedRow is a task that used all its tries.
type FailedRow struct {
	Key      any
	Worker   string
	Tries    int64
	Error    string
	EndedAgo float64 // seconds since the last try ended
}

// Failed lists up to limit rows failed for good, most recent first.
func (j *JobSQL) Failed(ctx context.Context, q Querier, limit int) ([]FailedRow, error) {
	query := j.s.q(fmt.Sprintf(`SELECT %[1]s, COALESCE(%[2]s, ''), COALESCE(%[3]s, 0), COALESCE(%[4]s, ''), %[5]s
		FROM %[6]s WHERE %[7]s = FALSE AND COALESCE(%[3]s, 0) >= ? ORDER BY %[8]s DESC LIMIT ?`,
		j.pk, j.reservationID, j.reservationTimes, j.errorDescription, j.s.Dialect.SecondsSince(j.endTime), j.t, j.success, j.endTime))
	rows, err := j.s.query(ctx, q, query, j.spec.MaxTryTimes, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FailedRow
	for rows.Next() {
		var f FailedRow
		var ago *float64
		if err := rows.Scan(&f.Key, &f.Worker, &f.Tries, &f.Error, &ago); err != nil {
			return nil, err
		}
		f.Key = normalizeKey(f.Key)
		if ago != nil {
			f.EndedAgo = *ago
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Redrive returns rows failed for good to pending with a fresh count of
// tries, keeping their last error description. With no keys it takes
// every failed row of the job. It returns the keys it reset.
func (j *JobSQL) Redrive(ctx context.Context, q Querier, keys []any) ([]any, error) {
	cond := ""
	if len(keys) > 0 {
		cond = fmt.Sprintf(" AND %s IN (%s)", j.pk, placeholders(len(keys)))
	}
	query := fmt.Sprintf(`UPDATE %s SET %s = 0, %s WHERE %s = FALSE AND COALESCE(%s, 0) >= ?%s RETURNING %s`,
		j.t, j.reservationTimes, j.reset, j.success, j.reservationTimes, cond, j.pk)
	return j.s.queryKeys(ctx, q, j.s.q(query), append([]any{j.spec.MaxTryTimes}, keys...)...)
}

// Discard fails for good the failed tries of keys that still have tries
// left (they would otherwise be relaunched): their try count is raised to
// MaxTryTimes, and the row is kept as it ended, error included. It returns
// the keys it discarded; rows running, pending or already failed for good
// are left alone.
func (j *JobSQL) Discard(ctx context.Context, q Querier, keys []any) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	query := fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s = FALSE AND %s IS NOT NULL AND COALESCE(%s, 0) < ? AND %s IN (%s) RETURNING %s`,
		j.t, j.reservationTimes, j.success, j.endTime, j.reservationTimes, j.pk, placeholders(len(keys)), j.pk)
	args := append([]any{j.spec.MaxTryTimes, j.spec.MaxTryTimes}, keys...)
	return j.s.queryKeys(ctx, q, j.s.q(query), args...)
}
