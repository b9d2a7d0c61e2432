package store

import (
	"context"
	"fmt"
	"time"
)

// Reschedule sets the run-at of those of keys that are pending, scheduled
// or due (neither reserved nor started, no outcome), to the database's now
// plus in (a negative in makes them due at once), and returns their keys.
// Rows reserved, running or finished are left alone. Only for a job with a
// run-at column.
func (j *JobSQL) Reschedule(ctx context.Context, q Querier, in time.Duration, keys []any) ([]any, error) {
	if j.runAt == "" {
		return nil, fmt.Errorf("the job has no run-at column")
	}
	if len(keys) == 0 {
		return nil, nil
	}
	query := fmt.Sprintf(`UPDATE %s SET %s = %s WHERE %s IN (%s) AND %s AND %s IS NULL RETURNING %s`,
		j.t, j.runAt, j.s.Dialect.Ago(), j.pk, placeholders(len(keys)), j.pendingIndexPredicate(), j.success, j.pk)
	return j.s.queryKeys(ctx, q, j.s.q(query), append([]any{j.s.Dialect.AgoArg(-in)}, keys...)...)
}
