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
	plans, err := cl.planSetup(ctx, targets)
	if err != nil {
		return nil, err
	}
	changes, err := cl.applySetup(ctx, plans, opts)
	if err != nil {
		return changes, err
	}
	if err := cl.store.Migrate(ctx); err != nil {
		return changes, err
	}
	return changes, nil
}

// setupPlan is what Setup will change in one job's table.
type setupPlan struct {
	job     *jobRuntime
	columns []namedField // to add
	changes []SetupChange
}

// planSetup checks every job's table and decides what to add, writing
// nothing.
func (cl *Client) planSetup(ctx context.Context, targets []*jobRuntime) ([]setupPlan, error) {
	var plans []setupPlan
	d := cl.store.Dialect
	types := d.Types()
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
		if err := checkCreatedAt(d, j.Job, have); err != nil {
			return nil, err
		}
		if err := checkGroupBy(j.Job, have); err != nil {
			return nil, err
		}
		p := setupPlan{job: j}
		for _, f := range j.columns() {
			typ, exists := have[f.column]
			if exists {
				if !d.AcceptsKind(store.Kind(f.kind), typ) {
					return nil, &ConfigError{Job: j.Name, Field: f.option, Value: f.column,
						Reason: fmt.Sprintf("column exists with type %s, want %s; change or rename it by hand", typ, f.kind)}
				}
				continue
			}
			typ = types.For(store.Kind(f.kind))
			have[f.column] = typ
			planned[table.String()][f.column] = typ // a column shared by two jobs is added once
			p.columns = append(p.columns, f)
			p.changes = append(p.changes, SetupChange{Job: j.Name, What: fmt.Sprintf("added column %s %s (%s)", f.column, typ, f.option)})
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// applySetup makes the planned changes (and the indexes and triggers that
// are missing), and returns those it made.
func (cl *Client) applySetup(ctx context.Context, plans []setupPlan, opts SetupOptions) ([]SetupChange, error) {
	var changes []SetupChange
	for _, p := range plans {
		for i, f := range p.columns {
			if _, err := p.job.sql.AddColumn(ctx, f.column, store.Kind(f.kind)); err != nil {
				return changes, fmt.Errorf("job %q: %s: %w", p.job.Name, p.changes[i].What, err)
			}
			changes = append(changes, p.changes[i])
		}
		err := p.job.sql.CreateIndexes(ctx, p.job.Name, func(name string) {
			changes = append(changes, SetupChange{Job: p.job.Name, What: "created index " + name})
		})
		if err != nil {
			return changes, fmt.Errorf("job %q: %w", p.job.Name, err)
		}
	}
	if opts.Notify {
		for _, p := range plans {
			trigger, created, err := p.job.sql.CreateNotifyTrigger(ctx, p.job.Name)
			if err != nil {
				return changes, fmt.Errorf("job %q: %w", p.job.Name, err)
			}
			if created {
				changes = append(changes, SetupChange{Job: p.job.Name, What: "created trigger " + trigger + " (inserts wake the dispatchers)"})
			}
		}
	}
	return changes, nil
}
