package cli

// `pampa nodes start`, `stop` and `restart`.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/nodes"
)

// startFlags are the flags of start and restart.
type startFlags struct {
	nodeFlags
	worker         string
	nodeDispatcher bool
	grace          time.Duration
	settle         time.Duration
	wait           time.Duration
	ttl            time.Duration
	strict         bool
	asJSON         bool
	concurrency    int
	delay          time.Duration
	heartbeat      time.Duration
	verbose        bool
	supervisor     string
	restart        nodes.RestartPolicy
	fs             *flag.FlagSet
}

func (f *startFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	f.nodeFlags.register(fs)
	fs.StringVar(&f.worker, "worker", "", "only this worker, such as node1.2")
	fs.BoolVar(&f.nodeDispatcher, "node-dispatcher", false, "start on each node, instead of a process per worker, its node dispatcher NODE.0: one process, pampa node\n"+
		"--node NODE --workers MAX_WORKERS, that claims for all the node's workers and runs them (see above)")
	fs.DurationVar(&f.grace, "grace", 30*time.Second, "the workers' --grace: on stop, how long running tasks may finish")
	fs.DurationVar(&f.settle, "settle", 1500*time.Millisecond, "how long a new worker must stay up on its node to count as started")
	fs.DurationVar(&f.wait, "wait", 30*time.Second, "then wait up to this long for the started workers to register as alive (0: do not wait)")
	fs.DurationVar(&f.ttl, "worker-ttl", 15*time.Second, "a worker silent this long counts as dead")
	fs.BoolVar(&f.strict, "strict-limits", false, "refuse to start workers whose node cannot apply all their limits (default: start them and say which limits are not applied, and why)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON, one object per node")
	fs.IntVar(&f.concurrency, "concurrency", 1, "the workers' --concurrency")
	fs.DurationVar(&f.delay, "delay", time.Second, "the workers' --delay")
	fs.DurationVar(&f.heartbeat, "heartbeat", 5*time.Second, "the workers' --heartbeat")
	fs.BoolVar(&f.verbose, "verbose", false, "the workers' --verbose")
	d := nodes.DefaultRestartPolicy
	fs.StringVar(&f.supervisor, "supervisor", "auto", "what restarts crashed workers: systemd, pampa (its own supervisor), or auto (systemd where the node offers it, else pampa)")
	fs.DurationVar(&f.restart.Delay, "restart-delay", d.Delay, "wait before restarting a crashed worker; doubled at each crash within --restart-window")
	fs.DurationVar(&f.restart.MaxDelay, "restart-max-delay", d.MaxDelay, "the longest wait before a restart")
	fs.IntVar(&f.restart.Limit, "restart-limit", d.Limit, "restarts --restart-window may hold: at the next crash within it, the supervisor gives up")
	fs.DurationVar(&f.restart.Window, "restart-window", d.Window, "the window of --restart-limit and of the doubling")
}

// check refuses flag values that make no sense.
func (f *startFlags) check() error {
	if f.nodeDispatcher && f.worker != "" {
		return usagef("--worker %s with --node-dispatcher: the node dispatcher runs all the node's workers in its one process, so none starts alone; leave out --worker (or --node-dispatcher)", f.worker)
	}
	switch f.supervisor {
	case "auto", nodes.SupervisorSystemd, nodes.SupervisorPampa:
	default:
		return usagef("--supervisor %q: want auto, systemd or pampa", f.supervisor)
	}
	r := f.restart
	if r.Delay <= 0 || r.MaxDelay < r.Delay || r.Limit < 1 || r.Window <= 0 {
		return usagef("restart policy: want --restart-delay > 0 (got %s), --restart-max-delay >= it (got %s), --restart-limit >= 1 (got %d) and --restart-window > 0 (got %s)",
			r.Delay, r.MaxDelay, r.Limit, r.Window)
	}
	return nil
}

// supervisorKind is --supervisor as StartOptions takes it.
func (f *startFlags) supervisorKind() string {
	if f.supervisor == "auto" {
		return ""
	}
	return f.supervisor
}

// workerArgs passes on the worker flags given on the command line.
func (f *startFlags) workerArgs() []string {
	var args []string
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "concurrency", "delay", "heartbeat", "verbose":
			args = append(args, "--"+fl.Name+"="+fl.Value.String())
		}
	})
	return args
}

