package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// CancelReason is the error description of a task an operator cancelled.
const CancelReason = "cancelled by an operator"

// CancelledTry names a task an operator cancelled while a worker ran it:
// a row of pampa_cancels, which that worker reads at its heartbeats.
type CancelledTry struct {
	Job    string
	Task   string // the key as text (KeyText)
	Worker string
}

// KeyText is a task key as pampa_cancels holds it, and as a worker
// matches its tries against it: the same key read from the same column
// gives the same text.
func KeyText(k any) string { return fmt.Sprint(normalizeKey(k)) }

// Cancel fails for good the tasks of keys that are not done: pending (a
// failed try with tries left included), reserved or running. Their try
// count is raised to MaxTryTimes, their end (and start, if unset, so that
// a reservation cannot be claimed) set to now, their error to
// CancelReason. For each running try it records a row of pampa_cancels
// under job, for its worker to cancel the try's context; the try's later
// result is dropped by the fence (its end is set). Rows that succeeded or
// already failed for good are left alone. It returns the keys cancelled.
// Run it in a transaction, so that the rows and their cancel rows go
// together.
func (j *JobSQL) Cancel(ctx context.Context, q Querier, job string, keys []any) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	in := fmt.Sprintf("%s IN (%s)", j.pk, placeholders(len(keys)))
	// Lock the rows first (PostgreSQL): a claim or a finish committed
	// between the two updates below would move a row out of both.
	lock := fmt.Sprintf(`SELECT %s FROM %s WHERE %s%s`, j.pk, j.t, in, j.s.Dialect.LockRows())
	if _, err := j.s.queryKeys(ctx, q, j.s.q(lock), keys...); err != nil {
		return nil, err
	}
	now := j.s.Dialect.Now()
	fail := fmt.Sprintf(`%[1]s = FALSE, %[2]s = %[3]s, %[4]s = ?, %[5]s = CASE WHEN COALESCE(%[5]s, 0) < ? THEN ? ELSE %[5]s END`,
		j.success, j.endTime, now, j.errorDescription, j.reservationTimes)
	failArgs := append([]any{CancelReason, j.spec.MaxTryTimes, j.spec.MaxTryTimes}, keys...)
	running, err := j.cancelRunning(ctx, q, job, fail, in, failArgs)
	if err != nil {
		return nil, err
	}
	rest := fmt.Sprintf(`UPDATE %[1]s SET %[2]s, %[3]s = COALESCE(%[3]s, %[4]s) WHERE %[5]s AND (%[3]s IS NULL OR %[6]s IS NOT NULL)
		AND (%[7]s IS NULL OR (%[7]s = FALSE AND COALESCE(%[8]s, 0) < ?)) RETURNING %[9]s`,
		j.t, fail, j.startTime, now, in, j.endTime, j.success, j.reservationTimes, j.pk)
	others, err := j.s.queryKeys(ctx, q, j.s.q(rest), append(failArgs, j.spec.MaxTryTimes)...)
	if err != nil {
		return nil, err
	}
	return append(running, others...), nil
}

// cancelRunning fails the running tries among the keys (in, args) and
// records a cancel row for each, for its worker.
func (j *JobSQL) cancelRunning(ctx context.Context, q Querier, job, fail, in string, args []any) ([]any, error) {
	query := fmt.Sprintf(`UPDATE %s SET %s WHERE %s AND %s IS NOT NULL AND %s IS NOT NULL AND %s IS NULL RETURNING %s, %s`,
		j.t, fail, in, j.reservationID, j.startTime, j.endTime, j.pk, j.reservationID)
	rows, err := j.s.query(ctx, q, j.s.q(query), args...)
	if err != nil {
		return nil, err
	}
	var keys []any
	var tries []CancelledTry
	for rows.Next() {
		var k any
		var worker string
		if err := rows.Scan(&k, &worker); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, normalizeKey(k))
		tries = append(tries, CancelledTry{Job: job, Task: KeyText(k), Worker: worker})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	insert := j.s.q(`INSERT INTO pampa_cancels (worker, job, task, cancelled_at) VALUES (?, ?, ?, ` + j.s.Dialect.Now() + `)
		ON CONFLICT (worker, job, task) DO UPDATE SET cancelled_at = excluded.cancelled_at`)
	for _, c := range tries {
		if _, err := j.s.exec(ctx, q, insert, c.Worker, c.Job, c.Task); err != nil {
			return nil, fmt.Errorf("record the cancel of task %s for worker %s: %w", c.Task, c.Worker, err)
		}
	}
	return keys, nil
}

// FenceHolds reports whether the try f names is still the row's current
// one: reserved for its worker, started, not ended, at that try.
func (j *JobSQL) FenceHolds(ctx context.Context, q Querier, f Fence) (bool, error) {
	query := j.s.q(fmt.Sprintf(`SELECT COUNT(*) FROM %s WHERE %s = ? AND %s = ? AND %s = ? AND %s IS NOT NULL AND %s IS NULL`,
		j.t, j.pk, j.reservationID, j.reservationTimes, j.startTime, j.endTime))
	var n int
	err := j.s.queryRow(ctx, q, query, f.Key, f.Worker, f.Try).Scan(&n)
	return n > 0, err
}

// Cancels lists the tries cancelled under a worker's id that it has not
// yet acted on.
func (s *Store) Cancels(ctx context.Context, worker string) ([]CancelledTry, error) {
	var out []CancelledTry
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.DB.QueryContext(ctx, s.q(`SELECT job, task FROM pampa_cancels WHERE worker = ?`), worker)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c := CancelledTry{Worker: worker}
			if err := rows.Scan(&c.Job, &c.Task); err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read cancelled tasks of worker %s: %w", worker, err)
	}
	return out, nil
}

// ForgetCancels deletes cancel rows a worker acted on.
func (s *Store) ForgetCancels(ctx context.Context, cs []CancelledTry) error {
	if len(cs) == 0 {
		return nil
	}
	return s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, c := range cs {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM pampa_cancels WHERE worker = ? AND job = ? AND task = ?`),
				c.Worker, c.Job, c.Task); err != nil {
				return fmt.Errorf("forget the cancel of task %s: %w", c.Task, err)
			}
		}
		return nil
	})
}

// PruneCancels deletes cancel rows older than age: rows no worker took up
// (see maintenance), and returns how many.
func (s *Store) PruneCancels(ctx context.Context, age time.Duration) (int64, error) {
	n, err := s.Exec(ctx, `DELETE FROM pampa_cancels WHERE cancelled_at < `+s.Dialect.Ago(), s.Dialect.AgoArg(age))
	if err != nil {
		return 0, fmt.Errorf("delete old cancel rows: %w", err)
	}
	return n, nil
}
