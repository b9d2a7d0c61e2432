package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Store is a database connection with its dialect.
type Store struct {
	DB      *sql.DB
	Dialect Dialect
	// OpTimeout bounds each statement Pampa runs for itself. Default 30s.
	OpTimeout time.Duration

	// writeMu serialises this process's write transactions on an engine
	// that admits one writer at a time (Dialect.SingleWriter), as SQLite: waiting here is far cheaper than
	// in SQLite's busy handler, which sleeps in steps of up to 100 ms.
	// Other processes sharing the file still wait through busy_timeout.
	writeMu sync.Mutex

	// stmts caches prepared statements by SQL text, where the dialect
	// asks for it (Dialect.CachesStatements).
	stmts     sync.Map // string → *sql.Stmt
	stmtCount atomic.Int64

	// commits counts the write transactions committed (Commits).
	commits atomic.Int64
}

// Commits is how many write transactions (Tx, Exec) this store has
// committed: what it cost the database in commits, for `pampa bench`.
func (s *Store) Commits() int64 { return s.commits.Load() }

// maxCachedStmts bounds the cache; statements past it are run unprepared.
// Pampa's own statements are a few per job, plus one per combination of
// columns a processing function sets.
const maxCachedStmts = 1000

// stmt returns the cached prepared statement for query, or nil when it
// cannot or should not be cached.
func (s *Store) stmt(ctx context.Context, query string) *sql.Stmt {
	if !s.Dialect.CachesStatements() {
		return nil
	}
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if s.stmtCount.Load() >= maxCachedStmts {
		return nil
	}
	st, err := s.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // let the caller run it unprepared and report the error
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	s.stmtCount.Add(1)
	return st
}

// bound returns st bound to q when q is a transaction.
func bound(ctx context.Context, q Querier, st *sql.Stmt) interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, args ...any) *sql.Row
} {
	if tx, ok := q.(*sql.Tx); ok {
		return tx.StmtContext(ctx, st)
	}
	return st
}

// query runs a query through the statement cache.
func (s *Store) query(ctx context.Context, q Querier, query string, args ...any) (*sql.Rows, error) {
	if st := s.stmt(ctx, query); st != nil {
		if _, isDB := q.(*sql.DB); isDB || isTx(q) {
			return bound(ctx, q, st).QueryContext(ctx, args...)
		}
	}
	return q.QueryContext(ctx, query, args...)
}

// exec runs a statement through the statement cache.
func (s *Store) exec(ctx context.Context, q Querier, query string, args ...any) (sql.Result, error) {
	if st := s.stmt(ctx, query); st != nil {
		if _, isDB := q.(*sql.DB); isDB || isTx(q) {
			return bound(ctx, q, st).ExecContext(ctx, args...)
		}
	}
	return q.ExecContext(ctx, query, args...)
}

// queryRow runs a one-row query through the statement cache.
func (s *Store) queryRow(ctx context.Context, q Querier, query string, args ...any) *sql.Row {
	if st := s.stmt(ctx, query); st != nil {
		if _, isDB := q.(*sql.DB); isDB || isTx(q) {
			return bound(ctx, q, st).QueryRowContext(ctx, args...)
		}
	}
	return q.QueryRowContext(ctx, query, args...)
}

func isTx(q Querier) bool {
	_, ok := q.(*sql.Tx)
	return ok
}

// Close closes cached statements and the connection pool.
func (s *Store) Close() error {
	s.stmts.Range(func(_, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
	return s.DB.Close()
}

// Open connects with the named driver and checks the database answers.
// Errors never quote the URL, which may hold a password.
func Open(ctx context.Context, driver, url string) (*Store, error) {
	d, err := ByName(driver)
	if err != nil {
		return nil, err
	}
	db, err := d.Open(url)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", driver, err)
	}
	s := &Store{DB: db, Dialect: d}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", driver, d.OpenError(url, redact(err, url)))
	}
	return s, nil
}

// redact removes a connection URL from an error message.
func redact(err error, url string) error {
	if url == "" || !strings.Contains(err.Error(), url) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), url, "<database url>"))
}

func (s *Store) timeout() time.Duration {
	if s.OpTimeout > 0 {
		return s.OpTimeout
	}
	return 30 * time.Second
}

// q rebinds shared SQL for the dialect.
func (s *Store) q(query string) string { return s.Dialect.Rebind(query) }

