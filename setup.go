package pampa

import (
	"context"
	"fmt"

	"github.com/pampa-go/pampa/internal/store"
)

// SetupChange is one change Setup made, or would make.
type SetupChange struct {
	Job  string `json:"job"`
	What string `json:"what"`
}

func (c SetupChange) String() string { return "job " + c.Job + ": " + c.What }

// SetupOptions choose what Setup prepares.
type SetupOptions struct {
	// Jobs names the jobs whose tables to prepare; empty means all.
	Jobs []string
	// Notify installs, on PostgreSQL, a trigger that wakes the dispatchers
	// as soon as rows are inserted into a job's table, instead of at their
	// next poll. It costs one pg_notify per INSERT statement (not per row).
	// Ignored on other databases, which have no notifications.
	Notify bool
}

// Setup prepares the jobs' tables: it adds the tracking columns that are
// missing, with the right types, and creates the indexes the dispatcher
// needs (and the notify trigger when asked). It is idempotent and returns
// what it changed. Every job is checked before anything is changed: a
// missing table, a missing primary key or a tracking column of the wrong
// type is an error and nothing is written.
func Setup(ctx context.Context, c *Cluster, opts SetupOptions) ([]SetupChange, error) {
	cl, err := connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	targets := cl.jobs
	if len(opts.Jobs) > 0 {
		targets = nil
		for _, name := range opts.Jobs {
			j, err := cl.job(name)
			if err != nil {
				return nil, err
			}
			targets = append(targets, j)
		}
	}
	type plan struct {
		job     *jobRuntime
		columns []string // DDL
		changes []SetupChange
	}
	var plans []plan
	d := cl.store.Dialect
	types := d.Types()
	kindType := map[ColumnKind]string{KindText: types.Text, KindTime: types.Time, KindInt: types.Int, KindBool: types.Bool}
	planned := map[string]map[string]string{} // table → column → type, added by earlier plans
	for _, j := range targets {
		table := store.ParseIdent(j.Table)
		cols, ok, err := d.Columns(ctx, cl.store.DB, table)
		if err != nil {
			return nil, fmt.Errorf("job %q: read columns of table %q: %w", j.Name, j.Table, err)
		}
		if !ok {
			return nil, &ConfigError{Job: j.Name, Field: "table", Value: j.Table, Reason: "no such table in the database; create it first"}
		}
		have := map[string]string{}
		for _, col := range cols {
			have[col.Name] = col.Type
		}
		if planned[table.String()] == nil {
			planned[table.String()] = map[string]string{}
		}
		for name, typ := range planned[table.String()] {
			have[name] = typ
		}
		if _, ok := have[j.PrimaryKey]; !ok {
			return nil, &ConfigError{Job: j.Name, Field: "field_primary_key", Value: j.PrimaryKey,
				Reason: fmt.Sprintf("table %q has no such column", j.Table)}
		}
		p := plan{job: j}
		for _, f := range j.Fields.fields() {
			typ, exists := have[f.column]
			if exists {
				if !kindAccepts(d.Name(), f.kind, typ) {
					return nil, &ConfigError{Job: j.Name, Field: f.option, Value: f.column,
						Reason: fmt.Sprintf("column exists with type %s, want %s; change or rename it by hand", typ, f.kind)}
				}
				continue
			}
			have[f.column] = kindType[f.kind]
			planned[table.String()][f.column] = kindType[f.kind] // a column shared by two jobs is added once
			p.columns = append(p.columns, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", table.Quoted(), store.Quote(f.column), kindType[f.kind]))
			p.changes = append(p.changes, SetupChange{Job: j.Name, What: fmt.Sprintf("added column %s %s (%s)", f.column, kindType[f.kind], f.option)})
		}
		plans = append(plans, p)
	}
	var changes []SetupChange
	for _, p := range plans {
		for i, ddl := range p.columns {
			if _, err := cl.store.Exec(ctx, ddl); err != nil {
				return changes, fmt.Errorf("job %q: %s: %w", p.job.Name, p.changes[i].What, err)
			}
			changes = append(changes, p.changes[i])
		}
		table := store.ParseIdent(p.job.Table)
		for _, ix := range p.job.sql.Indexes(p.job.Name) {
			exists, err := cl.store.IndexExists(ctx, table, ix.Name)
			if err != nil {
				return changes, fmt.Errorf("job %q: look up index %s: %w", p.job.Name, ix.Name, err)
			}
			if exists {
				continue
			}
			if _, err := cl.store.Exec(ctx, ix.DDL); err != nil {
				return changes, fmt.Errorf("job %q: create index %s: %w", p.job.Name, ix.Name, err)
			}
			changes = append(changes, SetupChange{Job: p.job.Name, What: "created index " + ix.Name})
		}
	}
	if opts.Notify && cl.store.Dialect.Name() == DriverPostgres {
		for _, p := range plans {
			trigger, ddl := p.job.sql.NotifyTriggerDDL(p.job.Name)
			exists, err := cl.store.TriggerExists(ctx, store.ParseIdent(p.job.Table), trigger)
			if err != nil {
				return changes, fmt.Errorf("job %q: look up trigger %s: %w", p.job.Name, trigger, err)
			}
			if exists {
				continue
			}
			for _, q := range ddl {
				if _, err := cl.store.Exec(ctx, q); err != nil {
					return changes, fmt.Errorf("job %q: create notify trigger: %w", p.job.Name, err)
				}
			}
			changes = append(changes, SetupChange{Job: p.job.Name, What: "created trigger " + trigger + " (inserts wake the dispatchers)"})
		}
	}
	if err := cl.store.Migrate(ctx); err != nil {
		return changes, err
	}
	return changes, nil
}
