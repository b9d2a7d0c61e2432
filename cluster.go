package pampa

import (
	"context"
	"fmt"
	"log/slog"
)

// Database drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
	// DriverCockroach speaks PostgreSQL's protocol, but has no
	// LISTEN/NOTIFY (its processes wake each other only within a
	// machine, and poll) and retries serialization failures.
	DriverCockroach = "crdb"
)

// Database says where the tasks live.
type Database struct {
	// Driver is "sqlite" (default), "postgres" or "crdb".
	Driver string `yaml:"driver"`
	// URL is a file path or "file:" URI for SQLite (default "pampa.db"), a
	// PostgreSQL connection string or URL otherwise. A relative SQLite path
	// read from a config file is taken from the file's directory (see
	// [ParseConfig]); one set in Go, from the current directory.
	URL string `yaml:"url"`
}

// WithDefaults fills in the SQLite default.
func (d Database) WithDefaults() Database {
	if d.Driver == "" {
		d.Driver = DriverSQLite
	}
	if d.URL == "" && d.Driver == DriverSQLite {
		d.URL = "pampa.db"
	}
	return d
}

// Validate checks the driver name and that a URL is given.
func (d Database) Validate() error {
	switch d.Driver {
	case DriverSQLite, DriverPostgres, DriverCockroach:
	default:
		return &ConfigError{Field: "database.driver", Value: d.Driver, Reason: "supported drivers are sqlite, postgres and crdb"}
	}
	if d.URL == "" {
		return &ConfigError{Field: "database.url", Reason: "a " + d.Driver + " database needs a connection URL"}
	}
	return nil
}

// Cluster is everything Pampa knows about one deployment: the database, the
// nodes that run workers and the jobs they process. Build one in Go with
// [Cluster.AddNode] and [Cluster.AddJob], or load it with [LoadConfig].
type Cluster struct {
	Database Database
	nodes    []*Node
	jobs     []*Job

	// OnDispatcherStart runs once a dispatcher has connected to the
	// database, before its first round (the original's dispatcher snippet).
	OnDispatcherStart func(ctx context.Context, log *slog.Logger) error
	// OnWorkerStart runs once a worker has connected and registered,
	// before it takes its first task (the original's worker snippet).
	OnWorkerStart func(ctx context.Context, log *slog.Logger, workerID string) error
}

// AddNode validates a node and adds it. Node names must be unique.
func (c *Cluster) AddNode(n Node) error {
	n = n.WithDefaults()
	if err := n.Validate(); err != nil {
		return err
	}
	if c.Node(n.Name) != nil {
		return &ConfigError{Node: n.Name, Field: "name", Value: n.Name, Reason: "two nodes have this name"}
	}
	c.nodes = append(c.nodes, &n)
	return nil
}

// AddJob fills a job's defaults, validates it and adds it. Job names must
// be unique.
func (c *Cluster) AddJob(j Job) error {
	j = j.WithDefaults()
	if err := j.Validate(); err != nil {
		return err
	}
	if c.Job(j.Name) != nil {
		return &ConfigError{Job: j.Name, Field: "name", Value: j.Name, Reason: "two jobs have this name"}
	}
	c.jobs = append(c.jobs, &j)
	return nil
}

// Jobs returns the jobs in the order they were added, which is also the
// order the dispatcher serves them in.
func (c *Cluster) Jobs() []*Job { return c.jobs }

// Nodes returns the nodes in the order they were added.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Job returns the job with this name, or nil.
func (c *Cluster) Job(name string) *Job {
	for _, j := range c.jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Node returns the node with this name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Handle registers the processing function of a job defined elsewhere (in
// a config file, say). It is how a program gives Go code to config-defined
// jobs before handing control to the CLI. A job whose function is a
// command (exec) takes no Go function too.
func (c *Cluster) Handle(jobName string, fn ProcessFunc) error {
	j := c.Job(jobName)
	if j == nil {
		return fmt.Errorf("handle %q: job %w", jobName, ErrNotFound)
	}
	if j.external() {
		return fmt.Errorf("job %q runs its processing function as %s: it takes no Go processing function too; remove one of them", jobName, j.externalSpec())
	}
	j.Process = fn
	return nil
}

// CheckWorkerID returns an error unless some node defines the worker id.
func (c *Cluster) CheckWorkerID(id string) error {
	node, n, err := ParseWorkerID(id)
	if err != nil {
		return err
	}
	nd := c.Node(node)
	if nd == nil {
		return fmt.Errorf("worker id %q: no node named %q is defined", id, node)
	}
	if n > nd.MaxWorkers {
		return fmt.Errorf("worker id %q: node %q has max_workers = %d", id, node, nd.MaxWorkers)
	}
	return nil
}

// WorkerIDs lists every worker id of every node.
func (c *Cluster) WorkerIDs() []string {
	var ids []string
	for _, n := range c.nodes {
		ids = append(ids, n.WorkerIDs()...)
	}
	return ids
}