// retry runs fn until it succeeds, fails with an error not worth retrying,
// or ctx ends. Each attempt gets the store's statement timeout.
func (s *Store) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	delay := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		opCtx, cancel := context.WithTimeout(ctx, s.timeout())
		err := fn(opCtx)
		cancel()
		if err == nil || !s.Dialect.Retryable(err) || ctx.Err() != nil || attempt >= 8 {
			return err
		}
		jitter := time.Duration(rand.Int64N(int64(delay)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay + jitter):
		}
		delay = min(delay*2, time.Second)
	}
}

// Tx runs fn in a write transaction (BEGIN IMMEDIATE on SQLite), retrying
// the whole transaction on retryable errors. fn may run more than once.
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.retry(ctx, func(ctx context.Context) error {
		if s.Dialect.SingleWriter() {
			s.writeMu.Lock()
			defer s.writeMu.Unlock()
		}
		tx, err := s.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		// A panic out of fn (a user hook's) must not leave the
		// transaction open: on SQLite it would hold the database's write
		// lock for as long as the process lives.
		defer func() {
			if p := recover(); p != nil {
				_ = tx.Rollback()
				panic(p)
			}
		}()
		if err := fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		s.commits.Add(1)
		return nil
	})
}

// Exec runs one write statement in its own transaction, with retries, and
// returns the rows affected.
func (s *Store) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(query), args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// LockTimeout bounds how long the rest of tx waits for a row lock, where
// writers wait on row locks at all (see Dialect.LockTimeoutSQL).
func (s *Store) LockTimeout(ctx context.Context, tx *sql.Tx, d time.Duration) error {
	q := s.Dialect.LockTimeoutSQL(d)
	if q == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, q)
	return err
}

