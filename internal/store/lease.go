package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Lease is who holds a named lease and until when.
type Lease struct {
	Holder       string
	Term         int64
	ExpiresInSec float64 // negative once expired
}

// AcquireLease takes or renews the lease `name` for holder, for ttl. It
// succeeds when the lease is free, expired or already holder's; the term
// goes up each time the lease changes hands. ok is false when someone else
// holds a live lease.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (term int64, ok bool, err error) {
	d := s.Dialect
	err = s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO pampa_leader (name, holder, term, expires_at)
			VALUES (?, NULL, 0, NULL) ON CONFLICT (name) DO NOTHING`), name); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, s.q(`UPDATE pampa_leader
			SET term = CASE WHEN holder = ? AND expires_at >= `+d.Now()+` THEN term ELSE term + 1 END,
				holder = ?, expires_at = `+d.Ago()+`
			WHERE name = ? AND (holder IS NULL OR holder = ? OR expires_at IS NULL OR expires_at < `+d.Now()+`)
			RETURNING term`), holder, holder, d.AgoArg(-ttl), name, holder).Scan(&term)
		if errors.Is(err, sql.ErrNoRows) {
			ok = false
			return nil
		}
		ok = err == nil
		return err
	})
	return term, ok, err
}

// ResignLease gives the lease up if holder has it.
func (s *Store) ResignLease(ctx context.Context, name, holder string) error {
	_, err := s.Exec(ctx, `UPDATE pampa_leader SET holder = NULL, expires_at = NULL WHERE name = ? AND holder = ?`, name, holder)
	return err
}

// CurrentLease reads the lease; a zero Lease when nobody ever held it.
func (s *Store) CurrentLease(ctx context.Context, name string) (Lease, error) {
	var l Lease
	var holder sql.NullString
	var exp sql.NullFloat64
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT holder, term, -(`+s.Dialect.SecondsSince("expires_at")+`)
		FROM pampa_leader WHERE name = ?`), name).Scan(&holder, &l.Term, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, nil
	}
	l.Holder, l.ExpiresInSec = holder.String, exp.Float64
	return l, err
}
