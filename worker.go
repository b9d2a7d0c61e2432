package pampa

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/proc"
	"github.com/pampa-go/pampa/internal/store"
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
	// for a processing function that ignores its context. The try is then
	// recorded as failed and the worker moves on. Default 5s.
	OverrunGrace time.Duration
	// Logger receives the worker's log. Default: discard.
	Logger *slog.Logger
	// Version is recorded in the registry (the program's version).
	Version string
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

// Worker processes the tasks the dispatcher reserves for its id.
type Worker struct {
	c        *Client
	id, node string
	opts     WorkerOptions
	jobs     []*jobRuntime
	log      *slog.Logger

	instance atomic.Pointer[string]
	assigned atomic.Pointer[string]
	fenced   atomic.Bool // heartbeat lost: take no tasks

	hardCtx    context.Context // cancelled by Kill
	hardCancel context.CancelFunc

	runMu     sync.Mutex
	runCtx    context.Context // parent of running tasks; replaced when they are cancelled
	runCancel context.CancelFunc

	stats WorkerStats

	// Taking tasks ahead: while tasks prove short next to the jobs' max
	// duration, the worker claims a queue's worth at once and records
	// their results together, one commit for many tasks.
	durEWMA   atomic.Int64 // recent task duration, ns
	observed  atomic.Int64 // tasks timed so far
	maxQueue  int          // largest queue_size of the worker's jobs
	shortest  time.Duration
	cancelGen atomic.Int64 // bumped when running tasks are cancelled
}

// WorkerStats are a worker's counters since it started.
type WorkerStats struct {
	Succeeded, Failed, Dropped atomic.Int64
}

// NewWorker prepares a worker. The id must belong to a defined node, and
// the worker must be able to run at least one job: a job whose processing
// function is registered and whose filter_worker_id matches the id.
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
	node, _, _ := ParseWorkerID(id)
	w := &Worker{c: c, id: id, node: node, opts: opts, log: opts.Logger.With("worker", id)}
	var skipped []string
	for _, j := range c.jobs {
		switch {
		case j.Process == nil:
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
	c.startNotifier(opts.Logger)
	for _, j := range w.jobs {
		w.maxQueue = max(w.maxQueue, j.QueueSize)
		if w.shortest == 0 || j.MaxJobDuration < w.shortest {
			w.shortest = j.MaxJobDuration
		}
	}
	w.hardCtx, w.hardCancel = context.WithCancel(context.Background())
	w.runCtx, w.runCancel = context.WithCancel(w.hardCtx)
	none := ""
	w.assigned.Store(&none)
	return w, nil
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.id }

// Stats returns the worker's counters.
func (w *Worker) Stats() *WorkerStats { return &w.stats }

// Kill stops the worker at once: it stops heartbeating and claiming, running
// tasks have their contexts cancelled and their outcome is not recorded, and
// Run returns (after at most OverrunGrace + 1s for functions that ignore
// their context). The dispatcher relaunches the tasks it was running.
func (w *Worker) Kill() { w.hardCancel() }

func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (w *Worker) register(ctx context.Context) error {
	inst := newInstance()
	host, _ := os.Hostname()
	names := make([]string, len(w.jobs))
	for i, j := range w.jobs {
		names[i] = j.Name
	}
	err := w.c.store.RegisterWorker(ctx, store.WorkerInfo{
		ID: w.id, Node: w.node, Host: host, PID: os.Getpid(), Version: w.opts.Version,
		Instance: inst, Jobs: names, ProcToken: proc.Self(),
	}, w.opts.HeartbeatTTL)
	if err != nil {
		return err
	}
	w.instance.Store(&inst)
	w.recoverOwn(ctx)
	return nil
}

// recoverOwn relaunches the rows this id holds as running. A process that
// has just registered runs none of them: they were left by an earlier
// process under the same id (killed, crashed, or stopped past its grace
// period) or by this one before it was declared dead. Registered again,
// the id looks alive, so the dispatcher would not hand them on before
// they expire. Late results of the old tries are fenced off by their try.
func (w *Worker) recoverOwn(ctx context.Context) {
	for _, j := range w.jobs {
		var relaunched, failed []any
		err := w.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			_, relaunched, failed, err = j.sql.RecoverWorkers(ctx, tx, []string{w.id},
				"worker restarted while running the task")
			if err != nil {
				return err
			}
			return j.relaunched(ctx, tx, relaunched)
		})
		if err != nil {
			// Not fatal: the dispatcher relaunches them once they expire.
			w.log.Warn("relaunch tasks left running by an earlier process", "job", j.Name, "err", err)
			continue
		}
		if len(relaunched)+len(failed) > 0 {
			w.log.Info("relaunched tasks left running by an earlier process", "job", j.Name,
				"relaunched", len(relaunched), "failed_for_good", len(failed))
		}
	}
}