// migrations create Pampa's own tables. They are idempotent and run on
// every start; a new one is appended, never edited.
func (s *Store) migrations() []string {
	t := s.Dialect.Types()
	return []string{
		`CREATE TABLE IF NOT EXISTS pampa_workers (
			id ` + t.Text + ` PRIMARY KEY,
			node ` + t.Text + ` NOT NULL,
			host ` + t.Text + ` NOT NULL DEFAULT '',
			pid ` + t.Int + ` NOT NULL DEFAULT 0,
			version ` + t.Text + ` NOT NULL DEFAULT '',
			instance ` + t.Text + ` NOT NULL,
			jobs ` + t.Text + ` NOT NULL DEFAULT '',
			started_at ` + t.Time + ` NOT NULL,
			heartbeat_at ` + t.Time + ` NOT NULL,
			job ` + t.Text + `,
			state ` + t.Text + ` NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS pampa_leader (
			name ` + t.Text + ` PRIMARY KEY,
			holder ` + t.Text + `,
			term ` + t.Int + ` NOT NULL DEFAULT 0,
			expires_at ` + t.Time + `
		)`,
		// Who a worker process is, beyond its pid: see proc.Token.
		`ALTER TABLE pampa_workers ADD COLUMN proc_token ` + t.Text + ` NOT NULL DEFAULT ''`,
		// Jobs an operator paused: no new reservations (see Store.Pause).
		`CREATE TABLE IF NOT EXISTS pampa_paused (
			job ` + t.Text + ` PRIMARY KEY,
			paused_at ` + t.Time + ` NOT NULL
		)`,
		// Tries an operator cancelled while they ran, for their worker's
		// heartbeat (see JobSQL.Cancel).
		`CREATE TABLE IF NOT EXISTS pampa_cancels (
			worker ` + t.Text + ` NOT NULL,
			job ` + t.Text + ` NOT NULL,
			task ` + t.Text + ` NOT NULL,
			cancelled_at ` + t.Time + ` NOT NULL,
			PRIMARY KEY (worker, job, task)
		)`,
		// When an operator drained the worker (see Store.SetDrained); kept
		// by a restart under the same id.
		`ALTER TABLE pampa_workers ADD COLUMN drained_at ` + t.Time,
		// When each cron schedule last ran, in unix milliseconds (see
		// Store.CronClaim).
		`CREATE TABLE IF NOT EXISTS pampa_cron (
			name ` + t.Text + ` PRIMARY KEY,
			last_due BIGINT NOT NULL
		)`,
		// How many tries each worker runs at once (see WorkerInfo.Slots).
		`ALTER TABLE pampa_workers ADD COLUMN slots ` + t.Int + ` NOT NULL DEFAULT 0`,
		// One row per job with limits: the reservations of its tasks take
		// its lock, and it says why the last round held tasks back (see
		// JobSQL.ReserveLimited).
		`CREATE TABLE IF NOT EXISTS pampa_limits (
			job ` + t.Text + ` PRIMARY KEY,
			locked_at ` + t.Time + `,
			held_back ` + t.Int + ` NOT NULL DEFAULT 0,
			reason ` + t.Text + ` NOT NULL DEFAULT '',
			noted_at ` + t.Time + `
		)`,
		// The hand-outs of rate-limited jobs in the last interval, a row per
		// reservation batch: scope is '' for the job, the group otherwise.
		`CREATE TABLE IF NOT EXISTS pampa_starts (
			job ` + t.Text + ` NOT NULL,
			scope ` + t.Text + ` NOT NULL,
			at ` + t.Time + ` NOT NULL,
			n ` + t.Int + ` NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS pampa_starts_scope ON pampa_starts (job, scope, at)`,
		// The drain runs of jobs with an on_drained hook, a row per job:
		// busy_since is the open run's start (NULL while the job is idle),
		// counted_after the last end the previous drain counted (see
		// JobSQL.CloseRun).
		`CREATE TABLE IF NOT EXISTS pampa_runs (
			job ` + t.Text + ` PRIMARY KEY,
			run ` + t.Int + ` NOT NULL DEFAULT 0,
			busy_since ` + t.Time + `,
			counted_after ` + t.Time + `
		)`,
		// The groups of jobs with an on_group_done hook, a row per group
		// ever handed out (grp is GroupKey's form): since is set while the
		// group is a candidate for completion (see JobSQL.CloseGroup).
		`CREATE TABLE IF NOT EXISTS pampa_groups (
			job ` + t.Text + ` NOT NULL,
			grp ` + t.Text + ` NOT NULL,
			run ` + t.Int + ` NOT NULL DEFAULT 0,
			since ` + t.Time + `,
			counted_after ` + t.Time + `,
			PRIMARY KEY (job, grp)
		)`,
		`CREATE INDEX IF NOT EXISTS pampa_groups_open ON pampa_groups (job, grp) WHERE since IS NOT NULL`,
		// The outbox of completion events: written in the transaction that
		// detects them, fired by the leader (see Store.DueEvents).
		`CREATE TABLE IF NOT EXISTS pampa_events (
			id ` + t.Text + ` PRIMARY KEY,
			job ` + t.Text + ` NOT NULL,
			kind ` + t.Text + ` NOT NULL,
			grp ` + t.Text + `,
			run ` + t.Int + ` NOT NULL,
			started_ms BIGINT NOT NULL,
			ended_ms BIGINT NOT NULL,
			succeeded BIGINT NOT NULL,
			failed BIGINT NOT NULL,
			last_end ` + t.Time + `,
			state ` + t.Text + ` NOT NULL,
			attempts ` + t.Int + ` NOT NULL DEFAULT 0,
			due_at ` + t.Time + ` NOT NULL,
			claimed_by ` + t.Text + `,
			last_error ` + t.Text + `,
			created_at ` + t.Time + ` NOT NULL,
			fired_at ` + t.Time + `
		)`,
		`CREATE INDEX IF NOT EXISTS pampa_events_due ON pampa_events (state, due_at)`,
		// Two levels of dispatch (see Store.StartFor): a node dispatcher's
		// workers name it in via; its own entry counts its members.
		`ALTER TABLE pampa_workers ADD COLUMN via ` + t.Text,
		`ALTER TABLE pampa_workers ADD COLUMN members ` + t.Int + ` NOT NULL DEFAULT 0`,
	}
}

// Migrate creates Pampa's own tables when they are missing.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range s.migrations() {
		if _, err := s.Exec(ctx, m); err != nil {
			// Two processes creating the same table at once on PostgreSQL
			// may collide on the catalog; the table exists either way. An
			// added column is there already from an earlier start (SQLite
			// has no ADD COLUMN IF NOT EXISTS).
			if strings.Contains(err.Error(), "already exists") || strings.Contains(err.Error(), "23505") ||
				strings.Contains(err.Error(), "duplicate column") {
				continue
			}
			return fmt.Errorf("create pampa tables: %w", err)
		}
	}
	return nil
}
