// Package store is Pampa's only door to SQL. It generates, once per job, the
// statements that reserve, start, finish and relaunch rows of the user's
// table, and it keeps Pampa's own tables (worker registry, leader lease).
//
// Everything that differs between databases sits behind [Dialect]: how to
// open a connection, placeholders, the clock, intervals, row locking and
// introspection. The rest of the SQL is shared, and one test suite runs
// against every dialect.
//
// Rules kept by every statement here:
//   - identifiers are quoted, values are bound parameters;
//   - timestamps come from the database clock, never from a process;
//   - a row is reserved only while its reservation column is NULL;
//   - a worker's writes are fenced by (key, reserved for me, my try).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Dialect is what differs between SQL engines. Callers ask a dialect what
// it can do or how it writes something, never which engine it is: Name is
// for messages only.
type Dialect interface {
	// Name is "sqlite", "postgres" or "crdb", for messages and logs.
	Name() string
	// Open connects and configures the pool.
	Open(url string) (*sql.DB, error)
	// OpenError explains why a database that Open returned does not
	// answer, naming what was opened when that is safe to show.
	OpenError(url string, err error) error
	// Rebind turns the '?' placeholders of shared SQL into the dialect's.
	Rebind(query string) string
	// Now is an SQL expression for the database's current time.
	Now() string
	// Ago is an SQL expression for "now minus a duration" taking one
	// placeholder, whose argument AgoArg builds.
	Ago() string
	AgoArg(d time.Duration) any
	// SecondsSince is an SQL expression for the seconds elapsed since a
	// timestamp column.
	SecondsSince(column string) string
	// Later is an SQL expression for a timestamp column plus a number of
	// seconds, itself SQL.
	Later(column, seconds string) string
	// UnixMillis is an SQL expression for a timestamp as whole
	// milliseconds since the Unix epoch (a BIGINT), so that a time read
	// back needs no parsing of the engine's text form.
	UnixMillis(expr string) string
	// Random is an SQL expression drawn uniformly in [0, 1), per row.
	Random() string
	// SkipLocked is appended to a row-locking sub-select ("" when the
	// engine serialises writers instead).
	SkipLocked() string
	// LockRows is appended to a SELECT whose rows must stay as read until
	// the transaction ends (" FOR UPDATE"), or "" where a write
	// transaction already keeps every other writer out.
	LockRows() string
	// Types of the columns Pampa creates.
	Types() ColumnTypes
	// AcceptsKind reports whether a column declared with typ (lower case,
	// as Columns reports it) can hold values of kind.
	AcceptsKind(kind Kind, typ string) bool
	// MaxIdentifierLen is the longest identifier, in bytes, the engine
	// keeps as written.
	MaxIdentifierLen() int
	// Columns lists a table's columns, or ok=false when it does not exist.
	Columns(ctx context.Context, db Querier, table Ident) (cols []Column, ok bool, err error)
	// IndexExists reports whether an index of that name exists in the
	// table's schema.
	IndexExists(ctx context.Context, db Querier, table Ident, name string) (bool, error)
	// IndexTarget returns how CREATE INDEX names a new index of table and
	// the table it is on.
	IndexTarget(table Ident, name string) (index, on string)
	// IndexHint is what follows a table in FROM to make the planner read
	// it through the named index, or "" when the engine takes no hint.
	IndexHint(name string) string
	// SortOff is a statement that makes the rest of the transaction's
	// plans read rows in an index's order rather than sort them, or ""
	// where the engine needs no such nudge (see JobSQL.pickGroups).
	SortOff() string
	// Unindexed wraps a column reference of a condition so that the
	// planner does not choose an index for it (the column as it is where
	// the planner needs no such nudge).
	Unindexed(column string) string
	// NamedArgs binds @name parameters of user-written SQL.
	NamedArgs(args map[string]any) []any
	// Retryable reports errors worth retrying as they are (busy database,
	// serialization failure, dropped connection).
	Retryable(err error) bool
	// SingleWriter is true when the engine admits one writer at a time,
	// so that a process does best to queue its own writers itself.
	SingleWriter() bool
	// CachesStatements is true when Store should keep prepared statements
	// (parsing is much of a short statement's cost, and the driver keeps
	// no cache of its own).
	CachesStatements() bool
	// LockTimeoutSQL sets how long the rest of a transaction waits for a
	// row lock, or is "" when writers never wait on row locks.
	LockTimeoutSQL(d time.Duration) string
	// PlanEachCall prefixes the arguments of a statement so that it is
	// planned for its own arguments on each run (see Store.planEach).
	PlanEachCall(args []any) []any
	// SupportsNotify is true when the engine has LISTEN/NOTIFY.
	SupportsNotify() bool
	// LocalFile is the file that holds the database, for the processes
	// of one machine that share it to exchange wake-ups beside it where
	// the engine has no LISTEN/NOTIFY (see notify.Local): "" for a
	// server's database, which has no file here. shared is false when no
	// other process can open the same database (SQLite in memory).
	LocalFile(url string) (path string, shared bool)
	// EstimatesRowCount is true when the engine's statistics give a
	// table's row count cheaply (see JobSQL.CountEstimate).
	EstimatesRowCount() bool
	// CountsNewRowsByRowid is true when a table's rows carry an
	// increasing rowid, so that the rows added since a count can be
	// counted alone (see JobSQL.rowidEstimate).
	CountsNewRowsByRowid() bool
	// Cast is the suffix that casts a bound value to an SQL type, or ""
	// when values need none.
	Cast(typ string) string
	// QualifiesReturning is true when RETURNING may name the target's
	// columns through its alias (r.col); false when it names them bare.
	QualifiesReturning() bool
	// BatchesFinishes is true when a batch of finishes may be written as
	// one UPDATE … FROM (VALUES …).
	BatchesFinishes() bool
	// TypedValues is true when the VALUES of a batched finish need each
	// value cast to its column's type (see JobSQL.LoadColumnTypes), and
	// are named by a column list after their alias; false when they are
	// untyped and named column1, column2, ….
	TypedValues() bool
	// ExplainAnalyze is true when the engine explains a statement by
	// running it (EXPLAIN ANALYZE, lines of text); false when it explains
	// it without running it (EXPLAIN QUERY PLAN rows).
	ExplainAnalyze() bool
	// PollInterval is how often loops poll when nothing wakes them.
	PollInterval() time.Duration
}

