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
	worker      string
	grace       time.Duration
	settle      time.Duration
	wait        time.Duration
	ttl         time.Duration
	strict      bool
	asJSON      bool
	concurrency int
	delay       time.Duration
	heartbeat   time.Duration
	verbose     bool
	fs          *flag.FlagSet
}

func (f *startFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	f.nodeFlags.register(fs)
	fs.StringVar(&f.worker, "worker", "", "only this worker, such as node1.2")
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
	"The node's per-worker limits (max_ram MiB, max_cpu % of a CPU, max_disk_io and max_net_io\n" +
	"Mbit/s) are applied with what the node offers, best first: a systemd-run scope (as root, or\n" +
	"as a user whose systemd manager lingers: loginctl enable-linger USER); cgroup files in a\n" +
	"cgroup the SSH user may write (an administrator delegates one with: mkdir\n" +
	"/sys/fs/cgroup/pampa-USER && chown USER /sys/fs/cgroup/pampa-USER, on cgroup v1 under each of\n" +
	"cpu, memory and blkio); for RAM alone, RLIMIT_DATA (it also counts the 100-200 MiB of address\n" +
	"space the Go runtime reserves). Workers with a RAM limit also get GOMEMLIMIT at 90% of it.\n" +
	"Network bandwidth cannot be limited per process. Each limit is reported applied, once read\n" +
	"back from the running worker, or not applied and why; --strict-limits refuses the latter."

func nodesStartCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes start", "[NODE...] [--worker ID]", startAbout)
	var sf startFlags
	sf.register(fs)
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	return e.startNodes(ctx, &sf, names, nil)
}

func nodesRestartCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes restart", "[NODE...] [--worker ID]", "Stop the workers (as `nodes stop`), then start them (as `nodes start`) from the\n"+
		"current release: how workers move to a newly deployed release.")
	var sf startFlags
	var timeout time.Duration
	sf.register(fs)
	fs.DurationVar(&timeout, "timeout", 0, "stop: SIGKILL a worker still running this long after SIGTERM (default: its grace period + 10s)")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	return e.startNodes(ctx, &sf, names, &timeout)
}