// Run registers the worker and processes its tasks until ctx is cancelled,
// then stops gracefully: it takes no new tasks, lets running ones finish
// within GracePeriod (then cancels them), hands its unstarted reservations
// back and leaves the registry. Call Kill to stop at once.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.register(ctx); err != nil {
		return err
	}
	w.log.Info("worker started", "jobs", len(w.jobs), "concurrency", w.opts.Concurrency)
	for _, j := range w.jobs {
		if err := j.sql.LoadColumnTypes(ctx); err != nil {
			w.log.Warn("results will be recorded row by row", "job", j.Name, "err", err)
		}
	}
	if w.c.cluster.OnWorkerStart != nil {
		if err := w.c.cluster.OnWorkerStart(ctx, w.log, w.id); err != nil {
			w.leave()
			return fmt.Errorf("worker %s: start-up snippet: %w", w.id, err)
		}
	}
	loopCtx, stopLoops := context.WithCancel(ctx)
	// The heartbeat outlives ctx: it goes on while running tasks finish
	// during a graceful stop, so they are not handed on meanwhile.
	hbCtx, stopHeartbeat := context.WithCancel(context.Background())
	// Kill stops the loops too: a killed worker neither heartbeats nor
	// claims, so its tasks are handed on.
	stopOnKill := context.AfterFunc(w.hardCtx, func() { stopLoops(); stopHeartbeat() })
	defer stopOnKill()
	// hbDone is closed once the heartbeat loop has returned hbErr; closing
	// (rather than sending) lets both mainLoop and Run observe it.
	var hbErr error
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		hbErr = w.heartbeatLoop(hbCtx)
	}()

	err := w.mainLoop(loopCtx, hbDone)
	stopLoops()
	stopHeartbeat()
	<-hbDone
	if err == nil || errors.Is(err, errHeartbeatStopped) {
		// A nil hbErr means the heartbeat ended only because ctx did.
		err = hbErr
	}
	w.leave()
	w.log.Info("worker stopped", "succeeded", w.stats.Succeeded.Load(), "failed", w.stats.Failed.Load())
	return err
}

// mainLoop claims and runs tasks until ctx ends, then waits for running
// tasks within the grace period.
// errHeartbeatStopped tells Run that mainLoop ended because the heartbeat
// loop did.
var errHeartbeatStopped = errors.New("heartbeat stopped")

