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
//   - failed:   failed tries, by end time (retries after the backoff);
//   - created:  with a created-at column only, pending rows by it (the
//     age of the oldest, see OldestPending);
//   - scheduled: with a run-at column only, pending rows that have one,
//     by it (the next due time is its first entry);
//   - succeeded: with an on_drained hook only, succeeded rows by end
//     time (a drain counts those that ended during its run);
//   - groups_inflight, groups_failed, groups_succeeded: with an
//     on_group_done hook only, by group: the rows in flight and the
//     failed ones (the completion check of a group), and the failed and
//     succeeded ones by end time (its counts).
func (j *JobSQL) Indexes(job string) []Index {
	base := indexBase(job)
	mk := func(suffix, cols, where string) Index {
		name := base + "_" + suffix
		target, table := j.s.Dialect.IndexTarget(j.spec.Table, name)
		return Index{Name: name, DDL: fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s) WHERE %s", target, table, cols, where)}
	}
	ixs := []Index{
		// "pending" is the name PinIndexes looks for.
		mk("pending", j.pk, j.pendingIndexPredicate()),
		mk("inflight", j.reservationID+", "+j.startTime, fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", j.reservationID, j.endTime)),
		mk("failed", j.endTime, fmt.Sprintf("%s = FALSE", j.success)),
		// The relaunch of failed tries reads the failures with tries left
		// and none of those failed for good, which pile up over the life
		// of a table: with the failed index alone it stepped over every
		// one of them each maintenance pass (9,900 of them, 40 ms, in a
		// table of 10,000,000 rows with 0.1% failed for good). The try
		// count cannot lead the index instead: PostgreSQL's statistics of
		// it are the whole table's, mostly first tries that succeeded, so
		// it would not believe the range is empty.
		mk(strings.TrimPrefix(j.retryIndex(), "_"), j.endTime, j.retryPredicate()),
	}
	if j.createdAt != "" {
		ixs = append(ixs, mk("created", j.createdAt, j.pendingIndexPredicate()))
	}
	if j.runAt != "" {
		ixs = append(ixs, mk("scheduled", j.runAt, j.scheduledIndexPredicate()))
	}
	if g := j.spec.Limits.GroupBy; g != "" {
		// The walk of the groups with pending rows, and each group's first
		// pending rows (ReserveLimited). It holds the other columns the
		// pending condition reads (tries, and run-at) so that those reads
		// are index-only: PostgreSQL multiplies the selectivities of "not
		// reserved" and "not started" as if independent, so it expects a
		// handful of pending rows where there are thousands; with a filter
		// left to the table it then preferred reading every pending row of
		// the range and sorting them to taking the index's first entry
		// (each step of the walk read all the pending rows after its
		// group). Read from the index alone, the first entry is by far the
		// cheaper plan.
		cols := Quote(g) + ", " + j.pk + ", " + j.reservationTimes
		if j.runAt != "" {
			cols += ", " + j.runAt
		}
		ixs = append(ixs, mk("groups", cols, j.pendingIndexPredicate()))
	}
	if j.spec.Drains {
		ixs = append(ixs, mk("succeeded", j.endTime, j.success+" = TRUE"))
	}
	if g := j.spec.Limits.GroupBy; g != "" && j.spec.GroupsDone {
		ixs = append(ixs,
			mk("groups_inflight", Quote(g), fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", j.reservationID, j.endTime)),
			mk("groups_failed", Quote(g)+", "+j.endTime, j.success+" = FALSE"),
			mk("groups_succeeded", Quote(g)+", "+j.endTime, j.success+" = TRUE"))
	}
	return ixs
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
	return s.Dialect.IndexExists(ctx, s.DB, table, name)
}

// AddColumn adds a tracking column of kind to the job's table, with the
// dialect's type for it, which it returns.
func (j *JobSQL) AddColumn(ctx context.Context, name string, kind Kind) (typ string, err error) {
	typ = j.s.Dialect.Types().For(kind)
	if typ == "" {
		return "", fmt.Errorf("no column type for kind %q", kind)
	}
	_, err = j.s.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", j.t, Quote(name), typ))
	return typ, err
}

// CreateIndexes creates the job's indexes (see Indexes) that are missing,
// calling created with the name of each it made.
func (j *JobSQL) CreateIndexes(ctx context.Context, job string, created func(name string)) error {
	for _, ix := range j.Indexes(job) {
		exists, err := j.s.IndexExists(ctx, j.spec.Table, ix.Name)
		if err != nil {
			return fmt.Errorf("look up index %s: %w", ix.Name, err)
		}
		if exists {
			continue
		}
		if _, err := j.s.Exec(ctx, ix.DDL); err != nil {
			return fmt.Errorf("create index %s: %w", ix.Name, err)
		}
		created(ix.Name)
	}
	return nil
}

// CreateNotifyTrigger installs the job's notify trigger (see
// NotifyTriggerDDL) unless it is there, and reports its name and whether
// it made it. Only where the dialect supports notifications.
func (j *JobSQL) CreateNotifyTrigger(ctx context.Context, job string) (trigger string, created bool, err error) {
	if !j.s.Dialect.SupportsNotify() {
		return "", false, nil
	}
	trigger, ddl := j.NotifyTriggerDDL(job)
	exists, err := j.s.TriggerExists(ctx, j.spec.Table, trigger)
	if err != nil {
		return trigger, false, fmt.Errorf("look up trigger %s: %w", trigger, err)
	}
	if exists {
		return trigger, false, nil
	}
	for _, q := range ddl {
		if _, err := j.s.Exec(ctx, q); err != nil {
			return trigger, false, fmt.Errorf("create notify trigger: %w", err)
		}
	}
	return trigger, true, nil
}
