package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/logging"
)

// logFlags choose where a process logs.
type logFlags struct {
	file    bool
	dir     string
	verbose bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.file, "log", true, "write a log file (dispatcher.log, worker.<id>.log) in --log-dir, rotated at 100 MB; log=no turns it off")
	fs.StringVar(&l.dir, "log-dir", ".", "directory for log files")
	fs.BoolVar(&l.verbose, "verbose", false, "log every task, not only failures and changes")
}

// logger makes a component's logger; console may be nil.
func (l *logFlags) logger(component, file string, console io.Writer) (*slog.Logger, io.Closer, error) {
	opts := logging.Options{Component: component, Console: console}
	if l.file {
		opts.File = filepath.Join(l.dir, file)
	}
	if l.verbose {
		opts.Level = slog.LevelDebug
	}
	return logging.New(opts)
}

// dispatcherFlags are the dispatcher's tuning flags.
type dispatcherFlags struct{ opts pampa.DispatcherOptions }

func (d *dispatcherFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&d.opts.Delay, "delay", 0, "longest wait between two dispatch rounds (workers running low wake it sooner); default 1s on\nPostgreSQL, 50ms on SQLite, 250ms on CockroachDB; delay=30 means 30s")
	fs.DurationVar(&d.opts.LeaseTTL, "lease-ttl", 5*time.Second, "leader lease duration; a standby takes over this long after the leader vanishes")
	fs.DurationVar(&d.opts.WorkerTTL, "worker-ttl", 15*time.Second, "a worker silent this long is declared dead and its tasks handed on")
	fs.DurationVar(&d.opts.ReleaseAfter, "release-after", 10*time.Second, "a job with nothing pending this long gives its workers back")
}

// workerFlags are a worker's tuning flags.
type workerFlags struct{ opts pampa.WorkerOptions }

func (w *workerFlags) register(fs *flag.FlagSet, delayToo bool) {
	if delayToo {
		fs.DurationVar(&w.opts.Delay, "delay", 0, "how often an idle worker looks for tasks when nothing wakes it; default as the dispatcher's\n--delay; delay=30 means 30s")
	}
	fs.IntVar(&w.opts.Concurrency, "concurrency", 1, "tasks a worker runs at once")
	fs.DurationVar(&w.opts.GracePeriod, "grace", 30*time.Second, "on SIGTERM/SIGINT, how long running tasks may finish before they are cancelled")
	fs.DurationVar(&w.opts.HeartbeatInterval, "heartbeat", 5*time.Second, "heartbeat interval (the dead-after TTL is 3 heartbeats)")
}

// open loads the cluster and connects.
func (e *env) open(ctx context.Context, cf clusterFlags) (*pampa.Client, error) {
	c, err := e.load(cf)
	if err != nil {
		return nil, err
	}
	return pampa.Open(ctx, c)
}

func dispatcherCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("dispatcher", "", "Run a dispatcher. It reserves tasks for the workers assigned to each job, assigns and\n"+
		"releases workers as backlogs grow and shrink, and relaunches tasks of dead workers and\n"+
		"expired or failed tries. Start several for fail-over: one leads, the others stand by.")
	var cf clusterFlags
	var lf logFlags
	var df dispatcherFlags
	var mf metricsFlags
	cf.register(fs)
	lf.register(fs)
	df.register(fs)
	mf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	log, closer, err := lf.logger("dispatcher", "dispatcher.log", e.stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	m, stopMetrics, err := mf.start(log, client)
	if err != nil {
		return err
	}
	defer stopMetrics()
	df.opts.Logger, df.opts.Metrics = log, m
	return client.NewDispatcher(df.opts).Run(ctx)
}

func workerCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("worker", "--id NODE.N", "Run one worker. It registers under its id (a node's name and a number up to the node's\n"+
		"max_workers), heartbeats, and processes the tasks the dispatcher reserves for it.\n"+
		"SIGTERM/SIGINT stops it gracefully; a second signal stops it at once.")
	var cf clusterFlags
	var lf logFlags
	var wf workerFlags
	var mf metricsFlags
	var id string
	fs.StringVar(&id, "id", "", "worker id, such as local.1 (required)")
	cf.register(fs)
	lf.register(fs)
	wf.register(fs, true)
	mf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if id == "" {
		return usagef("--id is required (such as --id local.1)")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	log, closer, err := lf.logger("worker "+id, "worker."+id+".log", e.stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	m, stopMetrics, err := mf.start(log, nil)
	if err != nil {
		return err
	}
	defer stopMetrics()
	wf.opts.Logger, wf.opts.Version, wf.opts.Metrics = log, e.version(), m
	w, err := client.NewWorker(id, wf.opts)
	if err != nil {
		return err
	}
	go killOnHardStop(ctx, wf.opts.GracePeriod, w.Kill)
	return w.Run(ctx)
}

// killOnHardStop calls kill on a second signal (hardStop), before or
// during the graceful stop that the first one began; it gives up a
// minute past the grace period.
func killOnHardStop(ctx context.Context, grace time.Duration, kill func()) {
	select {
	case <-hardStop:
		kill()
	case <-ctx.Done():
		select {
		case <-hardStop:
			kill()
		case <-time.After(grace + time.Minute):
		}
	}
}

func runCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("run", "", "Run a dispatcher and workers in this process: the single-machine mode. The workers are\n"+
		"the first --workers of --node; they and the dispatcher wake each other directly.")
	var cf clusterFlags
	var lf logFlags
	var df dispatcherFlags
	var wf workerFlags
	var mf metricsFlags
	var node string
	var workers, nodes int
	var untilDone, progress bool
	fs.StringVar(&node, "node", "", "node whose workers to run (default: the node named local, else the first node)")
	fs.IntVar(&workers, "workers", 0, "how many workers to run (default: the node's max_workers); with --nodes, per node")
	fs.IntVar(&nodes, "nodes", 0, "run the workers under node dispatchers, one per node, for the first N nodes of the config\n(with --node, that node only): the database serves one claimer per node (docs/multi-level.md)")
	fs.BoolVar(&untilDone, "until-done", false, "stop once no job has pending, reserved or running tasks")
	fs.BoolVar(&progress, "progress", true, "print each job's progress every second")
	cf.register(fs)
	lf.register(fs)
	df.register(fs)
	wf.register(fs, false)
	mf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	wf.opts.Delay = df.opts.Delay
	c, err := e.load(cf)
	if err != nil {
		return err
	}
	var nd *pampa.Node
	var nds []*pampa.Node
	if nodes > 0 {
		if nds, err = pickNodes(c, node, nodes, workers); err != nil {
			return err
		}
		nd = nds[0]
	} else {
		if nd, err = pickNode(c, node); err != nil {
			return err
		}
		if workers == 0 {
			workers = nd.MaxWorkers
		}
		if workers < 1 || workers > nd.MaxWorkers {
			return usagef("--workers %d: node %q has max_workers = %d", workers, nd.Name, nd.MaxWorkers)
		}
	}
	dlog, closer, err := lf.logger("dispatcher", "dispatcher.log", e.stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := pampa.Open(ctx, c)
	if err != nil {
		return err
	}
	defer client.Close()
	m, stopMetrics, err := mf.start(dlog, client)
	if err != nil {
		return err
	}
	defer stopMetrics()
	wf.opts.Metrics, df.opts.Metrics = m, m

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var ws []runner
	var closers []io.Closer
	if nodes > 0 {
		ws, closers, err = e.newNodes(client, nds, workers, &lf, &wf)
	} else {
		ws, closers, err = e.newWorkers(client, nd.Name, workers, &lf, &wf)
	}
	errs := make(chan error, len(ws)+1)
	for _, c := range closers {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	df.opts.Logger = dlog
	d := client.NewDispatcher(df.opts)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- d.Run(runCtx) }()
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- w.Run(runCtx) }()
	}
	go func() {
		<-hardStop
		for _, w := range ws {
			w.Kill()
		}
	}()
	if nodes > 0 {
		dlog.Info("running", "node_dispatchers", len(ws), "first_node", nd.Name)
	} else {
		dlog.Info("running", "node", nd.Name, "workers", workers)
	}
	watchErr := watch(runCtx, client, e.stdout, progress, untilDone, stop)
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return watchErr
}

// newWorkers makes the first n workers of node, each logging to a file of
// its own; the closers close those logs, whatever the error.
func (e *env) newWorkers(client *pampa.Client, node string, n int, lf *logFlags, wf *workerFlags) ([]runner, []io.Closer, error) {
	var ws []runner
	var closers []io.Closer
	for i := 1; i <= n; i++ {
		id := pampa.WorkerID(node, i)
		wlog, wcloser, err := lf.logger("worker "+id, "worker."+id+".log", nil)
		if err != nil {
			return nil, closers, err
		}
		closers = append(closers, wcloser)
		opts := wf.opts
		opts.Logger, opts.Version = wlog, e.version()
		w, err := client.NewWorker(id, opts)
		if err != nil {
			return nil, closers, err
		}
		ws = append(ws, w)
	}
	return ws, closers, nil
}

func pickNode(c *pampa.Cluster, name string) (*pampa.Node, error) {
	if name != "" {
		if n := c.Node(name); n != nil {
			return n, nil
		}
		return nil, usagef("--node %q: no such node in the config", name)
	}
	if n := c.Node("local"); n != nil {
		return n, nil
	}
	if len(c.Nodes()) == 0 {
		return nil, usagef("the config defines no node: add one (such as name: local, max_workers: 4)")
	}
	return c.Nodes()[0], nil
}