func (w *Worker) mainLoop(ctx context.Context, hbDone <-chan struct{}) error {
	wake, unsubscribe := w.c.bus.Subscribe(notify.WorkerTopic(w.id))
	defer unsubscribe()
	done := make(chan outcome, w.opts.Concurrency)
	inflight := 0
	var finished []outcome // results not yet recorded
	var flushBy time.Time  // when the oldest of them must be recorded
	var buffer []*Task     // tasks taken ahead, in claim order
	var claimedAt time.Time
	gen := w.cancelGen.Load()
	var giveBack []*Task // tasks taken ahead, to un-start
	reconcile := false   // a write failed: rows may be started that we do not hold
	var fatal error
	// look: the worker may claim. False once a claim came up short (its
	// queue ran dry), until the dispatcher wakes it or an idle poll finds
	// rows queued for it with a read: claiming as each task ends would
	// take the rows one or two at a time, a transaction each.
	look := true
	polled := false // the idle timer fired: check with a read

	collect := func(o outcome) {
		inflight--
		if len(finished) == 0 {
			flushBy = time.Now().Add(50 * time.Millisecond)
		}
		finished = append(finished, o)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil && fatal == nil {
		for drained := false; !drained; { // collect every result ready
			select {
			case o := <-done:
				collect(o)
			default:
				drained = true
			}
		}
		if g := w.cancelGen.Load(); g != gen || w.fenced.Load() {
			// Running tasks were cancelled (declared dead, or cut off):
			// never run the tasks taken ahead; give them back (a row
			// meanwhile handed on is left alone by the fence).
			gen = g
			giveBack, buffer = append(giveBack, buffer...), nil
		}
		if len(buffer) > 0 && time.Since(claimedAt) > w.staleAfter() {
			giveBack, buffer = append(giveBack, buffer...), nil
		}
		if reconcile && inflight == 0 && len(buffer) == 0 && len(finished) == 0 && !w.fenced.Load() {
			// Nothing runs here now: any row started under our id is a
			// claim whose commit we could not see. Hand such rows on.
			w.recoverOwn(ctx)
			reconcile, giveBack = false, nil
		}
		for inflight < w.opts.Concurrency && len(buffer) > 0 {
			t := buffer[0]
			buffer = buffer[1:]
			inflight++
			go func() { done <- w.execute(t) }()
		}
		free := w.opts.Concurrency - inflight
		want := free
		if len(buffer) == 0 {
			want += w.ahead()
		}
		if !look && polled && len(buffer) == 0 && want > 0 {
			look = w.queued(ctx)
		}
		polled = false
		if w.fenced.Load() || !look {
			want = 0
		}
		// Record results once the tasks taken ahead are used up (unless
		// the queue ran dry: then with the next claim), or when they have
		// waited long enough; claim in the same transaction.
		flush := len(finished) > 0 && ((len(buffer) == 0 && look) || len(finished) >= w.maxQueue || time.Now().After(flushBy))
		if flush || len(giveBack) > 0 || (want > 0 && len(buffer) == 0) {
			var toRecord []outcome
			if flush {
				toRecord, finished = finished, nil
			}
			if len(buffer) > 0 {
				want = 0
			}
			tasks, err := w.cycle(ctx, toRecord, giveBack, want)
			if err != nil && ctx.Err() == nil {
				w.log.Warn("claim tasks", "err", err)
				reconcile = true
			}
			if err == nil {
				giveBack = nil
			}
			if len(tasks) > 0 {
				claimedAt = time.Now()
			}
			for _, t := range tasks {
				if inflight < w.opts.Concurrency {
					inflight++
					go func() { done <- w.execute(t) }()
				} else {
					buffer = append(buffer, t)
				}
			}
			if len(tasks) < want {
				// The queue ran dry: ask the dispatcher for more.
				w.c.bus.Notify(notify.Dispatch)
			}
			if want > 0 {
				look = len(tasks) == want
			}
			if len(tasks) > 0 && inflight < w.opts.Concurrency {
				continue // look again right away for the slots still free
			}
		}
		if inflight == w.opts.Concurrency || (inflight > 0 && len(finished) > 0) {
			// Slots busy, or results waiting to be recorded: wait for a
			// task to end, or for the results' deadline.
			wait := time.Until(flushBy)
			if len(finished) == 0 {
				wait = time.Hour
			}
			resetTimer(timer, max(wait, time.Millisecond))
			select {
			case o := <-done:
				collect(o)
			case <-wake:
				look = true
			case <-timer.C:
			case <-ctx.Done():
			}
			continue
		}
		if len(buffer) > 0 {
			continue
		}
		// Idle, or results waiting for the dispatcher to refill the
		// queue: wait for a wake-up, the poll, or the results' deadline.
		wait := w.opts.Delay
		if len(finished) > 0 {
			wait = max(min(wait, time.Until(flushBy)), time.Millisecond)
		}
		resetTimer(timer, wait)
		select {
		case <-ctx.Done():
		case o := <-done:
			collect(o)
		case <-wake:
			look = true
		case <-timer.C:
			polled = true
		case <-hbDone:
			fatal = errHeartbeatStopped
		}
	}
	// Results that came in as the loop ended, and tasks taken ahead that
	// will not run now.
	if len(finished) > 0 || len(buffer) > 0 {
		_, _ = w.cycle(ctx, finished, append(giveBack, buffer...), 0)
		finished, buffer = nil, nil
	}
	// Graceful stop: let running tasks finish, within the grace period.
	if inflight > 0 {
		// "stopping": the dispatcher reserves nothing more for us, and
		// still counts us alive while the heartbeat goes on.
		if inst := w.instance.Load(); inst != nil {
			stCtx, cancel := context.WithTimeout(w.hardCtx, 5*time.Second)
			if err := w.c.store.SetWorkerState(stCtx, w.id, *inst, store.StateStopping); err != nil {
				w.log.Warn("mark stopping", "err", err)
			}
			cancel()
		}
		w.log.Info("stopping: waiting for running tasks", "running", inflight, "grace", w.opts.GracePeriod)
		grace := time.NewTimer(w.opts.GracePeriod)
		defer grace.Stop()
		for inflight > 0 {
			select {
			case o := <-done:
				inflight--
				_, _ = w.cycle(ctx, []outcome{o}, nil, 0)
			case <-grace.C:
				w.log.Warn("grace period over: cancelling running tasks", "running", inflight)
				w.hardCancel()
			case <-w.hardCtx.Done():
				// Killed: tasks are cancelled and their results not
				// recorded; wait for them, but not for functions that
				// ignore their context.
				drain := time.NewTimer(w.opts.OverrunGrace + time.Second)
				for inflight > 0 {
					select {
					case <-done:
						inflight--
					case <-drain.C:
						w.log.Warn("tasks still running after cancel; leaving them to be relaunched", "running", inflight)
						return fatal
					}
				}
				drain.Stop()
			}
		}
	}
	return fatal
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// leave hands unstarted reservations back and marks the worker stopped.
func (w *Worker) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, j := range w.jobs {
		err := w.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			n, err := j.sql.HandBack(ctx, tx, w.id)
			if n > 0 {
				w.log.Info("handed back unstarted tasks", "job", j.Name, "n", n)
			}
			return err
		})
		if err != nil {
			w.log.Warn("hand back unstarted tasks", "job", j.Name, "err", err)
		}
	}
	if inst := w.instance.Load(); inst != nil {
		if err := w.c.store.SetWorkerState(ctx, w.id, *inst, store.StateStopped); err != nil {
			w.log.Warn("leave registry", "err", err)
		}
	}
}

