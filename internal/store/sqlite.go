package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded dialect: one database file shared by the
// processes of one machine. Writers take the lock up front (BEGIN
// IMMEDIATE) and wait for each other (busy_timeout); the journal is WAL so
// readers never block writers.
type SQLite struct{}

// Name implements Dialect.
func (SQLite) Name() string { return "sqlite" }

// sqliteTime is how timestamps are stored: UTC text that sorts in time order.
const sqliteTime = `strftime('%Y-%m-%d %H:%M:%f', 'now')`

// Open implements Dialect. url is a path or a "file:" URI; Pampa's pragmas
// are added to whatever the URI already has.
func (SQLite) Open(raw string) (*sql.DB, error) {
	dsn, err := sqliteDSN(raw)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// Readers run beside the one writer (WAL); writers of this process
	// queue on Store's write lock rather than in SQLite's busy handler.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	return db, nil
}

var sqlitePathEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

func sqliteDSN(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("sqlite: empty database path")
	}
	// A plain path is escaped: SQLite reads what follows "file:" as a URI,
	// where '?', '#' and '%' mean something.
	path, query := sqlitePathEscaper.Replace(raw), ""
	if strings.HasPrefix(raw, "file:") {
		path = strings.TrimPrefix(raw, "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path, query = path[:i], path[i+1:]
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sqlite: bad URI %q: %w", raw, err)
	}
	pragmas := map[string]string{
		"busy_timeout": "busy_timeout(30000)",
		"journal_mode": "journal_mode(WAL)",
		"synchronous":  "synchronous(NORMAL)",
	}
	for _, p := range q["_pragma"] {
		name := p
		if i := strings.IndexByte(p, '('); i >= 0 {
			name = p[:i]
		}
		delete(pragmas, strings.ToLower(strings.TrimSpace(name)))
	}
	for _, p := range []string{"busy_timeout", "journal_mode", "synchronous"} {
		if v, ok := pragmas[p]; ok {
			q.Add("_pragma", v)
		}
	}
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode(), nil
}

// Rebind implements Dialect: SQLite reads '?' as it is.
func (SQLite) Rebind(q string) string { return q }

// Now implements Dialect.
func (SQLite) Now() string { return sqliteTime }

// Ago implements Dialect.
func (SQLite) Ago() string { return `strftime('%Y-%m-%d %H:%M:%f', 'now', ?)` }

// AgoArg implements Dialect.
func (SQLite) AgoArg(d time.Duration) any { return fmt.Sprintf("%+.3f seconds", -d.Seconds()) }

// SecondsSince implements Dialect.
func (SQLite) SecondsSince(col string) string {
	return fmt.Sprintf("((julianday('now') - julianday(%s)) * 86400.0)", col)
}

// SkipLocked implements Dialect: writers are serialised, nothing to skip.
func (SQLite) SkipLocked() string { return "" }

// Types implements Dialect.
func (SQLite) Types() ColumnTypes {
	return ColumnTypes{Text: "TEXT", Time: "TIMESTAMP", Int: "INTEGER", Bool: "BOOLEAN"}
}

// Columns implements Dialect.
func (SQLite) Columns(ctx context.Context, db Querier, t Ident) ([]Column, bool, error) {
	q := `SELECT name, type FROM pragma_table_info(?)`
	args := []any{t.Name}
	if t.Schema != "" {
		q = `SELECT name, type FROM pragma_table_info(?, ?)`
		args = append(args, t.Schema)
	}
	rows, err := db.QueryContext(ctx, q, args...)
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
func (SQLite) NamedArgs(args map[string]any) []any {
	out := make([]any, 0, len(args))
	for k, v := range args {
		out = append(out, sql.Named(k, v))
	}
	return out
}

// Retryable implements Dialect: a busy or locked database.
func (SQLite) Retryable(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}