// startNodes starts workers, first stopping them when stopTimeout is set
// (restart).
func (e *env) startNodes(ctx context.Context, sf *startFlags, names []string, stopTimeout *time.Duration) error {
	c, err := e.load(sf.cluster)
	if err != nil {
		return err
	}
	ts, workers, err := chooseNodes(c, names, sf.worker)
	if err != nil {
		return err
	}
	opts := nodes.StartOptions{Workers: workers, WorkerArgs: sf.workerArgs(), Grace: sf.grace, StrictLimits: sf.strict, Settle: sf.settle}
	// The registry as it was before: a worker that died moments ago still
	// holds its id there until its heartbeat lapses.
	before, _ := readRegistry(ctx, c, sf.ttl)
	stopped := make([][]nodes.Stopped, len(ts))
	results := make([]*nodes.Started, len(ts))
	notes := make([][]string, len(ts))
	errs := onEach(ctx, ts, sf.options(), func(ctx context.Context, i int, conn *nodes.Conn) error {
		if stopTimeout != nil {
			s, err := conn.Stop(ctx, workers, *stopTimeout)
			stopped[i] = s
			if err != nil {
				return fmt.Errorf("stop: %w", err)
			}
		} else if note, err := awaitDeadHolders(ctx, conn, workers, before, 3*sf.heartbeat); err != nil {
			return err
		} else if note != "" {
			notes[i] = append(notes[i], note)
		}
		r, err := conn.Start(ctx, opts)
		results[i] = r
		return err
	})

	// Then wait for the workers started to register as alive.
	type startedWorker struct {
		node, id string
		pid      int
	}
	var fresh []startedWorker
	for i, r := range results {
		if r == nil {
			continue
		}
		for _, w := range r.Workers {
			if w.Started {
				fresh = append(fresh, startedWorker{ts[i].node.Name, w.ID, w.PID})
			}
		}
	}
	registered := map[string]bool{}
	var regErr error
	if sf.wait > 0 && len(fresh) > 0 {
		deadline := time.Now().Add(sf.wait)
		for {
			var reg map[string]pampa.WorkerStatus
			reg, regErr = readRegistry(ctx, c, sf.ttl)
			if regErr == nil {
				for _, w := range fresh {
					if r, ok := reg[w.id]; ok && r.Alive && r.PID == w.pid {
						registered[w.id] = true
					}
				}
			}
			if len(registered) == len(fresh) || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	failed := 0
	if sf.asJSON {
		type res struct {
			Node       string          `json:"node"`
			Error      string          `json:"error,omitempty"`
			Stopped    []nodes.Stopped `json:"stopped,omitempty"`
			Started    *nodes.Started  `json:"started,omitempty"`
			Registered []string        `json:"registered,omitempty"`
		}
		var out []res
		for i, nt := range ts {
			r := res{Node: nt.node.Name, Stopped: stopped[i], Started: results[i]}
			if errs[i] != nil {
				r.Error = nodeErrText(errs[i])
				failed++
			}
			for _, w := range fresh {
				if w.node == nt.node.Name && registered[w.id] {
					r.Registered = append(r.Registered, w.id)
				}
			}
			if results[i] != nil {
				for _, w := range results[i].Workers {
					if w.Error != "" || (sf.wait > 0 && w.Started && regErr == nil && !registered[w.ID]) {
						failed++
					}
				}
			}
			out = append(out, r)
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		for i, nt := range ts {
			name := nt.node.Name
			printStopped(e.stdout, stopped[i])
			if errs[i] != nil {
				errorLine(e.stdout, name, errs[i])
				failed++
				continue
			}
			for _, note := range notes[i] {
				fmt.Fprintf(e.stdout, "%s: %s\n", name, note)
			}
			r := results[i]
			fmt.Fprintf(e.stdout, "%s: release %s\n", name, r.Release)
			// The limits as read back from a worker started now, else as
			// the node plans them.
			limits := r.Limits
			for _, w := range r.Workers {
				if w.Started {
					limits = w.Limits
					break
				}
			}
			for _, l := range limits {
				fmt.Fprintf(e.stdout, "%s: limit %s\n", name, l)
			}
			for _, w := range r.Workers {
				switch {
				case w.Error != "":
					fmt.Fprintf(e.stdout, "%s: FAILED: %s (see `%s nodes logs %s --worker %s --out`)\n", w.ID, w.Error, e.name(), name, w.ID)
					failed++
					continue
				case w.AlreadyRunning:
					fmt.Fprintf(e.stdout, "%s: already running, pid %d\n", w.ID, w.PID)
					continue
				}
				state := "started"
				switch {
				case registered[w.ID]:
					state += " and registered"
				case sf.wait > 0 && regErr == nil:
					state += fmt.Sprintf(", but not registered as alive within %s (see `%s nodes logs %s --worker %s --out`)", sf.wait, e.name(), name, w.ID)
					failed++
				}
				fmt.Fprintf(e.stdout, "%s: %s, pid %d\n", w.ID, state, w.PID)
				// A limit that holds differently for this worker.
				for j, l := range w.Limits {
					if j < len(limits) && l.Applied != limits[j].Applied {
						fmt.Fprintf(e.stdout, "%s: limit %s\n", w.ID, l)
					}
				}
			}
		}
		if regErr != nil && sf.wait > 0 && len(fresh) > 0 {
			fmt.Fprintf(e.stdout, "could not check that the workers registered: %v\n", regErr)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d failures (see above)", failed)
	}
	return nil
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

func nodesStopCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes stop", "[NODE...] [--worker ID]", "Stop workers gracefully: SIGTERM to the pid in each worker's pid file, once /proc confirms the\n"+
		"pid is still that worker; SIGKILL if it has not exited after its grace period + 10s. The\n"+
		"worker hands its unstarted tasks back and leaves the registry. Stopping a worker that is\n"+
		"not running is not an error.")
	var nf nodeFlags
	var worker string
	var timeout time.Duration
	var asJSON bool
	nf.register(fs)
	fs.StringVar(&worker, "worker", "", "only this worker, such as node1.2")
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