const startAbout = "Start each node's workers (max_workers of them, or the one --worker names) from the node's\n" +
	"current release, detached from the SSH session, each with its own log (logs/worker.ID.log,\n" +
	"and logs/worker.ID.out for its output) and pid file (run/ID.pid) in the node's directory.\n" +
	"A running worker is left alone.\n\n" +
	"Each worker runs under a supervisor that starts it again when it exits with a non-zero\n" +
	"status or is killed (not after a graceful stop), after --restart-delay, doubled at each crash\n" +
	"within --restart-window up to --restart-max-delay; after --restart-limit restarts within\n" +
	"the window it gives up, and `nodes status` says so. The supervisor is a systemd unit where\n" +
	"the node's systemd manager outlives the SSH session (root, or a user with lingering, which\n" +
	"start enables if loginctl allows): the workers then also start again after a reboot.\n" +
	"Elsewhere it is Pampa's own, one small process per worker (run/ID.super.json).\n\n" +
	"The node's per-worker limits (max_ram MiB, max_cpu % of a CPU, max_disk_io and max_net_io\n" +
	"Mbit/s) are applied with what the node offers, best first: the worker's systemd unit\n" +
	"(MemoryMax, CPUQuota, IO{Read,Write}BandwidthMax) when systemd supervises, else a\n" +
	"systemd-run scope (as root, or as a user whose systemd manager lingers); cgroup files in a\n" +
	"cgroup the SSH user may write (an administrator delegates one with: mkdir\n" +
	"/sys/fs/cgroup/pampa-USER && chown USER /sys/fs/cgroup/pampa-USER, on cgroup v1 under each of\n" +
	"cpu, memory and blkio); for RAM alone, RLIMIT_DATA (it also counts the 100-200 MiB of address\n" +
	"space the Go runtime reserves). Workers with a RAM limit also get GOMEMLIMIT at 90% of it.\n" +
	"Network bandwidth cannot be limited per process, by systemd either. Each limit is reported\n" +
	"applied, once read back from the running worker, or not applied and why; --strict-limits\n" +
	"refuses the latter.\n\n" +
	"With --node-dispatcher, each node runs one process instead: its node dispatcher, registered as\n" +
	"NODE.0, which claims for the node's workers NODE.1 … NODE.<max_workers> and runs them in its own\n" +
	"process (see docs/multi-level.md), so that the database serves one claimer per node. It is\n" +
	"supervised, limited and stopped as a worker is, with its pid file in run/NODE.0.pid and its log\n" +
	"(its workers' lines included) in logs/node.NODE.log (logs/node.NODE.out for its output); the\n" +
	"worker flags (--concurrency, --delay, --heartbeat, --verbose, --grace) apply to each of its\n" +
	"workers. The per-worker limits apply to the process as a whole, each times max_workers: what\n" +
	"the workers' own processes would have had between them. A node is served either way, never\n" +
	"both: the node dispatcher is refused while a worker of the node runs as a process of its own,\n" +
	"and workers are refused while it runs (`nodes stop NODE` first, to switch)."

func nodesStartCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes start", "[NODE...] [--worker ID | --node-dispatcher]", startAbout)
	var sf startFlags
	sf.register(fs)
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	if err := sf.check(); err != nil {
		return err
	}
	return e.startNodes(ctx, &sf, names, nil)
}

func nodesRestartCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes restart", "[NODE...] [--worker ID | --node-dispatcher]", "Stop the workers (as `nodes stop`), then start them (as `nodes start`) from the\n"+
		"current release: how workers move to a newly deployed release. With --node-dispatcher, the\n"+
		"node dispatcher (NODE.0) is stopped and started instead. Either way, what serves the node the\n"+
		"other way is left alone, and the start refused while it runs: to switch a node between its\n"+
		"workers' own processes and a node dispatcher, `nodes stop NODE`, then `nodes start`.")
	var sf startFlags
	var timeout time.Duration
	sf.register(fs)
	fs.DurationVar(&timeout, "timeout", 0, "stop: SIGKILL a worker still running this long after SIGTERM (default: its grace period + 10s)")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	if err := sf.check(); err != nil {
		return err
	}
	return e.startNodes(ctx, &sf, names, &timeout)
}

