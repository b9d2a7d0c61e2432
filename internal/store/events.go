package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Event states in pampa_events. An event is written pending; the leader
// claims it (firing, until due_at: the claim's expiry) and marks it fired
// when its hook returned, or puts it back to pending with a later due_at
// when the hook failed, and failed for good after its last attempt. A hook
// run inside the marking transaction (SQL) goes from pending to fired in
// one commit, never through firing.
const (
	EventPending = "pending"
	EventFiring  = "firing"
	EventFired   = "fired"
	EventFailed  = "failed"
)

// Event is a row of pampa_events.
type Event struct {
	ID, Job, Kind string
	// Group is the group's key (GroupKey form) of a group_done event.
	Group     string
	Run       int64
	StartedMs int64 // the run's start, Unix milliseconds (database clock)
	EndedMs   int64 // when the end was detected
	Succeeded int64
	Failed    int64
	State     string
	Attempts  int // hook calls begun so far
	ClaimedBy string
	LastError string
}

const eventSelect = `SELECT id, job, kind, COALESCE(grp, ''), run, started_ms, ended_ms, succeeded, failed, state, attempts,
	COALESCE(claimed_by, ''), COALESCE(last_error, '') FROM pampa_events`

func scanEvent(sc interface{ Scan(...any) error }) (Event, error) {
	var e Event
	err := sc.Scan(&e.ID, &e.Job, &e.Kind, &e.Group, &e.Run, &e.StartedMs, &e.EndedMs, &e.Succeeded, &e.Failed,
		&e.State, &e.Attempts, &e.ClaimedBy, &e.LastError)
	return e, err
}

func (s *Store) readEvent(ctx context.Context, q Querier, id string) (Event, error) {
	e, err := scanEvent(s.queryRow(ctx, q, s.q(eventSelect+` WHERE id = ?`), id))
	if err != nil {
		return e, fmt.Errorf("read event %s: %w", id, err)
	}
	return e, nil
}

// Events lists the events of a job, oldest first (all jobs' when job is
// ""), for inspection and tests.
func (s *Store) Events(ctx context.Context, job string) ([]Event, error) {
	var out []Event
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.DB.QueryContext(ctx, s.q(eventSelect+` WHERE job = ? OR ? = '' ORDER BY created_at, id`), job, job)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// DueEvents lists up to n events of the jobs named that a hook call is
// due for: pending ones whose backoff has passed, and claims that expired
// (their dispatcher never reported back), earliest first, through the
// (state, due_at) index.
func (s *Store) DueEvents(ctx context.Context, jobs []string, n int) ([]Event, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	var out []Event
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		query := eventSelect + ` WHERE state IN (?, ?) AND due_at <= ` + s.Dialect.Now() +
			` AND job IN (` + placeholders(len(jobs)) + `) ORDER BY due_at LIMIT ?`
		args := append(append([]any{EventPending, EventFiring}, toAny(jobs)...), n)
		rows, err := s.DB.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// dueAndUnchanged is the claim's condition: the event is still as listed
// (same attempt count), pending or with a claim that expired, and due.
func (s *Store) dueAndUnchanged() string {
	return `id = ? AND attempts = ? AND state IN ('` + EventPending + `', '` + EventFiring + `') AND due_at <= ` + s.Dialect.Now()
}

// ClaimEvent claims an event listed with attempts attempts for a hook
// call by the dispatcher by, until hold from now: no other dispatcher
// calls its hook until then. It reports whether the claim was won; of two
// dispatchers claiming one event, one wins.
func (s *Store) ClaimEvent(ctx context.Context, id string, attempts int, by string, hold time.Duration) (bool, error) {
	n, err := s.Exec(ctx, `UPDATE pampa_events SET state = ?, attempts = attempts + 1, claimed_by = ?, due_at = `+s.Dialect.Ago()+`
		WHERE `+s.dueAndUnchanged(), EventFiring, by, s.Dialect.AgoArg(-hold), id, attempts)
	return n == 1, err
}

// FireInTx marks an event listed with attempts attempts fired and runs
// fn in the same transaction: fn's writes and the mark commit together or
// not at all, so that fn runs to a commit once. claimed is false when the
// event was not there to claim (fn did not run); an error of fn rolls
// both back and is returned with claimed set.
func (s *Store) FireInTx(ctx context.Context, id string, attempts int, by string, fn func(ctx context.Context, tx *sql.Tx) error) (claimed bool, err error) {
	err = s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		claimed = false
		now := s.Dialect.Now()
		res, err := tx.ExecContext(ctx, s.q(`UPDATE pampa_events SET state = ?, attempts = attempts + 1, claimed_by = ?,
			fired_at = `+now+`, due_at = `+now+`, last_error = NULL WHERE `+s.dueAndUnchanged()), EventFired, by, id, attempts)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		claimed = true
		return fn(ctx, tx)
	})
	return claimed, err
}

// MarkFired records that the hook call of attempt (the claim's attempt
// count) returned well. ok is false when the claim was no longer this
// dispatcher's (it expired and was taken over).
func (s *Store) MarkFired(ctx context.Context, id string, attempt int, by string) (bool, error) {
	now := s.Dialect.Now()
	n, err := s.Exec(ctx, `UPDATE pampa_events SET state = ?, fired_at = `+now+`, due_at = `+now+`, last_error = NULL
		WHERE id = ? AND state = ? AND claimed_by = ? AND attempts = ?`, EventFired, id, EventFiring, by, attempt)
	return n == 1, err
}

// MarkFailed records a failed hook call of attempt: the event is due
// again after retryIn or, with giveUp, failed for good. For a claimed
// call, a claim that is no longer this dispatcher's is left alone (ok
// false). For a hook run in the marking transaction (inTx), whose
// rollback left the event pending with attempt-1 attempts, the attempt is
// counted here.
func (s *Store) MarkFailed(ctx context.Context, id string, attempt int, by string, inTx bool, why string, retryIn time.Duration, giveUp bool) (bool, error) {
	state := EventPending
	if giveUp {
		state = EventFailed
	}
	set := `state = ?, due_at = ` + s.Dialect.Ago() + `, last_error = ?`
	args := []any{state, s.Dialect.AgoArg(-retryIn), truncateError(why)}
	cond := ` WHERE id = ? AND state = ? AND claimed_by = ? AND attempts = ?`
	if inTx {
		set += `, attempts = attempts + 1, claimed_by = ?`
		args = append(args, by, id, EventPending, attempt-1)
		cond = ` WHERE id = ? AND state = ? AND attempts = ?`
	} else {
		args = append(args, id, EventFiring, by, attempt)
	}
	n, err := s.Exec(ctx, `UPDATE pampa_events SET `+set+cond, args...)
	return n == 1, err
}

// truncateError keeps an error description within what any column takes.
func truncateError(s string) string {
	const max = 4 << 10
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\\0")
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// PruneEvents deletes the events fired or failed for good more than
// keep ago, and returns how many.
func (s *Store) PruneEvents(ctx context.Context, keep time.Duration) (int64, error) {
	return s.Exec(ctx, `DELETE FROM pampa_events WHERE state IN (?, ?) AND due_at < `+s.Dialect.Ago(), EventFired, EventFailed, s.Dialect.AgoArg(keep))
}
