package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded dialect: one database file shared by the
// processes of one machine. Writers take the lock up front (BEGIN
// IMMEDIATE) and wait for each other (busy_timeout); the journal is WAL so
// readers never block writers.
//
// ClockShift moves the database clock that Pampa's statements read by a
// fixed amount; it is zero (the file's clock as it is) outside tests,
// which use it to tell times stamped by the database from times taken
// from the process, the two clocks being one on a single machine.
type SQLite struct {
	ClockShift time.Duration
}

// Name implements Dialect.
func (SQLite) Name() string { return "sqlite" }

// sqliteTime is how timestamps are stored: UTC text that sorts in time order.
const sqliteTime = `strftime('%Y-%m-%d %H:%M:%f', 'now')`

// now is the 'now' argument of SQLite's date functions, shifted by
// ClockShift when it is set.
func (d SQLite) now() string {
	if d.ClockShift == 0 {
		return "'now'"
	}
	return fmt.Sprintf("'now', '%+.3f seconds'", d.ClockShift.Seconds())
}

// sqliteMaxIdentifier caps identifiers on SQLite, which has no limit of
// its own short of a statement's length: 255 bytes, the longest file name
// on common file systems, is far beyond any name written by hand, and
// keeps a value pasted into the wrong field from passing for a name.
const sqliteMaxIdentifier = 255

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
func (d SQLite) Now() string {
	if d.ClockShift == 0 {
		return sqliteTime
	}
	return `strftime('%Y-%m-%d %H:%M:%f', ` + d.now() + `)`
}

// Ago implements Dialect.
func (d SQLite) Ago() string { return `strftime('%Y-%m-%d %H:%M:%f', ` + d.now() + `, ?)` }

// AgoArg implements Dialect.
func (SQLite) AgoArg(d time.Duration) any { return fmt.Sprintf("%+.3f seconds", -d.Seconds()) }

// SecondsSince implements Dialect.
func (d SQLite) SecondsSince(col string) string {
	return fmt.Sprintf("((julianday(%s) - julianday(%s)) * 86400.0)", d.now(), col)
}

// UnixMillis implements Dialect: julianday 2440587.5 is the epoch.
func (SQLite) UnixMillis(expr string) string {
	return "CAST(ROUND((julianday(" + expr + ") - 2440587.5) * 86400000.0) AS INTEGER)"
}

// Later implements Dialect, in the stored form of timestamps.
func (SQLite) Later(col, seconds string) string {
	return `strftime('%Y-%m-%d %H:%M:%f', ` + col + `, printf('%+.3f seconds', ` + seconds + `))`
}

// Random implements Dialect: random() is a signed 64-bit integer; its low
// 53 bits make an exact double.
func (SQLite) Random() string { return "((random() & 9007199254740991) / 9007199254740992.0)" }

// SkipLocked implements Dialect: writers are serialised, nothing to skip.
func (SQLite) SkipLocked() string { return "" }

func (SQLite) LockRows() string { return "" }

// Types implements Dialect.
func (SQLite) Types() ColumnTypes {
	return ColumnTypes{Text: "TEXT", Time: "TIMESTAMP", Int: "INTEGER", Bool: "BOOLEAN"}
}

// AcceptsKind implements Dialect. SQLite's declared types are affinities,
// so the check follows its naming rules; an undeclared type takes any.
func (SQLite) AcceptsKind(kind Kind, typ string) bool {
	t := strings.ToLower(typ)
	if t == "" {
		return true
	}
	switch kind {
	case KindText:
		return containsAny(t, "char", "text", "clob")
	case KindTime:
		return containsAny(t, "date", "time", "text")
	case KindInt:
		return containsAny(t, "int")
	case KindBool:
		return containsAny(t, "bool", "int")
	}
	return false
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// MaxIdentifierLen implements Dialect.
func (SQLite) MaxIdentifierLen() int { return sqliteMaxIdentifier }

// IndexExists implements Dialect.
func (SQLite) IndexExists(ctx context.Context, db Querier, table Ident, name string) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
	if table.Schema != "" {
		q = `SELECT COUNT(*) FROM ` + Quote(table.Schema) + `.sqlite_master WHERE type = 'index' AND name = ?`
	}
	var n int
	err := db.QueryRowContext(ctx, q, name).Scan(&n)
	return n > 0, err
}

// IndexTarget implements Dialect: SQLite puts the schema on the index,
// not on the table.
func (SQLite) IndexTarget(table Ident, name string) (string, string) {
	if table.Schema != "" {
		return Quote(table.Schema) + "." + Quote(name), Quote(table.Name)
	}
	return Quote(name), table.Quoted()
}

// IndexHint implements Dialect.
func (SQLite) IndexHint(name string) string { return " INDEXED BY " + Quote(name) }

// Unindexed implements Dialect: a unary "+" makes the column an
// expression, which SQLite's planner does not look up in an index.
func (SQLite) Unindexed(col string) string { return "+" + col }

// SortOff implements Dialect: SQLite walks the groups index as it is.
func (SQLite) SortOff() string { return "" }

// SingleWriter implements Dialect.
func (SQLite) SingleWriter() bool { return true }

// CachesStatements implements Dialect.
func (SQLite) CachesStatements() bool { return true }

// LockTimeoutSQL implements Dialect: SQLite locks the whole database, up
// front (BEGIN IMMEDIATE), never rows.
func (SQLite) LockTimeoutSQL(time.Duration) string { return "" }

// PlanEachCall implements Dialect: SQLite plans with its statistics, not
// with the arguments, so there is nothing to ask for.
func (SQLite) PlanEachCall(args []any) []any { return args }

// SupportsNotify implements Dialect.
func (SQLite) SupportsNotify() bool { return false }

// LocalFile implements Dialect: the database file, its path made absolute
// and its symbolic links resolved as SQLite resolves them, so that
// processes started from other directories, or through another link,
// name the same file; an in-memory database is no process's but its own.
func (SQLite) LocalFile(raw string) (string, bool) {
	path, ok := sqliteFilePath(raw)
	if !ok {
		return "", false
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return path, true
}

// EstimatesRowCount implements Dialect.
func (SQLite) EstimatesRowCount() bool { return false }

// CountsNewRowsByRowid implements Dialect: a new row's rowid is one more
// than the largest in the table.
func (SQLite) CountsNewRowsByRowid() bool { return true }

// Cast implements Dialect: SQLite's values carry their own types.
func (SQLite) Cast(string) string { return "" }

// QualifiesReturning implements Dialect.
func (SQLite) QualifiesReturning() bool { return false }

// BatchesFinishes implements Dialect.
func (SQLite) BatchesFinishes() bool { return true }

// TypedValues implements Dialect.
func (SQLite) TypedValues() bool { return false }

// ExplainAnalyze implements Dialect.
func (SQLite) ExplainAnalyze() bool { return false }

// PollInterval implements Dialect: processes sharing a file wake each
// other over Unix sockets (notify.Local), but no trigger can wake them
// when rows are inserted, so they poll often (an idle poll is a read).
func (SQLite) PollInterval() time.Duration { return 50 * time.Millisecond }

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