// startNodes starts workers, first stopping them when stopTimeout is set
// (restart): SSH to every node at once (startOnNodes), then a wait for the
// workers started to register (awaitRegistered), then the report, as text
// or JSON.
func (e *env) startNodes(ctx context.Context, sf *startFlags, names []string, stopTimeout *time.Duration) error {
	c, err := e.load(sf.cluster)
	if err != nil {
		return err
	}
	ts, workers, err := chooseNodes(c, names, sf.worker)
	if err != nil {
		return err
	}
	if node, ok := dispatcherOf(c, sf.worker); ok {
		return usagef("--worker %s is node %s's node dispatcher, not a worker: start it with --node-dispatcher (and no --worker)", sf.worker, node)
	}
	run := startOnNodes(ctx, c, ts, workers, sf, stopTimeout)
	run.awaitRegistered(ctx, c, sf.wait, sf.ttl)
	var failed int
	if sf.asJSON {
		if failed, err = e.printStartJSON(run); err != nil {
			return err
		}
	} else {
		failed = e.printStartText(run)
	}
	if failed > 0 {
		return fmt.Errorf("%d failures (see above)", failed)
	}
	return nil
}

// startRun is what start or restart did on each chosen node, by index.
type startRun struct {
	ts         []nodeTarget
	stopped    [][]nodes.Stopped // restart only
	results    []*nodes.Started
	notes      [][]string
	errs       []error
	fresh      []startedWorker // the workers started now
	registered map[string]bool // those seen alive in the registry since
	regErr     error           // why the registry could not be read
	wait       time.Duration   // how long registration was waited for
}

type startedWorker struct {
	node, id string
	pid      int
	// member is set for a worker of a node dispatcher started now: it
	// registers from the node dispatcher's process, pid.
	member bool
}

// startOnNodes runs the SSH side: on each node at once, stop the workers
// (restart) or wait for the registry to let go of those that just died
// (start), then start them.
func startOnNodes(ctx context.Context, c *pampa.Cluster, ts []nodeTarget, workers []string, sf *startFlags, stopTimeout *time.Duration) *startRun {
	opts := nodes.StartOptions{Workers: workers, NodeDispatcher: sf.nodeDispatcher, WorkerArgs: sf.workerArgs(), Grace: sf.grace, StrictLimits: sf.strict, Settle: sf.settle,
		Supervisor: sf.supervisorKind(), Restart: sf.restart}
	// The registry as it was before: a worker that died moments ago still
	// holds its id there until its heartbeat lapses.
	before, _ := readRegistry(ctx, c, sf.ttl)
	run := &startRun{ts: ts, stopped: make([][]nodes.Stopped, len(ts)), results: make([]*nodes.Started, len(ts)),
		notes: make([][]string, len(ts)), registered: map[string]bool{}}
	run.errs = onEach(ctx, ts, sf.options(), func(ctx context.Context, i int, conn *nodes.Conn) error {
		// What this start is of: the node dispatcher (and the ids of its
		// workers, which it registers), or the workers.
		ids := workers
		if sf.nodeDispatcher {
			ids = append([]string{pampa.NodeDispatcherID(ts[i].node.Name)}, ts[i].node.WorkerIDs()...)
		}
		if stopTimeout != nil {
			// A restart stops only what it starts again: the node
			// dispatcher, or the workers' own processes.
			stop := ids
			if sf.nodeDispatcher {
				stop = ids[:1]
			} else if len(stop) == 0 {
				var err error
				if stop, err = conn.Workers(ctx); err != nil {
					return fmt.Errorf("stop: %w", err)
				}
			}
			s, err := conn.Stop(ctx, stop, *stopTimeout)
			run.stopped[i] = s
			if err != nil {
				return fmt.Errorf("stop: %w", err)
			}
		} else if note, err := awaitDeadHolders(ctx, conn, ids, before, 3*sf.heartbeat); err != nil {
			return err
		} else if note != "" {
			run.notes[i] = append(run.notes[i], note)
		}
		r, err := conn.Start(ctx, opts)
		run.results[i] = r
		return err
	})
	for i, r := range run.results {
		if r == nil {
			continue
		}
		for _, w := range r.Workers {
			if !w.Started {
				continue
			}
			run.fresh = append(run.fresh, startedWorker{node: ts[i].node.Name, id: w.ID, pid: w.PID})
			for k := 1; k <= r.NodeWorkers; k++ {
				run.fresh = append(run.fresh, startedWorker{node: ts[i].node.Name, id: pampa.WorkerID(ts[i].node.Name, k), pid: w.PID, member: true})
			}
		}
	}
	return run
}

