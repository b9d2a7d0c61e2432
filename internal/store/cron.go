package store

import (
	"context"
	"fmt"
	"time"
)

// CronLast returns the time the schedule called name last ran (pampa_cron,
// unix milliseconds); a schedule seen for the first time is recorded as
// run at now, so that it starts with its next due time rather than a guess
// at the past.
func (s *Store) CronLast(ctx context.Context, name string, now time.Time) (time.Time, error) {
	if _, err := s.Exec(ctx, `INSERT INTO pampa_cron (name, last_due) VALUES (?, ?)
		ON CONFLICT (name) DO NOTHING`, name, now.UnixMilli()); err != nil {
		return time.Time{}, fmt.Errorf("record schedule %s: %w", name, err)
	}
	var ms int64
	err := s.retry(ctx, func(ctx context.Context) error {
		return s.DB.QueryRowContext(ctx, s.q(`SELECT last_due FROM pampa_cron WHERE name = ?`), name).Scan(&ms)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read schedule %s: %w", name, err)
	}
	return time.UnixMilli(ms), nil
}

// CronClaim records that name runs now (at or after due) for its due time
// due, if no one has run it for that due time yet: it reports false when
// another process (a former leader, say) already moved last_due to due or
// past it. Of two processes claiming one due time, only one gets true.
func (s *Store) CronClaim(ctx context.Context, name string, due, now time.Time) (bool, error) {
	n, err := s.Exec(ctx, `UPDATE pampa_cron SET last_due = ? WHERE name = ? AND last_due < ?`,
		now.UnixMilli(), name, due.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("claim schedule %s: %w", name, err)
	}
	return n == 1, nil
}