// heartbeatLoop keeps the registry row fresh and learns the assigned job.
// It returns an error only when the worker must stop: another process
// took its id.
func (w *Worker) heartbeatLoop(ctx context.Context) error {
	t := time.NewTicker(w.opts.HeartbeatInterval)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A slow heartbeat still counts, but not one so slow that the
		// worker would notice its loss too late.
		hbCtx, cancel := context.WithTimeout(ctx, max(w.opts.HeartbeatInterval, w.opts.HeartbeatTTL/2)-w.opts.HeartbeatInterval/2)
		job, ok, err := w.c.store.Heartbeat(hbCtx, w.id, *w.instance.Load())
		cancel()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			w.log.Warn("heartbeat failed", "err", err, "since_last_ok", time.Since(lastOK).Round(time.Millisecond))
			// Stop a heartbeat short of the TTL: the dispatcher hands our
			// tasks on at the TTL, and by then we must have let go.
			if time.Since(lastOK) > w.opts.HeartbeatTTL-w.opts.HeartbeatInterval && !w.fenced.Swap(true) {
				w.log.Error("no heartbeat for longer than the TTL: taking no tasks and cancelling running ones, which the dispatcher hands on",
					"ttl", w.opts.HeartbeatTTL)
				w.cancelRunning()
			}
		case !ok:
			// Declared dead (say, after a long pause): our running tasks
			// were relaunched elsewhere. Drop them and join again.
			w.log.Warn("the registry declared this worker dead; cancelling running tasks and registering again")
			w.cancelRunning()
			if err := w.register(ctx); err != nil {
				if errors.Is(err, store.ErrWorkerRunning) {
					return fmt.Errorf("worker %s: %w", w.id, err)
				}
				w.log.Warn("register again", "err", err)
				continue
			}
			lastOK = time.Now()
			w.fenced.Store(false)
		default:
			lastOK = time.Now()
			if w.fenced.Swap(false) {
				w.log.Info("heartbeat back: taking tasks again")
			}
			w.assigned.Store(&job)
		}
	}
}

