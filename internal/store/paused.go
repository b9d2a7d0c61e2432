package store

import (
	"context"
	"fmt"
)

// Pause marks a job paused: the dispatcher reserves none of its rows, and
// hands back those reserved and not started. It is kept in the database,
// so every dispatcher sees it and it outlives restarts. Pausing a paused
// job changes nothing.
func (s *Store) Pause(ctx context.Context, job string) error {
	_, err := s.Exec(ctx, `INSERT INTO pampa_paused (job, paused_at) VALUES (?, `+s.Dialect.Now()+`)
		ON CONFLICT (job) DO NOTHING`, job)
	if err != nil {
		return fmt.Errorf("pause job %s: %w", job, err)
	}
	return nil
}

// Resume lifts a pause; resuming a job that is not paused changes nothing.
func (s *Store) Resume(ctx context.Context, job string) error {
	if _, err := s.Exec(ctx, `DELETE FROM pampa_paused WHERE job = ?`, job); err != nil {
		return fmt.Errorf("resume job %s: %w", job, err)
	}
	return nil
}

// Paused returns the set of paused jobs.
func (s *Store) Paused(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.retry(ctx, func(ctx context.Context) error {
		clear(out)
		rows, err := s.DB.QueryContext(ctx, `SELECT job FROM pampa_paused`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var job string
			if err := rows.Scan(&job); err != nil {
				return err
			}
			out[job] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read paused jobs: %w", err)
	}
	return out, nil
}

// HandBackAll hands back every reserved, unstarted row of the job,
// whoever it is reserved for.
func (j *JobSQL) HandBackAll(ctx context.Context, q Querier) (int64, error) {
	query := fmt.Sprintf(`UPDATE %s SET %s = NULL, %s = NULL WHERE %s IS NOT NULL AND %s IS NULL AND %s IS NULL`,
		j.t, j.reservationID, j.reservationTime, j.reservationID, j.startTime, j.endTime)
	res, err := j.s.exec(ctx, q, j.s.q(query))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