// watch prints progress every second and, with untilDone, calls stop once
// every job is idle. It returns when ctx ends.
func watch(ctx context.Context, client *pampa.Client, out io.Writer, progress, untilDone bool, stop func()) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The rates are from the counts at the start, not from zero: a run
	// over a table partly done shows its own pace from its first line.
	last := map[string]int64{}
	if reports, err := client.Report(ctx); err == nil {
		for _, r := range reports {
			last[r.Job] = r.Completed
		}
	}
	lastAt := time.Now()
	idleRounds := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		reports, err := client.Report(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(out, "progress: %v\n", err)
			continue
		}
		now := time.Now()
		idle := true
		for _, r := range reports {
			if progress {
				rate := float64(max(r.Completed-last[r.Job], 0)) / now.Sub(lastAt).Seconds()
				about := ""
				if r.Estimated {
					about = "~" // see printReports
				}
				fmt.Fprintf(out, "%s: %s%d/%s%d completed (%.0f/s), %d pending, %d reserved, %d running, %d failed\n",
					r.Job, about, r.Completed, about, r.Total, rate, r.Pending, r.Reserved, r.Running, r.Failed)
			}
			last[r.Job] = r.Completed
			if r.Pending+r.Scheduled+r.Reserved+r.Running > 0 {
				idle = false
			}
		}
		lastAt = now
		if untilDone {
			// Two idle looks in a row: failed tries waiting for relaunch
			// show as pending, so one look suffices in practice, but a
			// second guards against a row caught between two states.
			if idle {
				idleRounds++
			} else {
				idleRounds = 0
			}
			if idleRounds >= 2 {
				stop()
				return nil
			}
		}
	}
}

func setupCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("setup", "[JOB...]", "Prepare the jobs' tables (all jobs, or those named): add the tracking columns that are\n"+
		"missing, with the right types, and the indexes the dispatcher needs. Safe to run again:\n"+
		"it changes only what is missing, and says what it changed. It refuses a table or primary\n"+
		"key that does not exist, and a tracking column of the wrong type, before changing anything.")
	var cf clusterFlags
	var notify bool
	cf.register(fs)
	fs.BoolVar(&notify, "notify", false, "on PostgreSQL, also add a trigger so that inserts wake the dispatchers at once\n(one pg_notify per INSERT statement)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	c, err := e.load(cf)
	if err != nil {
		return err
	}
	changes, err := pampa.Setup(ctx, c, pampa.SetupOptions{Jobs: fs.Args(), Notify: notify})
	for _, ch := range changes {
		fmt.Fprintln(e.stdout, ch)
	}
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintln(e.stdout, "nothing to change: every table is ready")
	}
	return nil
}

func reportCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("report", "", "Count each job's tasks: total, completed (succeeded), pending (never tried or waiting for\n"+
		"another try), failed (out of tries), reserved (queued for a worker) and running; oldest is\n"+
		"the age of the oldest task neither reserved nor started, for a job with field_created_at.\n"+
		"On PostgreSQL, total and completed of a table of 1,000,000 rows or more are estimated\n"+
		"(marked ~) from the table's statistics; the other figures are always exact.")
	var cf clusterFlags
	var asJSON, exact bool
	var job string
	cf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print a JSON array with one object per job (\"estimated\": true when estimated)")
	fs.StringVar(&job, "job", "", "report only this job")
	fs.BoolVar(&exact, "exact", false, "count every table in full, never estimate (reads every row: slow on large tables)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	opts := pampa.ReportOptions{Exact: exact}
	if job != "" {
		opts.Jobs = []string{job}
	}
	reports, err := client.ReportWith(ctx, opts)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(reports)
	}
	return printReports(e.stdout, reports)
}

// ageText shows the age of the oldest pending task to the second, "-"
// when unknown. A created-at in the future (the clock of whoever inserted
// the row) shows as 0s.
func ageText(seconds *float64) string {
	if seconds == nil {
		return "-"
	}
	return time.Duration(max(0, *seconds) * float64(time.Second)).Round(time.Second).String()
}

// printReports prints reports as a table, with estimated figures marked
// "~" and a footnote saying so.
func printReports(w io.Writer, reports []pampa.JobReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "JOB\tTOTAL\tCOMPLETED\tPENDING\tSCHEDULED\tFAILED\tRESERVED\tRUNNING\tLIMITED\tOLDEST\t")
	estimated := false
	var reasons []string
	for _, r := range reports {
		about := ""
		if r.Estimated {
			about, estimated = "~", true
		}
		fmt.Fprintf(tw, "%s\t%s%d\t%s%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", jobLabel(r), about, r.Total, about, r.Completed, r.Pending, r.Scheduled, r.Failed, r.Reserved, r.Running, r.Limited, ageText(r.OldestPending))
		if r.LimitReason != "" {
			reasons = append(reasons, fmt.Sprintf("%s: %d free slots held back: %s", r.Job, r.Limited, r.LimitReason))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range reasons {
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	if estimated {
		_, err := fmt.Fprintln(w, "~ estimated (a table of 1,000,000 rows or more: PostgreSQL's statistics, or SQLite's last count and the rows added since); --exact counts every row")
		return err
	}
	return nil
}
