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
	"strings"
	"time"
)

// Dialect is what differs between SQL engines.
type Dialect interface {
	// Name is "sqlite", "postgres" or "crdb".
	Name() string
	// Open connects and configures the pool.
	Open(url string) (*sql.DB, error)
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
	// SkipLocked is appended to a row-locking sub-select ("" when the
	// engine serialises writers instead).
	SkipLocked() string
	// Types of the columns Pampa creates.
	Types() ColumnTypes
	// Columns lists a table's columns, or ok=false when it does not exist.
	Columns(ctx context.Context, db Querier, table Ident) (cols []Column, ok bool, err error)
	// NamedArgs binds @name parameters of user-written SQL.
	NamedArgs(args map[string]any) []any
	// Retryable reports errors worth retrying as they are (busy database,
	// serialization failure, dropped connection).
	Retryable(err error) bool
}

// ColumnTypes are the SQL types a dialect uses for each kind of column.
type ColumnTypes struct {
	Text, Time, Int, Bool string
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

// ParseIdent splits "schema.name" (or "name").
func ParseIdent(s string) Ident {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return Ident{Schema: s[:i], Name: s[i+1:]}
	}
	return Ident{Name: s}
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

// rebindDollar turns '?' into $1, $2, … for PostgreSQL. Shared SQL never
// has '?' inside string literals or quoted identifiers (identifiers are
// validated to be plain names), so a plain scan is enough.
func rebindDollar(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