// cancelRunning cancels the contexts of running tasks; later tasks get a
// fresh parent.
func (w *Worker) cancelRunning() {
	w.cancelGen.Add(1)
	w.runMu.Lock()
	defer w.runMu.Unlock()
	w.runCancel()
	w.runCtx, w.runCancel = context.WithCancel(w.hardCtx)
}

func (w *Worker) taskParent() context.Context {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	return w.runCtx
}

// claim starts up to n reserved tasks in a transaction of its own.
func (w *Worker) claim(ctx context.Context, n int) ([]*Task, error) {
	var out []*Task
	err := w.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = w.claimIn(ctx, tx, n)
		return err
	})
	return out, err
}

// claimIn starts up to n reserved tasks within tx.
func (w *Worker) claimIn(ctx context.Context, tx *sql.Tx, n int) ([]*Task, error) {
	// Rows left from jobs the worker was moved away from come first: there
	// are at most a queue of them, while the assigned job's queue is
	// refilled every round and would keep them waiting for ever.
	assigned := *w.assigned.Load()
	order := make([]*jobRuntime, 0, len(w.jobs))
	for _, j := range w.jobs {
		if j.Name != assigned {
			order = append(order, j)
		}
	}
	for _, j := range w.jobs {
		if j.Name == assigned {
			order = append(order, j)
		}
	}
	var out []*Task
	for _, j := range order {
		if n-len(out) == 0 {
			break
		}
		rows, err := j.sql.Claim(ctx, tx, w.id, n-len(out))
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		for _, r := range rows {
			out = append(out, w.newTask(j, r))
		}
	}
	return out, nil
}

// queued reports whether any of the worker's jobs holds a reserved,
// unstarted row for it: a read, so that an idle worker's polls take no
// write lock.
func (w *Worker) queued(ctx context.Context) bool {
	for _, j := range w.jobs {
		ok, err := j.sql.Queued(ctx, w.c.store.DB, w.id)
		if err != nil || ok {
			return true // on error, let the claim find out
		}
	}
	return false
}

func (w *Worker) newTask(j *jobRuntime, r store.Row) *Task {
	key, _ := r.Get(j.PrimaryKey)
	t := &Task{job: j.Job, worker: w.id, row: r, key: key, db: w.c.store.DB}
	if v, ok := r.Get(j.Fields.ReservationTimes); ok {
		t.try, _ = t.Int64(j.Fields.ReservationTimes)
		_ = v
	}
	t.log = w.log.With("job", j.Name, "task", key, "try", t.try)
	return t
}

// outcome is a processed task waiting for its result to be written.
type outcome struct {
	job  *jobRuntime
	task *Task
	err  error
}

// execute runs the starter hook and the processing function of one task.
func (w *Worker) execute(t *Task) outcome {
	j := w.jobFor(t)
	var err error
	if j.Hooks.Starter != nil {
		err = w.c.store.Tx(w.hardCtx, func(ctx context.Context, tx *sql.Tx) error {
			return j.Hooks.Starter(ctx, tx, t)
		})
		if err != nil {
			err = fmt.Errorf("starter hook: %w", err)
		}
	}
	if err == nil {
		start := time.Now()
		err = w.process(j, t)
		w.observe(time.Since(start))
	}
	return outcome{job: j, task: t, err: err}
}