// Kind is the family of SQL types a tracking column must have.
type Kind string

// Kinds of tracking columns.
const (
	KindText Kind = "text"
	KindTime Kind = "timestamp"
	KindInt  Kind = "integer"
	KindBool Kind = "boolean"
)

// ColumnTypes are the SQL types a dialect uses for each kind of column.
type ColumnTypes struct {
	Text, Time, Int, Bool string
}

// For returns the type of a kind.
func (t ColumnTypes) For(k Kind) string {
	switch k {
	case KindText:
		return t.Text
	case KindTime:
		return t.Time
	case KindInt:
		return t.Int
	case KindBool:
		return t.Bool
	}
	return ""
}

// Column is one column of a table as the database reports it.
type Column struct {
	Name string
	Type string // as declared, lower case
}

// Querier is satisfied by *sql.DB, *sql.Tx and *sql.Conn.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Ident is a possibly schema-qualified SQL identifier.
type Ident struct {
	Schema, Name string
}

// ParseIdent reads a table name as ParseTable does; a name ParseTable
// refuses (validation reports it) is split at its first dot.
func ParseIdent(s string) Ident {
	if id, err := ParseTable(s); err == nil {
		return id
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return Ident{Schema: s[:i], Name: s[i+1:]}
	}
	return Ident{Name: s}
}

// ParseTable reads a table name as a configuration writes it: "table" or
// "schema.table", split at the dot. Names are taken as they are, spaces and
// case included ("Order Lines"); a name that holds a dot, or starts with a
// double quote, is written in double quotes, with "" for a quote inside:
// "my.table", app."my.table", "my.app".tasks.
func ParseTable(s string) (Ident, error) {
	first, rest, err := identPart(s)
	if err != nil {
		return Ident{}, err
	}
	if rest == "" {
		return Ident{Name: first}, nil
	}
	second, rest, err := identPart(rest[1:]) // past the dot
	if err != nil {
		return Ident{}, err
	}
	if rest != "" {
		return Ident{}, errors.New(`more than one dot outside double quotes; write a name that holds a dot in double quotes ("my.table")`)
	}
	return Ident{Schema: first, Name: second}, nil
}

// identPart reads one name off the front of s, up to an unquoted dot, and
// returns what follows it (empty, or starting with the dot).
func identPart(s string) (name, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		name, rest, _ = strings.Cut(s, ".")
		if len(name) < len(s) {
			rest = s[len(name):]
		}
		return name, rest, nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		if rest = s[i+1:]; rest != "" && rest[0] != '.' {
			return "", "", fmt.Errorf("unexpected %q after the closing double quote", rest)
		}
		return b.String(), rest, nil
	}
	return "", "", errors.New("no closing double quote")
}

// CheckName refuses an identifier that cannot be quoted safely or that
// the database would not keep as written: empty, holding a NUL byte, not
// UTF-8, or longer than max bytes. Every other name is fine: identifiers
// are always quoted.
func CheckName(name string, max int) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("holds a NUL byte, which no SQL identifier can")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case len(name) > max:
		return fmt.Errorf("%d bytes long, over the database's limit of %d", len(name), max)
	}
	return nil
}

// Quoted returns the identifier quoted for SQL.
func (i Ident) Quoted() string {
	if i.Schema != "" {
		return Quote(i.Schema) + "." + Quote(i.Name)
	}
	return Quote(i.Name)
}

func (i Ident) String() string {
	if i.Schema != "" {
		return i.Schema + "." + i.Name
	}
	return i.Name
}

// Quote quotes one identifier with double quotes, doubling any inside; both
// PostgreSQL and SQLite read it so.
func Quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// rebindDollar turns '?' into $1, $2, … for PostgreSQL. A '?' inside a
// quoted identifier ("a?b"), a string literal ('a?b') or a dollar-quoted
// body ($tag$…$tag$) is left as it is: identifiers may hold any character.
func rebindDollar(q string) string {
	if strings.IndexByte(q, '?') < 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '?':
			n++
			b.WriteByte('$')
			b.WriteString(itoa(n))
		case '"', '\'':
			// Copy up to the closing quote; a doubled quote is one
			// quote inside and the scan goes on past it.
			end := i + 1
			for end < len(q) {
				if q[end] == c {
					if end+1 < len(q) && q[end+1] == c {
						end += 2
						continue
					}
					break
				}
				end++
			}
			end = min(end+1, len(q))
			b.WriteString(q[i:end])
			i = end - 1
		case '$':
			end := dollarQuoteEnd(q, i)
			b.WriteString(q[i:end])
			i = end - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// dollarQuoteEnd returns the end of a dollar-quoted string starting at i
// ($$…$$ or $tag$…$tag$), or i+1 when q[i] starts none.
func dollarQuoteEnd(q string, i int) int {
	j := i + 1
	for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || j > i+1 && q[j] >= '0' && q[j] <= '9') {
		j++
	}
	if j >= len(q) || q[j] != '$' {
		return i + 1
	}
	tag := q[i : j+1]
	if k := strings.Index(q[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return len(q)
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
