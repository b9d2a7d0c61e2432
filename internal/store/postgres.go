package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Postgres is the production dialect (pgx v5 behind database/sql).
type Postgres struct{}

// Name implements Dialect.
func (Postgres) Name() string { return "postgres" }

// Open implements Dialect.
func (Postgres) Open(url string) (*sql.DB, error) {
	return openPgx(withoutJIT(withIdleTimeout(url)), 20)
}

// withoutJIT turns off JIT compilation for Pampa's sessions. Its
// statements touch a few index pages each, but a misjudged row count can
// push one past the JIT cost threshold, and compiling it then costs far
// more than running it: recovering expired tries, which finds nothing in
// a millisecond, took 6–55 ms to compile on a 10,000,000-row table. A jit
// setting in the URL wins.
func withoutJIT(url string) string { return withRuntimeParam(url, "jit", "off") }

// planEach prefixes the arguments of a statement that picks pending rows
// so that, on PostgreSQL, each execution is planned for its own arguments
// and the table's current statistics (pgx's unnamed-statement mode).
// Prepared once and run many times, PostgreSQL may settle on a generic
// plan after five executions and keep it until the table is analysed
// again: a plan made while a job's table was empty or all pending (a scan
// in key order with a filter) then steps over every finished row on each
// call once most are done. These statements run once per dispatcher round
// or maintenance pass, so planning each costs little; the workers' claims
// and finishes, run far more often, keep their cached plans, which look
// rows up by worker or by key whatever the statistics.
func (s *Store) planEach(args ...any) []any { return s.Dialect.PlanEachCall(args) }

// PlanEachCall implements Dialect (see Store.planEach).
func (Postgres) PlanEachCall(args []any) []any {
	return append([]any{pgx.QueryExecModeExec}, args...)
}

// withIdleTimeout ends sessions that sit idle inside a transaction: Pampa
// never holds one open while a task runs, so such a session belongs to a
// frozen process, whose row locks would hold up everyone else.
func withIdleTimeout(url string) string {
	return withRuntimeParam(url, "idle_in_transaction_session_timeout", "30000")
}

func openPgx(url string, conns int) (*sql.DB, error) {
	if _, err := pgx.ParseConfig(url); err != nil {
		// pgx's message may quote the URL, password included; say less.
		return nil, errors.New("postgres: cannot parse the connection URL (check its syntax)")
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Rebind implements Dialect.
func (Postgres) Rebind(q string) string { return rebindDollar(q) }

// Now implements Dialect.
func (Postgres) Now() string { return "now()" }

// Ago implements Dialect.
func (Postgres) Ago() string { return "(now() - make_interval(secs => ?))" }

// AgoArg implements Dialect.
func (Postgres) AgoArg(d time.Duration) any { return d.Seconds() }

// SecondsSince implements Dialect.
func (Postgres) SecondsSince(col string) string {
	return "EXTRACT(EPOCH FROM (now() - " + col + "))::float8"
}

// UnixMillis implements Dialect.
func (Postgres) UnixMillis(expr string) string {
	return "CAST(ROUND(EXTRACT(EPOCH FROM " + expr + ") * 1000) AS BIGINT)"
}

// Later implements Dialect.
func (Postgres) Later(col, seconds string) string {
	return "(" + col + " + make_interval(secs => " + seconds + "))"
}

// Random implements Dialect.
func (Postgres) Random() string { return "random()" }

// SkipLocked implements Dialect.
func (Postgres) SkipLocked() string { return " FOR UPDATE SKIP LOCKED" }

func (Postgres) LockRows() string { return " FOR UPDATE" }

// Types implements Dialect.
func (Postgres) Types() ColumnTypes {
	return ColumnTypes{Text: "text", Time: "timestamptz", Int: "integer", Bool: "boolean"}
}

// OpenError implements Dialect: the server's own message says enough.
func (Postgres) OpenError(_ string, err error) error { return err }

// AcceptsKind implements Dialect.
func (Postgres) AcceptsKind(kind Kind, typ string) bool {
	t := strings.ToLower(typ)
	switch kind {
	case KindText:
		return t == "text" || strings.Contains(t, "character")
	case KindTime:
		return strings.HasPrefix(t, "timestamp")
	case KindInt:
		return t == "integer" || t == "bigint" || t == "smallint"
	case KindBool:
		return t == "boolean"
	}
	return false
}

// MaxIdentifierLen implements Dialect: NAMEDATALEN - 1. PostgreSQL cuts
// longer names short, so that two long names could mean one column.
func (Postgres) MaxIdentifierLen() int { return 63 }

// IndexExists implements Dialect.
func (Postgres) IndexExists(ctx context.Context, db Querier, table Ident, name string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_indexes
		WHERE schemaname = COALESCE(NULLIF($1, ''), current_schema()) AND indexname = $2`, table.Schema, name).Scan(&n)
	return n > 0, err
}

// IndexTarget implements Dialect: an index lives in its table's schema.
func (Postgres) IndexTarget(table Ident, name string) (string, string) {
	return Quote(name), table.Quoted()
}

// IndexHint implements Dialect: PostgreSQL takes no hints; its
// statements plan for their arguments instead (see Store.planEach).
func (Postgres) IndexHint(string) string { return "" }

// Unindexed implements Dialect.
func (Postgres) Unindexed(col string) string { return col }

// SortOff implements Dialect, for the transaction (SET LOCAL).
func (Postgres) SortOff() string { return "SET LOCAL enable_sort = off" }

// SingleWriter implements Dialect: writers lock rows, not the database.
func (Postgres) SingleWriter() bool { return false }

// CachesStatements implements Dialect: pgx keeps a cache per connection;
// preparing in Store too would take a second connection from the pool
// while a transaction holds one, which can exhaust it.
func (Postgres) CachesStatements() bool { return false }

// LockTimeoutSQL implements Dialect.
func (Postgres) LockTimeoutSQL(d time.Duration) string {
	return fmt.Sprintf("SET LOCAL lock_timeout = %d", d.Milliseconds())
}

// SupportsNotify implements Dialect.
func (Postgres) SupportsNotify() bool { return true }

// LocalFile implements Dialect: a server's database has no file here.
func (Postgres) LocalFile(string) (string, bool) { return "", true }

// EstimatesRowCount implements Dialect.
func (Postgres) EstimatesRowCount() bool { return true }

// CountsNewRowsByRowid implements Dialect: PostgreSQL has no rowid (its
// statistics estimate instead).
func (Postgres) CountsNewRowsByRowid() bool { return false }

// Cast implements Dialect.
func (Postgres) Cast(typ string) string { return "::" + typ }

// QualifiesReturning implements Dialect.
func (Postgres) QualifiesReturning() bool { return true }

// BatchesFinishes implements Dialect.
func (Postgres) BatchesFinishes() bool { return true }

// TypedValues implements Dialect.
func (Postgres) TypedValues() bool { return true }

// ExplainAnalyze implements Dialect.
func (Postgres) ExplainAnalyze() bool { return true }

// PollInterval implements Dialect: notifications carry the hand-offs
// between processes, and the poll is only a fallback.
func (Postgres) PollInterval() time.Duration { return time.Second }

// Columns implements Dialect.
func (Postgres) Columns(ctx context.Context, db Querier, t Ident) ([]Column, bool, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = COALESCE(NULLIF($1, ''), current_schema()) AND table_name = $2
		ORDER BY ordinal_position`, t.Schema, t.Name)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.Type); err != nil {
			return nil, false, err
		}
		c.Type = strings.ToLower(c.Type)
		cols = append(cols, c)
	}
	return cols, len(cols) > 0, rows.Err()
}

