package pampa

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/nodedispatch"
	"github.com/pampa-go/pampa/internal/proc"
	"github.com/pampa-go/pampa/internal/store"
)

// NodeOptions tune a node dispatcher. The embedded WorkerOptions apply to
// each of its workers (Concurrency, HeartbeatInterval and HeartbeatTTL,
// GracePeriod, OverrunGrace, Logger, Version, Metrics), with the same
// defaults; Delay is how often an idle node dispatcher looks for rows.
type NodeOptions struct {
	WorkerOptions
	// Workers is how many workers the node dispatcher runs: the ids
	// <node>.1 … <node>.Workers. Default: the node's max_workers.
	Workers int
}

// NodeDispatcher runs a node's workers in this process under one
// claimer: the central dispatcher reserves rows for the node dispatcher
// as a whole, and the node dispatcher starts them for its workers,
// records their outcomes and beats their heartbeats, a statement each
// for all of them. The database then serves one claimer per node, not
// one per worker (docs/multi-level.md). Each row still records the
// worker that runs it, and the workers keep their registry rows: the
// dashboard and reports show them as any worker.
type NodeDispatcher struct {
	id      string
	workers []string
	rt      *nodedispatch.Runtime
	callers map[string]map[string]caller // by worker id, then job name
}

// NodeDispatcherID is the registry id of a node's dispatcher:
// "<node>.0", beside its workers' <node>.1 … <node>.N.
func NodeDispatcherID(node string) string { return WorkerID(node, 0) }

// NewNodeDispatcher prepares the dispatcher of a defined node and its
// workers. Each worker must be able to run at least one job, as for
// NewWorker.
func (c *Client) NewNodeDispatcher(node string, opts NodeOptions) (*NodeDispatcher, error) {
	nd := c.cluster.Node(node)
	if nd == nil {
		return nil, fmt.Errorf("node dispatcher: node %q: no such node is defined", node)
	}
	if opts.Workers == 0 {
		opts.Workers = nd.MaxWorkers
	}
	if opts.Workers < 1 || opts.Workers > nd.MaxWorkers {
		return nil, fmt.Errorf("node dispatcher %s: workers = %d: node %q has max_workers = %d", node, opts.Workers, node, nd.MaxWorkers)
	}
	if opts.Delay == 0 {
		opts.Delay = c.defaultDelay()
	}
	wo := opts.WorkerOptions.withDefaults()
	if wo.Concurrency < 1 {
		return nil, fmt.Errorf("node dispatcher %s: concurrency = %d: must be at least 1", node, wo.Concurrency)
	}
	id := NodeDispatcherID(node)
	d := &NodeDispatcher{id: id, callers: map[string]map[string]caller{}}
	host, _ := os.Hostname()
	used := map[string]bool{}
	var members []nodedispatch.Member
	for i := 1; i <= opts.Workers; i++ {
		wid := WorkerID(node, i)
		var names, skipped []string
		for _, j := range c.jobs {
			switch {
			case j.Process == nil && !j.external():
				skipped = append(skipped, j.Name+" (no processing function registered)")
			case !j.AcceptsWorker(wid):
				skipped = append(skipped, j.Name+" (filter_worker_id "+j.FilterWorkerID+" excludes it)")
			default:
				names = append(names, j.Name)
				used[j.Name] = true
				if j.external() {
					call, err := newCaller(j.Job, wo.withLogger(wid))
					if err != nil {
						d.closeCallers()
						return nil, fmt.Errorf("worker %s: %w", wid, err)
					}
					if d.callers[wid] == nil {
						d.callers[wid] = map[string]caller{}
					}
					d.callers[wid][j.Name] = call
				}
			}
		}
		if len(names) == 0 {
			d.closeCallers()
			return nil, fmt.Errorf("worker %s: no job it can run: %s", wid, strings.Join(skipped, "; "))
		}
		members = append(members, nodedispatch.Member{
			Info:        store.WorkerInfo{ID: wid, Node: node, Host: host, PID: os.Getpid(), Version: wo.Version, Jobs: names, ProcToken: proc.Self()},
			Concurrency: wo.Concurrency, Jobs: names, Log: wo.Logger.With("worker", wid),
		})
		d.workers = append(d.workers, wid)
	}
	var jobs []*jobRuntime
	byName := map[string]*Job{}
	for _, j := range c.jobs {
		if used[j.Name] {
			jobs = append(jobs, j)
			byName[j.Name] = j.Job
		}
	}
	// One engine job per job, shared by every worker of the node, so that
	// one statement records the outcomes of all; a job whose function is
	// external calls it through the caller of the try's worker.
	ejobs := c.engineJobs(jobs)
	for _, e := range ejobs {
		name := e.Name
		if !byName[name].external() {
			continue
		}
		e.Hooks.Process = func(ctx context.Context, a *engine.Attempt) error {
			return callExternal(ctx, d.callers[a.Worker][name], taskOf(a))
		}
	}
	log := wo.Logger.With("node_dispatcher", id)
	c.startNotifier(wo.Logger)
	o := nodedispatch.Options{
		Store: c.store, Bus: c.bus, Members: members, Jobs: wo.Metrics.observe(ejobs, engine.WorkerRole), Log: log,
		Info:  store.WorkerInfo{ID: id, Node: node, Host: host, PID: os.Getpid(), Version: wo.Version, ProcToken: proc.Self()},
		Delay: wo.Delay, HeartbeatInterval: wo.HeartbeatInterval, HeartbeatTTL: wo.HeartbeatTTL,
		GracePeriod: wo.GracePeriod, OverrunGrace: wo.OverrunGrace,
		Retryable: c.retryable, Observer: wo.Metrics.observer(),
		NewHandle: func(a *engine.Attempt) any { return &Task{a: a, job: byName[a.Job.Name], db: c.store.DB} },
	}
	if start := c.cluster.OnWorkerStart; start != nil {
		o.OnStart = func(ctx context.Context, wid string) error { return start(ctx, wo.Logger.With("worker", wid), wid) }
	}
	rt, err := nodedispatch.New(o)
	if err != nil {
		d.closeCallers()
		return nil, err
	}
	d.rt = rt
	return d, nil
}

// ID returns the node dispatcher's registry id, "<node>.0".
func (d *NodeDispatcher) ID() string { return d.id }

// Workers returns the ids of its workers.
func (d *NodeDispatcher) Workers() []string { return append([]string(nil), d.workers...) }

// Stats returns the counters of all its workers together.
func (d *NodeDispatcher) Stats() *WorkerStats { return d.rt.Stats() }

// Kill stops the node dispatcher and its workers at once, as Worker.Kill
// does a worker: no more heartbeats or writes, running tasks cancelled.
func (d *NodeDispatcher) Kill() { d.rt.Kill() }

// Run registers the node dispatcher and its workers and runs their tasks
// until ctx is cancelled, then stops gracefully: no new tasks, running
// ones finish within GracePeriod (then are cancelled), the rows reserved
// for the node and not started are handed back, and every registry row
// of the node says "stopped".
func (d *NodeDispatcher) Run(ctx context.Context) error {
	defer d.closeCallers()
	return d.rt.Run(ctx)
}

func (d *NodeDispatcher) closeCallers() {
	for _, cs := range d.callers {
		for _, call := range cs {
			call.Close()
		}
	}
}