// missingMembers lists the workers of a node dispatcher started now on
// node that did not register in time.
func (run *startRun) missingMembers(node string) []string {
	if run.wait <= 0 || run.regErr != nil {
		return nil
	}
	var out []string
	for _, w := range run.fresh {
		if w.member && w.node == node && !run.registered[w.id] {
			out = append(out, w.id)
		}
	}
	return out
}

// awaitRegistered polls the registry for up to wait until every worker
// started now is alive there under its new pid (a node dispatcher's
// workers under its pid).
func (run *startRun) awaitRegistered(ctx context.Context, c *pampa.Cluster, wait, ttl time.Duration) {
	run.wait = wait
	if wait <= 0 || len(run.fresh) == 0 {
		return
	}
	deadline := time.Now().Add(wait)
	for {
		var reg map[string]pampa.WorkerStatus
		reg, run.regErr = readRegistry(ctx, c, ttl)
		if run.regErr == nil {
			for _, w := range run.fresh {
				if r, ok := reg[w.id]; ok && r.Alive && r.PID == w.pid {
					run.registered[w.id] = true
				}
			}
		}
		if len(run.registered) == len(run.fresh) || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// unregistered reports whether a worker started now failed to register
// in time (as far as the registry could tell).
func (run *startRun) unregistered(w nodes.WorkerStart) bool {
	return run.wait > 0 && w.Started && run.regErr == nil && !run.registered[w.ID]
}

// printStartJSON prints one object per node and returns the failures.
func (e *env) printStartJSON(run *startRun) (int, error) {
	type res struct {
		Node       string          `json:"node"`
		Error      string          `json:"error,omitempty"`
		Stopped    []nodes.Stopped `json:"stopped,omitempty"`
		Started    *nodes.Started  `json:"started,omitempty"`
		Registered []string        `json:"registered,omitempty"`
	}
	failed := 0
	var out []res
	for i, nt := range run.ts {
		r := res{Node: nt.node.Name, Stopped: run.stopped[i], Started: run.results[i]}
		if run.errs[i] != nil {
			r.Error = nodeErrText(run.errs[i])
			failed++
		}
		for _, w := range run.fresh {
			if w.node == nt.node.Name && run.registered[w.id] {
				r.Registered = append(r.Registered, w.id)
			}
		}
		if run.results[i] != nil {
			for _, w := range run.results[i].Workers {
				if w.Error != "" || run.unregistered(w) {
					failed++
				}
			}
		}
		if run.registered[pampa.NodeDispatcherID(nt.node.Name)] {
			failed += len(run.missingMembers(nt.node.Name))
		}
		out = append(out, r)
	}
	return failed, e.printJSON(out)
}

// printStartText prints what happened on each node and returns the
// failures.
func (e *env) printStartText(run *startRun) int {
	failed := 0
	for i, nt := range run.ts {
		name := nt.node.Name
		printStopped(e.stdout, run.stopped[i])
		if run.errs[i] != nil {
			errorLine(e.stdout, name, run.errs[i])
			failed++
			continue
		}
		for _, note := range run.notes[i] {
			fmt.Fprintf(e.stdout, "%s: %s\n", name, note)
		}
		failed += e.printStartedNode(run, name, run.results[i])
	}
	if run.regErr != nil && run.wait > 0 && len(run.fresh) > 0 {
		fmt.Fprintf(e.stdout, "could not check that the workers registered: %s\n", errorText(run.regErr))
	}
	return failed
}

// printStartedNode prints one node's release, limits and workers, and
// returns its failures.
func (e *env) printStartedNode(run *startRun, name string, r *nodes.Started) int {
	w := e.stdout
	fmt.Fprintf(w, "%s: release %s\n", name, r.Release)
	printSupervision(w, name, r.Supervision, r.NodeWorkers > 0)
	if n := r.NodeWorkers; n > 0 {
		fmt.Fprintf(w, "%s: node dispatcher %s runs the node's %d workers (%s) in its one process; the limits apply to that process as a whole, each times %d\n",
			name, pampa.NodeDispatcherID(name), n, idRange(name, n), n)
	}
	// The limits as read back from a worker started now, else as the node
	// plans them.
	limits := r.Limits
	for _, wk := range r.Workers {
		if wk.Started {
			limits = wk.Limits
			break
		}
	}
	for _, l := range limits {
		fmt.Fprintf(w, "%s: limit %s\n", name, l)
	}
	failed := 0
	for _, wk := range r.Workers {
		switch {
		case wk.Error != "":
			fmt.Fprintf(w, "%s: FAILED: %s (see `%s nodes logs %s --worker %s --out`)\n", wk.ID, wk.Error, e.name(), name, wk.ID)
			failed++
			continue
		case wk.AlreadyRunning && wk.Unsupervised:
			fmt.Fprintf(w, "%s: already running, pid %d, without a supervisor (started by an earlier Pampa, or its supervisor was killed): `%s nodes restart %s --worker %s` supervises it\n",
				wk.ID, wk.PID, e.name(), name, wk.ID)
			continue
		case wk.AlreadyRunning && wk.PID == 0:
			fmt.Fprintf(w, "%s: not running, but its supervisor (%s) is about to start it again\n", wk.ID, wk.Supervisor)
			continue
		case wk.AlreadyRunning:
			fmt.Fprintf(w, "%s: already running, pid %d, supervised by %s\n", wk.ID, wk.PID, wk.Supervisor)
			continue
		}
		state := "started"
		switch {
		case run.registered[wk.ID]:
			state += " and registered"
		case run.unregistered(wk):
			state += fmt.Sprintf(", but not registered as alive within %s (see `%s nodes logs %s --worker %s --out`)", run.wait, e.name(), name, wk.ID)
			failed++
		}
		fmt.Fprintf(w, "%s: %s, pid %d, supervised by %s\n", wk.ID, state, wk.PID, wk.Supervisor)
		if r.NodeWorkers > 0 && run.registered[wk.ID] {
			if missing := run.missingMembers(name); len(missing) > 0 {
				fmt.Fprintf(w, "%s: but its workers %s did not register as alive within %s (see `%s nodes logs %s --worker %s`)\n",
					wk.ID, strings.Join(missing, ", "), run.wait, e.name(), name, wk.ID)
				failed += len(missing)
			} else if run.wait > 0 && run.regErr == nil {
				fmt.Fprintf(w, "%s: its workers %s registered\n", wk.ID, idRange(name, r.NodeWorkers))
			}
		}
		if wk.Warning != "" {
			fmt.Fprintf(w, "%s: warning: %s\n", wk.ID, wk.Warning)
		}
		// A limit that holds differently for this worker.
		for j, l := range wk.Limits {
			if j < len(limits) && l.Applied != limits[j].Applied {
				fmt.Fprintf(w, "%s: limit %s\n", wk.ID, l)
			}
		}
	}
	return failed
}

// printSupervision says how the node supervises its workers, or its
// node dispatcher.
func printSupervision(w io.Writer, name string, p nodes.SupervisorPlan, nodeDispatcher bool) {
	what, one := "the workers start", "one per worker"
	if nodeDispatcher {
		what, one = "the node dispatcher starts", "one for the node dispatcher"
	}
	switch p.Kind {
	case nodes.SupervisorSystemd:
		fmt.Fprintf(w, "%s: supervisor systemd (%s): %s; %s again after a reboot\n", name, p.Manager, p.Restart, what)
	case nodes.SupervisorPampa:
		fmt.Fprintf(w, "%s: supervisor pampa, %s: %s; after a reboot, run `nodes start` again (%s)\n", name, one, p.Restart, p.Why)
	}
	for _, note := range p.Notes {
		fmt.Fprintf(w, "%s: %s\n", name, note)
	}
}

// awaitDeadHolders waits, before starting workers, for the registry to let
// go of those that died on the node (killed, crashed) so recently that
// their heartbeat has not lapsed yet: a new process would be refused the
// id until then. ttl is the workers' heartbeat TTL. It returns a note
// saying what it waited for.
func awaitDeadHolders(ctx context.Context, conn *nodes.Conn, ids []string, reg map[string]pampa.WorkerStatus, ttl time.Duration) (string, error) {
	if len(reg) == 0 {
		return "", nil
	}
	procs, err := conn.Processes(ctx, ids)
	if err != nil {
		return "", err
	}
	var wait time.Duration
	var dead []string
	for id, p := range procs {
		r, ok := reg[id]
		if p.Running || !p.Stale || !ok || r.PID != p.PID || (r.State != "running" && r.State != "stopping") {
			continue
		}
		if left := ttl - r.LastBeat; left > 0 {
			wait = max(wait, left+500*time.Millisecond)
			dead = append(dead, fmt.Sprintf("%s (pid %d)", id, p.PID))
		}
	}
	if wait == 0 {
		return "", nil
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(wait):
	}
	sort.Strings(dead)
	return fmt.Sprintf("waited %s for the registry to let go of %s, which died with a fresh heartbeat", shortDuration(wait), strings.Join(dead, ", ")), nil
}

// idRange writes a node's workers 1..n for messages: "n1.1 … n1.4".
func idRange(node string, n int) string {
	switch n {
	case 1:
		return pampa.WorkerID(node, 1)
	case 2:
		return pampa.WorkerID(node, 1) + ", " + pampa.WorkerID(node, 2)
	}
	return pampa.WorkerID(node, 1) + " … " + pampa.WorkerID(node, n)
}

func nodesStopCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes stop", "[NODE...] [--worker ID]", "Stop workers gracefully, and the node dispatcher (NODE.0, its workers with it) that\n"+
		"`nodes start --node-dispatcher` started. Each supervisor goes first, so that it does not\n"+
		"start its process again: Pampa's own gets SIGTERM; a systemd unit is stopped and disabled,\n"+
		"which stops its worker (SIGTERM, then SIGKILL after the grace period + 10s). Then SIGTERM to\n"+
		"the pid in each other worker's pid file, once /proc confirms the pid is still that worker;\n"+
		"SIGKILL if it has not exited after its grace period + 10s (or --timeout). The worker hands its\n"+
		"unstarted tasks back and leaves the registry. Stopping a worker that is not running is not an\n"+
		"error.")
	var nf nodeFlags
	var worker string
	var timeout time.Duration
	var asJSON bool
	nf.register(fs)
	fs.StringVar(&worker, "worker", "", "only this worker, such as node1.2, or node1.0: the node dispatcher alone")
	fs.DurationVar(&timeout, "timeout", 0, "SIGKILL a worker still running this long after SIGTERM (default: its grace period + 10s)")
	fs.BoolVar(&asJSON, "json", false, "print JSON, one object per node")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	c, err := e.load(nf.cluster)
	if err != nil {
		return err
	}
	ts, workers, err := chooseNodes(c, names, worker)
	if err != nil {
		return err
	}
	results := make([][]nodes.Stopped, len(ts))
	errs := onEach(ctx, ts, nf.options(), func(ctx context.Context, i int, conn *nodes.Conn) error {
		s, err := conn.Stop(ctx, workers, timeout)
		results[i] = s
		return err
	})
	if asJSON {
		type res struct {
			Node    string          `json:"node"`
			Error   string          `json:"error,omitempty"`
			Workers []nodes.Stopped `json:"workers,omitempty"`
		}
		var out []res
		for i, nt := range ts {
			r := res{Node: nt.node.Name, Workers: results[i]}
			if errs[i] != nil {
				r.Error = nodeErrText(errs[i])
			}
			out = append(out, r)
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
		return failures(errs, "stop")
	}
	for i, nt := range ts {
		printStopped(e.stdout, results[i])
		if errs[i] != nil {
			errorLine(e.stdout, nt.node.Name, errs[i])
		}
	}
	return failures(errs, "stop")
}

func printStopped(w io.Writer, ss []nodes.Stopped) {
	for _, s := range ss {
		what := "worker"
		if strings.HasSuffix(s.ID, ".0") {
			what = "node dispatcher"
		}
		switch {
		case s.SupervisorPID > 0:
			fmt.Fprintf(w, "%s: stopped its supervisor first (pampa, pid %d): it starts the %s no more\n", s.ID, s.SupervisorPID, what)
		case s.Unit != "":
			fmt.Fprintf(w, "%s: stopped and disabled its systemd unit %s, which stops the %s\n", s.ID, s.Unit, what)
		}
		switch {
		case s.Error != "":
			fmt.Fprintf(w, "%s: FAILED to stop: %s\n", s.ID, s.Error)
		case !s.WasRunning:
			fmt.Fprintf(w, "%s: not running: %s\n", s.ID, s.Why)
		case s.Killed:
			fmt.Fprintf(w, "%s: killed (SIGKILL) after outliving its grace period, pid %d\n", s.ID, s.PID)
		case s.TookMS > 0:
			fmt.Fprintf(w, "%s: stopped, pid %d, in %s\n", s.ID, s.PID, shortDuration(time.Duration(s.TookMS)*time.Millisecond))
		default:
			fmt.Fprintf(w, "%s: stop interrupted, pid %d\n", s.ID, s.PID)
		}
	}
}