// NamedArgs implements Dialect.
func (Postgres) NamedArgs(args map[string]any) []any { return []any{pgx.NamedArgs(args)} }

// Retryable implements Dialect.
func (Postgres) Retryable(err error) bool { return pgRetryable(err) }

func pgRetryable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01": // serialization failure, deadlock
			return true
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"): // connection, shutdown
			return true
		}
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) {
		return true
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// Cockroach is CockroachDB: PostgreSQL's protocol, every transaction
// SERIALIZABLE, no LISTEN/NOTIFY and no dependable SKIP LOCKED. Rows are
// claimed by conditional UPDATEs and serialization failures are retried.
type Cockroach struct{ Postgres }

// Name implements Dialect.
func (Cockroach) Name() string { return "crdb" }

// Open implements Dialect. Sessions default to SERIALIZABLE, which is what
// CockroachDB always runs and how PostgreSQL stands in for it in tests.
func (Cockroach) Open(raw string) (*sql.DB, error) {
	return openPgx(withIdleTimeout(withRuntimeParam(raw, "default_transaction_isolation", "serializable")), 20)
}

// SkipLocked implements Dialect.
func (Cockroach) SkipLocked() string { return "" }

// SortOff implements Dialect: CockroachDB has no enable_sort.
func (Cockroach) SortOff() string { return "" }

// SupportsNotify implements Dialect: CockroachDB has no LISTEN/NOTIFY.
func (Cockroach) SupportsNotify() bool { return false }

// EstimatesRowCount implements Dialect: PostgreSQL's statistics
// functions are not CockroachDB's.
func (Cockroach) EstimatesRowCount() bool { return false }

// BatchesFinishes implements Dialect: finishes are written row by row.
func (Cockroach) BatchesFinishes() bool { return false }

// PollInterval implements Dialect: no notifications, only wake-ups
// between the processes of one machine (notify.Local), so loops poll more
// often than on PostgreSQL.
func (Cockroach) PollInterval() time.Duration { return 250 * time.Millisecond }

func withRuntimeParam(raw, key, value string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		if strings.Contains(raw, key) {
			return raw
		}
		return raw + " " + key + "=" + value // keyword/value form
	}
	if u.Query().Get(key) != "" {
		return raw
	}
	// Append rather than re-encode: url.Values.Encode writes spaces as
	// '+', which PostgreSQL's URL syntax reads as a literal '+'.
	sep := "?"
	if u.RawQuery != "" || strings.HasSuffix(raw, "?") {
		sep = "&"
		if strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "&") {
			sep = ""
		}
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		return raw[:i] + sep + url.QueryEscape(key) + "=" + url.QueryEscape(value) + raw[i:]
	}
	return raw + sep + url.QueryEscape(key) + "=" + url.QueryEscape(value)
}

// ByName returns the dialect for a driver name.
func ByName(name string) (Dialect, error) {
	switch name {
	case "sqlite":
		return SQLite{}, nil
	case "postgres":
		return Postgres{}, nil
	case "crdb":
		return Cockroach{}, nil
	}
	return nil, errors.New("unknown database driver " + `"` + name + `"` + " (want sqlite, postgres or crdb)")
}
