package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/pampa-go/pampa"
)

// runner is what `pampa run` starts and stops: a worker or a node
// dispatcher with its workers.
type runner interface {
	Run(ctx context.Context) error
	Kill()
}

// pickNodes chooses the nodes of `pampa run --nodes n`: --node's node
// alone (n must be 1), or the first n nodes of the config; workers, when
// set, must fit each node's max_workers.
func pickNodes(c *pampa.Cluster, name string, n, workers int) ([]*pampa.Node, error) {
	var nds []*pampa.Node
	switch {
	case name != "":
		if n != 1 {
			return nil, usagef("--nodes %d with --node %q: --node names one node; leave it out to use the first %d nodes", n, name, n)
		}
		nd, err := pickNode(c, name)
		if err != nil {
			return nil, err
		}
		nds = []*pampa.Node{nd}
	case n > len(c.Nodes()):
		return nil, usagef("--nodes %d: the config defines %d nodes", n, len(c.Nodes()))
	default:
		nds = c.Nodes()[:n]
	}
	for _, nd := range nds {
		if workers < 0 || workers > nd.MaxWorkers {
			return nil, usagef("--workers %d: node %q has max_workers = %d", workers, nd.Name, nd.MaxWorkers)
		}
	}
	return nds, nil
}

// newNodes makes a node dispatcher for each node, with its first workers
// (0: max_workers), logging to a file of its own; the closers close those
// logs, whatever the error.
func (e *env) newNodes(client *pampa.Client, nds []*pampa.Node, workers int, lf *logFlags, wf *workerFlags) ([]runner, []io.Closer, error) {
	var out []runner
	var closers []io.Closer
	for _, nd := range nds {
		id := pampa.NodeDispatcherID(nd.Name)
		log, closer, err := lf.logger("node "+nd.Name, "node."+nd.Name+".log", nil)
		if err != nil {
			return nil, closers, err
		}
		closers = append(closers, closer)
		opts := pampa.NodeOptions{WorkerOptions: wf.opts, Workers: workers}
		opts.Logger, opts.Version = log, e.version()
		d, err := client.NewNodeDispatcher(nd.Name, opts)
		if err != nil {
			return nil, closers, fmt.Errorf("node dispatcher %s: %w", id, err)
		}
		out = append(out, d)
	}
	return out, closers, nil
}

func nodeCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("node", "--node NAME", "Run a node dispatcher and the node's workers in this process. The central dispatcher\n"+
		"reserves tasks for the node as a whole (registry id NAME.0); the node dispatcher starts them\n"+
		"for its workers, records their outcomes and beats their heartbeats, one statement each for\n"+
		"all of them. SIGTERM/SIGINT stops it gracefully; a second signal stops it at once.")
	var cf clusterFlags
	var lf logFlags
	var wf workerFlags
	var mf metricsFlags
	var name string
	var workers int
	fs.StringVar(&name, "node", "", "the node, as named in the config (required)")
	fs.IntVar(&workers, "workers", 0, "how many workers to run: NAME.1 … NAME.N (default: the node's max_workers)")
	cf.register(fs)
	lf.register(fs)
	wf.register(fs, true)
	mf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if name == "" {
		return usagef("--node is required (such as --node local)")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	c, err := e.load(cf)
	if err != nil {
		return err
	}
	nds, err := pickNodes(c, name, 1, workers)
	if err != nil {
		return err
	}
	log, closer, err := lf.logger("node "+name, "node."+name+".log", e.stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return err
	}
	defer client.Close()
	m, stopMetrics, err := mf.start(log, nil)
	if err != nil {
		return err
	}
	defer stopMetrics()
	opts := pampa.NodeOptions{WorkerOptions: wf.opts, Workers: workers}
	opts.Logger, opts.Version, opts.Metrics = log, e.version(), m
	d, err := client.NewNodeDispatcher(nds[0].Name, opts)
	if err != nil {
		return err
	}
	go killOnHardStop(ctx, wf.opts.GracePeriod, d.Kill)
	return d.Run(ctx)
}