// observe folds a task's duration into the recent average.
func (w *Worker) observe(d time.Duration) {
	old := w.durEWMA.Load()
	if w.observed.Add(1) == 1 {
		w.durEWMA.Store(int64(d))
		return
	}
	w.durEWMA.Store(old + (int64(d)-old)/8)
}

// ahead is how many tasks the worker may claim beyond its free slots:
// a queue's worth while tasks are short (a queue of them takes under a
// twentieth of the shortest max duration), none otherwise.
func (w *Worker) ahead() int {
	if w.observed.Load() < 3 {
		return 0
	}
	if time.Duration(w.durEWMA.Load())*time.Duration(w.maxQueue) > w.shortest/20 {
		return 0
	}
	return w.maxQueue
}

// staleAfter is how long a task taken ahead may wait before it is given
// back instead of run: far within its max duration, so the dispatcher
// never relaunches a task still waiting here.
func (w *Worker) staleAfter() time.Duration { return w.shortest / 4 }

// batchError is a failure inside a batched write that the one-by-one path
// knows how to handle (a column that cannot be written, a finisher hook's
// error).
type batchError struct{ err error }

func (e batchError) Error() string { return e.err.Error() }

// cycle records finished tasks' results and claims up to n new tasks, in
// one transaction: one commit per task in the steady state instead of
// two. If the batch cannot be written as it is, each result is recorded
// on its own, with the full handling of finish.
func (w *Worker) cycle(ctx context.Context, done []outcome, giveBack []*Task, n int) ([]*Task, error) {
	if len(done) == 0 && len(giveBack) == 0 {
		if n == 0 {
			return nil, nil
		}
		return w.claim(ctx, n)
	}
	var applied []bool
	var claimed []*Task
	err := w.c.store.Tx(w.hardCtx, func(txCtx context.Context, tx *sql.Tx) error {
		applied, claimed = nil, nil
		for _, t := range giveBack {
			j := w.jobFor(t)
			if _, err := j.sql.Unstart(txCtx, tx, store.Fence{Key: t.key, Worker: w.id, Try: t.try}); err != nil {
				return err
			}
		}
		var err error
		if applied, err = w.finishMany(txCtx, tx, done); err != nil {
			return batchError{err}
		}
		for i, o := range done {
			if applied[i] && o.job.Hooks.Finisher != nil {
				if err := o.job.Hooks.Finisher(txCtx, tx, o.task, o.err); err != nil {
					return batchError{err}
				}
			}
		}
		if n > 0 && ctx.Err() == nil && !w.fenced.Load() {
			var err error
			claimed, err = w.claimIn(txCtx, tx, n)
			return err
		}
		return nil
	})
	if err != nil {
		for _, o := range done {
			w.finish(o.job, o.task, o.err)
		}
		// The batch's fate is unknown if its commit was cut off: the
		// caller reconciles once nothing runs here (see mainLoop).
		return nil, fmt.Errorf("record results and claim: %w", err)
	}
	for i, o := range done {
		w.logResult(o.task, w.resultOf(o), applied[i])
	}
	return claimed, nil
}

// finishMany records the outcomes of done within tx, a few statements per
// job, and reports which were applied (in done's order).
func (w *Worker) finishMany(ctx context.Context, tx *sql.Tx, done []outcome) ([]bool, error) {
	applied := make([]bool, len(done))
	for _, j := range w.jobs {
		var idx []int
		var fences []store.Fence
		var outs []store.Outcome
		for i, o := range done {
			if o.job == j {
				idx = append(idx, i)
				fences = append(fences, store.Fence{Key: o.task.key, Worker: w.id, Try: o.task.try})
				outs = append(outs, w.resultOf(o))
			}
		}
		if len(idx) == 0 {
			continue
		}
		ok, err := j.sql.FinishMany(ctx, tx, fences, outs)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			applied[i] = ok[k]
		}
	}
	return applied, nil
}

// resultOf is the outcome a task's try records.
func (w *Worker) resultOf(o outcome) store.Outcome {
	out := store.Outcome{Success: o.err == nil, Set: o.task.set}
	taskErr := o.err
	if taskErr == nil && o.task.setErr != nil {
		taskErr = o.task.setErr
		out = store.Outcome{Success: false}
	}
	if taskErr != nil {
		out.Error = describe(taskErr)
	}
	return out
}

