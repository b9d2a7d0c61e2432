package pampa

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/proc"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/worker"
)

// WorkerOptions tune a worker. Zero values take the defaults given.
type WorkerOptions struct {
	// Concurrency is how many tasks the worker runs at once. Default 1,
	// the original's behaviour; raise it for I/O-bound work.
	Concurrency int
	// Delay is how often an idle worker looks for tasks when nothing wakes
	// it. Default as for DispatcherOptions.Delay.
	Delay time.Duration
	// HeartbeatInterval is how often the worker reports it is alive.
	// Default 5s.
	HeartbeatInterval time.Duration
	// HeartbeatTTL is how long the registry may go without a heartbeat
	// before the worker counts as dead; keep it equal to the dispatcher's
	// WorkerTTL. A worker that cannot heartbeat for this long less one
	// interval stops taking tasks and cancels its running ones, before the
	// dispatcher hands them on. Default 3 × HeartbeatInterval.
	HeartbeatTTL time.Duration
	// GracePeriod is how long a graceful stop lets running tasks finish
	// before cancelling them. Default 30s.
	GracePeriod time.Duration
	// OverrunGrace is how long the worker waits, after a task's deadline,
	// for a processing function that ignores its context. The try has
	// failed either way (a try that outlives its max duration fails,
	// whatever it returns); this only bounds the wait before the worker
	// moves on. Default 5s.
	OverrunGrace time.Duration
	// Logger receives the worker's log. Default: discard.
	Logger *slog.Logger
	// Version is recorded in the registry (the program's version).
	Version string
	// Metrics, if set, receive the worker's figures: tries, their
	// outcomes and durations, its slots (docs/metrics.md).
	Metrics *Metrics
}

func (o WorkerOptions) withDefaults() WorkerOptions {
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 5 * time.Second
	}
	if o.HeartbeatTTL == 0 {
		o.HeartbeatTTL = 3 * o.HeartbeatInterval
	}
	if o.GracePeriod == 0 {
		o.GracePeriod = 30 * time.Second
	}
	if o.OverrunGrace == 0 {
		o.OverrunGrace = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Worker processes the tasks the dispatcher reserves for its id. Its
// engine (internal/worker) runs a heartbeat, a producer that claims
// tasks, an executor per slot and a completer that records outcomes in
// batches.
type Worker struct {
	id      string
	jobs    []*jobRuntime
	rt      *worker.Runtime
	callers map[string]caller // by job name: the jobs whose function is external
}

// WorkerStats are a worker's counters since it started: Succeeded,
// Failed and Dropped (late results the fence refused), each an
// atomic.Int64.
type WorkerStats = engine.WorkerStats

// NewWorker prepares a worker. The id must belong to a defined node, and
// the worker must be able to run at least one job: a job whose processing
// function is registered (or given by Exec) and whose filter_worker_id
// matches the id. The program of each exec job must exist.
func (c *Client) NewWorker(id string, opts WorkerOptions) (*Worker, error) {
	if err := c.cluster.CheckWorkerID(id); err != nil {
		return nil, err
	}
	if opts.Delay == 0 {
		opts.Delay = c.defaultDelay()
	}
	opts = opts.withDefaults()
	if opts.Concurrency < 1 {
		return nil, fmt.Errorf("worker %s: concurrency = %d: must be at least 1", id, opts.Concurrency)
	}
	w := &Worker{id: id, callers: map[string]caller{}}
	var skipped []string
	for _, j := range c.jobs {
		switch {
		case j.Process == nil && !j.external():
			skipped = append(skipped, j.Name+" (no processing function registered)")
		case !j.AcceptsWorker(id):
			skipped = append(skipped, j.Name+" (filter_worker_id "+j.FilterWorkerID+" excludes it)")
		default:
			w.jobs = append(w.jobs, j)
		}
	}
	if len(w.jobs) == 0 {
		return nil, fmt.Errorf("worker %s: no job it can run: %s", id, strings.Join(skipped, "; "))
	}
	for _, j := range w.jobs {
		if !j.external() {
			continue
		}
		call, err := newCaller(j.Job, opts.withLogger(id))
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", id, err)
		}
		w.callers[j.Name] = call
	}
	c.startNotifier(opts.Logger)
	w.rt = worker.New(c.workerOptions(id, opts, w.jobs, w.callers))
	return w, nil
}

// withLogger is o with its logger naming the worker.
func (o WorkerOptions) withLogger(id string) WorkerOptions {
	o.Logger = o.Logger.With("worker", id)
	return o
}

// workerOptions builds the engine's options for a worker; the jobs in
// callers run their tries through them.
func (c *Client) workerOptions(id string, opts WorkerOptions, jobs []*jobRuntime, callers map[string]caller) worker.Options {
	node, _, _ := ParseWorkerID(id)
	host, _ := os.Hostname()
	log := opts.Logger.With("worker", id)
	names := make([]string, len(jobs))
	byName := make(map[string]*Job, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
		byName[j.Name] = j.Job
	}
	ejobs := c.engineJobs(jobs)
	for _, e := range ejobs {
		if call := callers[e.Name]; call != nil {
			e.Hooks.Process = func(ctx context.Context, a *engine.Attempt) error { return callExternal(ctx, call, taskOf(a)) }
		}
	}
	o := worker.Options{
		Store: c.store, Bus: c.bus, Jobs: opts.Metrics.observe(ejobs, engine.WorkerRole), Log: log,
		Info:        store.WorkerInfo{ID: id, Node: node, Host: host, PID: os.Getpid(), Version: opts.Version, Jobs: names, ProcToken: proc.Self(), Slots: opts.Concurrency},
		Concurrency: opts.Concurrency, Delay: opts.Delay,
		HeartbeatInterval: opts.HeartbeatInterval, HeartbeatTTL: opts.HeartbeatTTL,
		GracePeriod: opts.GracePeriod, OverrunGrace: opts.OverrunGrace,
		Retryable: c.retryable, Observer: opts.Metrics.observer(),
		// The public view of each attempt: the Task its hooks are given.
		NewHandle: func(a *engine.Attempt) any { return &Task{a: a, job: byName[a.Job.Name], db: c.store.DB} },
	}
	if start := c.cluster.OnWorkerStart; start != nil {
		o.OnStart = func(ctx context.Context) error { return start(ctx, log, id) }
	}
	return o
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.id }

// Stats returns the worker's counters.
func (w *Worker) Stats() *WorkerStats { return w.rt.Stats() }

// Kill stops the worker at once: it stops heartbeating and claiming, running
// tasks have their contexts cancelled and their outcome is not recorded, and
// Run returns (after at most OverrunGrace + 1s for functions that ignore
// their context). The dispatcher relaunches the tasks it was running.
func (w *Worker) Kill() { w.rt.Kill() }

// Run registers the worker and processes its tasks until ctx is cancelled,
// then stops gracefully: it takes no new tasks, lets running ones finish
// within GracePeriod (then cancels them), hands its unstarted reservations
// back and leaves the registry. Call Kill to stop at once. Persistent
// exec processes are stopped before Run returns.
func (w *Worker) Run(ctx context.Context) error {
	defer w.closeCallers()
	return w.rt.Run(ctx)
}

// closeCallers stops what the external jobs' callers keep running.
func (w *Worker) closeCallers() {
	for _, call := range w.callers {
		call.Close()
	}
}
