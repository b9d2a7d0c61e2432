package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Index is an index the dispatcher's queries need on a job's table.
type Index struct {
	Name string
	DDL  string // CREATE INDEX IF NOT EXISTS …
}

// Indexes lists the indexes of a job, named after it. Each is partial, so
// it holds only the rows a hot query looks at, not the finished ones:
//   - pending:  not reserved, not started, in key order (selecting);
//   - inflight: reserved or running, by worker (claims, queue lengths,
//     recovery of dead workers and expired tries);
//   - failed:   failed tries, by end time (retries after the backoff).
func (j *JobSQL) Indexes(job string) []Index {
	base := indexBase(job)
	mk := func(suffix, cols, where string) Index {
		name := base + "_" + suffix
		target, table := Quote(name), j.t
		if j.s.Dialect.Name() == "sqlite" && j.spec.Table.Schema != "" {
			// SQLite puts the schema on the index, not on the table.
			target = Quote(j.spec.Table.Schema) + "." + Quote(name)
			table = Quote(j.spec.Table.Name)
		}
		return Index{Name: name, DDL: fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s) WHERE %s", target, table, cols, where)}
	}
	return []Index{
		// "pending" is the name PinPendingIndex looks for.
		mk("pending", j.pk, fmt.Sprintf("%s IS NULL AND %s IS NULL", j.id, j.start)),
		mk("inflight", j.id+", "+j.start, fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", j.id, j.end)),
		mk("failed", j.end, fmt.Sprintf("%s = FALSE", j.success)),
	}
}

// indexBase makes a short, stable, valid index name prefix from a job name.
func indexBase(job string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(job) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	sum := sha256.Sum256([]byte(job))
	if len(name) > 32 {
		name = name[:32]
	}
	return "pampa_" + name + "_" + hex.EncodeToString(sum[:3])
}

// IndexExists reports whether an index of that name exists in the table's
// schema.
func (s *Store) IndexExists(ctx context.Context, table Ident, name string) (bool, error) {
	var n int
	var err error
	if s.Dialect.Name() == "sqlite" {
		q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
		if table.Schema != "" {
			q = `SELECT COUNT(*) FROM ` + Quote(table.Schema) + `.sqlite_master WHERE type = 'index' AND name = ?`
		}
		err = s.DB.QueryRowContext(ctx, q, name).Scan(&n)
	} else {
		err = s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_indexes
			WHERE schemaname = COALESCE(NULLIF($1, ''), current_schema()) AND indexname = $2`, table.Schema, name).Scan(&n)
	}
	return n > 0, err
}
