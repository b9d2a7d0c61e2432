package pampa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// Client is a cluster connected to its database: the handle dispatchers,
// workers, reports and setup work through. It is safe for concurrent use;
// dispatchers and workers made from one Client (the `pampa run` mode) wake
// each other directly instead of waiting for their next poll.
type Client struct {
	cluster *Cluster
	store   *store.Store
	jobs    []*jobRuntime
	bus     *notify.Bus

	notifierOnce sync.Once
	stopNotifier context.CancelFunc
}

// jobRuntime is a job with its generated SQL.
type jobRuntime struct {
	*Job
	sql *store.JobSQL
}

// Open connects to the cluster's database, checks that every job's table
// has its key and tracking columns with the right types, and creates
// Pampa's own tables if they are missing. A bad definition is reported
// before anything is written.
func Open(ctx context.Context, c *Cluster) (*Client, error) {
	cl, err := connect(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, j := range cl.jobs {
		if err := cl.checkColumns(ctx, j); err != nil {
			cl.Close()
			return nil, err
		}
		if err := j.sql.PinIndexes(ctx, j.Name); err != nil {
			cl.Close()
			return nil, fmt.Errorf("job %q: look for its pending index: %w", j.Name, err)
		}
	}
	if err := cl.store.Migrate(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// Connect connects to the cluster's database without checking the jobs'
// tables or creating Pampa's own: for programs that create or seed their
// tables before running `pampa setup`. Dispatchers and workers need Open.
func Connect(ctx context.Context, c *Cluster) (*Client, error) { return connect(ctx, c) }

// connect opens the database and generates each job's SQL, without
// checking the tables (setup runs before the columns exist).
func connect(ctx context.Context, c *Cluster) (*Client, error) {
	db := c.Database.WithDefaults()
	if err := db.Validate(); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, db.Driver, db.URL)
	if err != nil {
		return nil, err
	}
	for _, j := range c.jobs {
		if err := checkNamesFor(st.Dialect, j); err != nil {
			st.Close()
			return nil, err
		}
	}
	cl := &Client{cluster: c, store: st, bus: notify.NewBus()}
	for _, j := range c.jobs {
		cl.jobs = append(cl.jobs, &jobRuntime{Job: j, sql: st.Job(specOf(j))})
	}
	return cl, nil
}

// checkNamesFor checks a job's table and column names against the
// database's own identifier limit, which Validate could not know.
func checkNamesFor(d store.Dialect, j *Job) error {
	max := d.MaxIdentifierLen()
	if err := checkTableName(j.Table, max); err != nil {
		return &ConfigError{Job: j.Name, Field: "table", Value: j.Table, Reason: err.Error() + " (" + d.Name() + ")"}
	}
	if err := checkName(j.PrimaryKey, max); err != nil {
		return &ConfigError{Job: j.Name, Field: "field_primary_key", Value: j.PrimaryKey, Reason: err.Error() + " (" + d.Name() + ")"}
	}
	for _, f := range j.columns() {
		if err := checkName(f.column, max); err != nil {
			return &ConfigError{Job: j.Name, Field: f.option, Value: f.column, Reason: err.Error() + " (" + d.Name() + ")"}
		}
	}
	for _, f := range []struct{ option, column string }{{"field_created_at", j.CreatedAt}, {"group_by", j.GroupBy}} {
		if f.column == "" {
			continue
		}
		if err := checkName(f.column, max); err != nil {
			return &ConfigError{Job: j.Name, Field: f.option, Value: f.column, Reason: err.Error() + " (" + d.Name() + ")"}
		}
	}
	return nil
}

func specOf(j *Job) store.JobSpec {
	f := j.Fields
	return store.JobSpec{
		Table: store.ParseIdent(j.Table), PrimaryKey: j.PrimaryKey,
		ReservationID: f.ReservationID, ReservationTime: f.ReservationTime, ReservationTimes: f.ReservationTimes,
		StartTime: f.StartTime, EndTime: f.EndTime, Success: f.Success, ErrorDescription: f.ErrorDescription,
		CreatedAt: j.CreatedAt, RunAt: j.RunAt, MaxTryTimes: j.MaxTryTimes, Limits: j.storeLimits(),
		Drains: j.Hooks.hasOnDrained(), GroupsDone: j.GroupBy != "" && j.Hooks.hasOnGroupDone(),
	}
}

// Close closes the database connections.
func (c *Client) Close() error {
	if c.stopNotifier != nil {
		c.stopNotifier()
	}
	return c.store.Close()
}

// startNotifier connects the client's bus to other processes. On
// PostgreSQL signals go out with pg_notify and come in on one dedicated
// LISTEN connection. Engines with no such channel exchange them between
// the processes of one machine over Unix sockets beside the database file
// (notify.Local), or, for a server's database, in a temporary directory
// named from its URL; processes on other machines poll.
func (c *Client) startNotifier(log *slog.Logger) {
	c.notifierOnce.Do(func() {
		d, url := c.store.Dialect, c.cluster.Database.WithDefaults().URL
		log = log.With("component", "notifier")
		if d.SupportsNotify() {
			ctx, cancel := context.WithCancel(context.Background())
			c.stopNotifier = cancel
			sender := notify.NewSender(c.store.DB, c.bus, log)
			listener := notify.NewListener(url, c.bus, log)
			go sender.Run(ctx)
			go listener.Run(ctx)
			c.bus.Connect(sender.Send, listener.Listen)
			return
		}
		file, shared := d.LocalFile(url)
		if !shared {
			return
		}
		opts := notify.LocalOptions{File: file, Bus: c.bus, Log: log}
		if file == "" {
			opts.Key = signalKey(url)
		}
		local, err := notify.OpenLocal(opts)
		if err != nil {
			log.Warn("no wake-ups between processes; they poll", "err", err)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		// The socket is removed before Close returns, so that a process
		// that exits next leaves none behind.
		c.stopNotifier = func() { cancel(); local.Close() }
		go local.Run(ctx)
		c.bus.Connect(local.Send, local.Listen)
	})
}

// dsnPassword is the password of a keyword/value connection string.
var dsnPassword = regexp.MustCompile(`\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

// signalKey is a database URL as the processes that share the database
// all write it, password left out: it names their signals directory (in a
// hash), where a password has no business, and a process given it
// another way than in the URL still meets the others.
func signalKey(raw string) string {
	if !strings.Contains(raw, "://") {
		return dsnPassword.ReplaceAllString(raw, "")
	}
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = neturl.User(u.User.Username())
	return u.String()
}

// DB is the connection pool, for the user's own queries.
func (c *Client) DB() *sql.DB { return c.store.DB }

// Cluster returns the definitions the client was opened with.
func (c *Client) Cluster() *Cluster { return c.cluster }

// Driver returns the database driver name ("sqlite", "postgres", "crdb").
func (c *Client) Driver() string { return c.store.Dialect.Name() }

func (c *Client) job(name string) (*jobRuntime, error) {
	for _, j := range c.jobs {
		if j.Name == name {
			return j, nil
		}
	}
	return nil, fmt.Errorf("job %q: %w", name, ErrNotFound)
}

// checkColumns verifies the job's table, key and tracking columns.
func (c *Client) checkColumns(ctx context.Context, j *jobRuntime) error {
	cols, ok, err := c.store.Dialect.Columns(ctx, c.store.DB, store.ParseIdent(j.Table))
	if err != nil {
		return fmt.Errorf("job %q: read columns of table %q: %w", j.Name, j.Table, err)
	}
	if !ok {
		return &ConfigError{Job: j.Name, Field: "table", Value: j.Table, Reason: "no such table in the database"}
	}
	types := map[string]string{}
	for _, col := range cols {
		types[col.Name] = col.Type
	}
	if _, ok := types[j.PrimaryKey]; !ok {
		return &ConfigError{Job: j.Name, Field: "field_primary_key", Value: j.PrimaryKey,
			Reason: fmt.Sprintf("table %q has no such column", j.Table)}
	}
	if err := checkCreatedAt(c.store.Dialect, j.Job, types); err != nil {
		return err
	}
	if err := checkGroupBy(j.Job, types); err != nil {
		return err
	}
	var missing []string
	for _, f := range j.columns() {
		typ, ok := types[f.column]
		if !ok {
			missing = append(missing, f.option+" = "+f.column)
			continue
		}
		if !c.store.Dialect.AcceptsKind(store.Kind(f.kind), typ) {
			return &ConfigError{Job: j.Name, Field: f.option, Value: f.column,
				Reason: fmt.Sprintf("column has type %s, want %s", typ, f.kind)}
		}
	}
	if len(missing) > 0 {
		return &ConfigError{Job: j.Name, Field: "tracking columns", Value: strings.Join(missing, ", "),
			Reason: fmt.Sprintf("missing from table %q; run `pampa setup` to add them", j.Table)}
	}
	return nil
}

// checkCreatedAt checks the job's created-at column, if it names one,
// among the table's columns (name → type): it must be there, as Pampa
// never adds it, and hold timestamps.
func checkCreatedAt(d store.Dialect, j *Job, types map[string]string) error {
	if j.CreatedAt == "" {
		return nil
	}
	typ, ok := types[j.CreatedAt]
	switch {
	case !ok:
		return &ConfigError{Job: j.Name, Field: "field_created_at", Value: j.CreatedAt,
			Reason: fmt.Sprintf("table %q has no such column; add it, filled when a row is inserted (DEFAULT CURRENT_TIMESTAMP)", j.Table)}
	case !d.AcceptsKind(store.KindTime, typ):
		return &ConfigError{Job: j.Name, Field: "field_created_at", Value: j.CreatedAt,
			Reason: fmt.Sprintf("column has type %s, want %s", typ, KindTime)}
	}
	return nil
}

// checkGroupBy checks that the job's group column, if it names one, is
// among the table's columns (name → type): Pampa never adds it, the
// task's own data fills it.
func checkGroupBy(j *Job, types map[string]string) error {
	if _, ok := types[j.GroupBy]; j.GroupBy != "" && !ok {
		return &ConfigError{Job: j.Name, Field: "group_by", Value: j.GroupBy,
			Reason: fmt.Sprintf("table %q has no such column; name the column of the task's data that holds its group (a domain, a customer)", j.Table)}
	}
	return nil
}

// defaultDelay is how often loops poll when nothing wakes them: the
// dialect's poll interval (short where no notification carries inserts,
// or hand-offs between machines; an idle poll is a read).
func (c *Client) defaultDelay() time.Duration { return c.store.Dialect.PollInterval() }

// querier returns the database as hooks see it.
func (c *Client) querier() Querier { return c.store.DB }

// retryable reports whether err is a passing database condition.
func (c *Client) retryable(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) && c.store.Dialect.Retryable(err)
}
