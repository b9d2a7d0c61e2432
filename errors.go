package pampa

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/handler"
	"github.com/pampa-go/pampa/internal/store"
)

// ErrNotFound is returned when a job, node or worker asked for by name does
// not exist.
var ErrNotFound = errors.New("not found")

// ErrBadKey is returned (wrapped, naming the job and the text) when a key
// written as text cannot be one of the job's keys: "x" for an integer key
// column.
var ErrBadKey = store.ErrBadKey

// ErrCancelled is the cause (context.Cause) of a processing function's
// context when an operator cancelled its task ([Client.Cancel]): the
// function should return; whatever it returns is dropped, as the task is
// already failed for good.
var ErrCancelled = engine.ErrCancelled

// ErrFinal marks a failure not worth trying again: a processing function
// (or a starter hook) whose error wraps it fails its task for good,
// whatever tries it has left. Its try count is raised to max_try_times in
// the statement that records the outcome, as `pampa discard` does, and
// `pampa retry` makes it pending again. Wrap an error with [Final]; a
// command run by exec says the same with exit status 100, a persistent one
// with "final": true (docs/handlers.md).
var ErrFinal = handler.ErrFinal

// Final returns an error with err's text that fails its task for good
// (see [ErrFinal]): for input that no retry will fix. Final(nil) is
// ErrFinal itself, so that a mistaken nil still fails the try.
func Final(err error) error {
	if err == nil {
		return ErrFinal
	}
	return finalError{err}
}

// finalError is err, marked final; errors.Is finds both.
type finalError struct{ err error }

func (e finalError) Error() string   { return e.err.Error() }
func (e finalError) Unwrap() []error { return []error{e.err, ErrFinal} }

// ConfigError reports a bad definition: which job (or node), which field,
// which value, and why. Nothing is written to the database when one is
// returned.
type ConfigError struct {
	Job    string // the job's name, if the field belongs to a job
	Node   string // the node's name, if the field belongs to a node
	Field  string // the option's name, as in the config file
	Value  string // the offending value
	Reason string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.Job != "":
		fmt.Fprintf(&b, "job %q: ", e.Job)
	case e.Node != "":
		fmt.Fprintf(&b, "node %q: ", e.Node)
	}
	b.WriteString(e.Field)
	if e.Value != "" {
		fmt.Fprintf(&b, " = %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// maxNameLen bounds table and column names before the database is known:
// the longest any dialect keeps (SQLite's cap); once connected, names are
// checked against the database's own limit (PostgreSQL's is 63 bytes).
const maxNameLen = 255

// checkTableName accepts a table name as store.ParseTable reads it, each
// part a name that checkName accepts.
func checkTableName(name string, max int) error {
	id, err := store.ParseTable(name)
	if err != nil {
		return err
	}
	if id.Schema != "" {
		if err := store.CheckName(id.Schema, max); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return store.CheckName(id.Name, max)
}

// checkName accepts any column name the database can take: spaces, mixed
// case and reserved words are fine, as every identifier is quoted.
func checkName(name string, max int) error { return store.CheckName(name, max) }

// maxIdentifierLen bounds plain names (of nodes, which also name workers
// and their files), as PostgreSQL's limit does.
const maxIdentifierLen = 63

// checkIdentifier accepts plain names: letters, digits, '_' and '$', not
// starting with a digit; a name may be qualified ("a.b"). Node names keep
// to it, as they end up in worker ids, file names and shell commands.
func checkIdentifier(name string, qualified bool) error {
	parts := []string{name}
	if qualified {
		parts = strings.Split(name, ".")
		if len(parts) > 2 {
			return errors.New("at most one dot (schema.table) is allowed")
		}
	}
	for _, p := range parts {
		if p == "" {
			return errors.New("empty name")
		}
		if len(p) > maxIdentifierLen {
			return fmt.Errorf("longer than %d bytes", maxIdentifierLen)
		}
		for i, r := range p {
			ok := r == '_' || unicode.IsLetter(r) || (i > 0 && (unicode.IsDigit(r) || r == '$'))
			if !ok {
				return fmt.Errorf("not a plain SQL identifier (character %q at %d); use letters, digits and '_'", r, i)
			}
		}
	}
	return nil
}
