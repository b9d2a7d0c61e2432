package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// StartOptions say which workers to start and how.
type StartOptions struct {
	// Workers are the ids to start. Default: all of the node's.
	Workers []string
	// NodeDispatcher starts, instead of a process per worker, the node's
	// node dispatcher (id <node>.0): one process, `node --node NODE
	// --workers N`, that runs all the node's workers (N = MaxWorkers).
	// Workers must then be empty. Its limits are the node's per-worker
	// limits times N, for the process as a whole. It is refused while a
	// worker of the node runs as a process of its own, and starting those
	// is refused while it runs.
	NodeDispatcher bool
	// WorkerArgs are extra flags for `worker` (--concurrency 4, ...).
	WorkerArgs []string
	// Grace is the worker's --grace: how long a stop lets running tasks
	// finish. Default 30s.
	Grace time.Duration
	// StrictLimits refuses to start workers whose limits cannot all be
	// applied on the node.
	StrictLimits bool
	// Settle is how long a new worker must stay up to count as started.
	// Default 1.5s.
	Settle time.Duration
	// Supervisor is the kind of supervisor wanted: SupervisorSystemd,
	// SupervisorPampa, or "" for systemd where the node offers it, else
	// Pampa's own.
	Supervisor string
	// Restart is how supervisors restart crashed workers; zero fields
	// take DefaultRestartPolicy's.
	Restart RestartPolicy
}

// Started is the outcome of starting a node's workers.
type Started struct {
	Release     string         `json:"release"`
	Supervision SupervisorPlan `json:"supervision"`
	// Limits is how the node applies each limit (as planned; each
	// worker's Limits say what was read back from its process).
	Limits  []LimitReport `json:"limits,omitempty"`
	Workers []WorkerStart `json:"workers"`
	// NodeWorkers is, when a node dispatcher was asked for, how many
	// workers run in its process: <node>.1 .. <node>.NodeWorkers.
	NodeWorkers int `json:"node_workers,omitempty"`
}

// ErrNotDeployed is returned when a node has no current release.
var ErrNotDeployed = errors.New("nothing deployed")

// Start starts the node's workers from its current release, those not
// already running: starting a running worker is not an error. Each worker
// runs detached from the SSH session, which may end at once.
func (c *Conn) Start(ctx context.Context, o StartOptions) (*Started, error) {
	if err := c.checkStart(o); err != nil {
		return nil, err
	}
	limits, members, protocol := c.t.Limits, 0, minAgentProtocol
	switch {
	case o.NodeDispatcher:
		o.Workers = []string{c.t.NodeDispatcherID()}
		members, protocol = c.t.MaxWorkers, agentProtocol
		limits = limits.times(members)
	case len(o.Workers) == 0:
		o.Workers = c.t.WorkerIDs()
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 1500 * time.Millisecond
	}
	var rel *Release
	var dir string
	err := c.bounded(ctx, "read the current release", func(context.Context) error {
		sc, err := c.SFTP()
		if err != nil {
			return err
		}
		if dir, _, err = c.Dir(); err != nil {
			return err
		}
		rel, err = currentRelease(sc, dir)
		if err != nil {
			if isNotExist(err) {
				return fmt.Errorf("%w in %s: run `nodes deploy %s` first", ErrNotDeployed, dir, c.t.Name)
			}
			return fmt.Errorf("read the current release: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	req := startRequest{
		Protocol: protocol, Op: "start", Dir: dir, Release: rel.ID, Node: c.t.Name, Workers: o.Workers, NodeWorkers: members,
		WorkerArgs: o.WorkerArgs, GraceMS: ms(o.Grace), Limits: limits,
		StrictLimits: o.StrictLimits, SettleMS: ms(o.Settle), Supervisor: o.Supervisor, Restart: o.Restart,
	}
	body, _ := json.Marshal(req)
	relDir := path.Join(dir, releasesDir, rel.ID)
	out, err := c.Output(ctx, agentCommand(relDir, rel.Program, "serve"), bytes.NewReader(body))
	if err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			exit.Command = "agent (" + path.Join(relDir, rel.Program) + " nodes agent serve)"
			if o.NodeDispatcher && strings.Contains(exit.Stderr, "unsupported request") {
				return nil, fmt.Errorf("%w: release %s predates node dispatchers started by `nodes start`: deploy this version first", err, rel.ID)
			}
		}
		return nil, err
	}
	var resp startResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("agent answered %q: %w", tailLines(out, 3), err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return &Started{Release: rel.ID, Supervision: resp.Supervision, Limits: resp.Limits, Workers: resp.Workers, NodeWorkers: members}, nil
}

// checkStart refuses start options that name an unknown supervisor or
// another node's workers.
func (c *Conn) checkStart(o StartOptions) error {
	switch o.Supervisor {
	case "", SupervisorSystemd, SupervisorPampa:
	default:
		return fmt.Errorf("supervisor %q: want %s or %s (or nothing: systemd where the node offers it)", o.Supervisor, SupervisorSystemd, SupervisorPampa)
	}
	if o.NodeDispatcher && len(o.Workers) > 0 {
		return fmt.Errorf("node %s: workers %s with a node dispatcher: it runs all the node's workers in its one process, so none can be started alone",
			c.t.Name, strings.Join(o.Workers, ", "))
	}
	for _, id := range o.Workers {
		if id == c.t.NodeDispatcherID() {
			return fmt.Errorf("%s is node %s's node dispatcher, not a worker: ask for the node dispatcher to start it", id, c.t.Name)
		}
		if !c.t.HasWorker(id) {
			return fmt.Errorf("worker %s is not one of node %s's (max_workers %d)", id, c.t.Name, c.t.MaxWorkers)
		}
	}
	return nil
}
