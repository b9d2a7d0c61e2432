package pampa

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrNotFound is returned when a job, node or worker asked for by name does
// not exist.
var ErrNotFound = errors.New("not found")

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

// maxIdentifierLen is PostgreSQL's limit; SQLite has none but the same rule
// keeps configs portable.
const maxIdentifierLen = 63

// checkIdentifier accepts plain SQL identifiers: letters, digits, '_' and
// '$', not starting with a digit. Identifiers are always quoted in generated
// SQL; refusing anything else keeps a name that looks like SQL from ever
// reaching the database. A table may be schema-qualified ("schema.table").
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