// logResult counts and logs a recorded (or dropped) result.
func (w *Worker) logResult(t *Task, out store.Outcome, applied bool) {
	switch {
	case !applied:
		w.stats.Dropped.Add(1)
		t.log.Warn("late result dropped: the task was relaunched or handed to another worker", "success", out.Success)
	case out.Success:
		w.stats.Succeeded.Add(1)
		t.log.Debug("task succeeded")
	default:
		w.stats.Failed.Add(1)
		t.log.Info("task failed", "err", out.Error)
	}
}

func (w *Worker) jobFor(t *Task) *jobRuntime {
	for _, j := range w.jobs {
		if j.Job == t.job {
			return j
		}
	}
	panic("pampa: task of an unknown job")
}

// process calls the processing function with the job's deadline,
// recovering panics and not waiting forever for a function that ignores
// its context.
func (w *Worker) process(j *jobRuntime, t *Task) error {
	ctx, cancel := context.WithTimeout(w.taskParent(), j.MaxJobDuration)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- &PanicError{Value: p, Stack: string(debug.Stack())}
			}
		}()
		done <- j.Process(ctx, t)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done:
		case <-time.After(w.opts.OverrunGrace):
			err = fmt.Errorf("the processing function did not return within %s of its context ending (%v); abandoned", w.opts.OverrunGrace, context.Cause(ctx))
		}
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after max_job_duration %s: %w", j.MaxJobDuration, err)
	}
	return err
}

// PanicError is a panic in a processing function, recorded as the try's
// failure.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack) }

// maxErrorLen caps a stored error description.
const maxErrorLen = 8 << 10

// describe turns an error into text any database column accepts: valid
// UTF-8, no NUL bytes, at most maxErrorLen bytes.
func describe(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\\0")
	if len(s) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
	}
	return s
}

type finisherError struct{ err error }

func (e finisherError) Error() string { return "finisher hook: " + e.err.Error() }

// finish records the outcome, fenced by (key, worker, try). It retries
// while the database is unreachable; a result it cannot write is left for
// the dispatcher to relaunch, never reported as done.
func (w *Worker) finish(j *jobRuntime, t *Task, taskErr error) {
	out := w.resultOf(outcome{job: j, task: t, err: taskErr})
	if taskErr == nil && t.setErr != nil {
		taskErr = t.setErr
	}
	fence := store.Fence{Key: t.key, Worker: w.id, Try: t.try}
	// Finishing outlives a graceful stop's cancel, but not a Kill.
	ctx := w.hardCtx
	useFinisher := j.Hooks.Finisher != nil
	for attempt := 0; ; attempt++ {
		var applied bool
		err := w.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			applied, err = j.sql.Finish(ctx, tx, fence, out)
			if err != nil || !applied || !useFinisher {
				return err
			}
			if ferr := j.Hooks.Finisher(ctx, tx, t, taskErr); ferr != nil {
				return finisherError{ferr}
			}
			return nil
		})
		var fe finisherError
		switch {
		case err == nil:
			w.logResult(t, out, applied)
			return
		case errors.As(err, &fe):
			useFinisher = false
			taskErr = fe
			out = store.Outcome{Success: false, Error: describe(fe)}
		case len(out.Set) > 0 && !w.c.retryable(err):
			// A column the function set cannot be written: record that
			// as the failure instead.
			taskErr = fmt.Errorf("writing back columns set by the processing function: %w", err)
			out = store.Outcome{Success: false, Error: describe(taskErr)}
		case ctx.Err() != nil:
			t.log.Warn("worker killed before the outcome was recorded; the dispatcher will relaunch the task", "err", err)
			return
		case w.c.retryable(err):
			t.log.Warn("cannot record outcome yet; retrying", "err", err, "attempt", attempt+1)
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
			}
		default:
			t.log.Error("cannot record outcome; the dispatcher will relaunch the task", "err", err)
			return
		}
	}
}
