package pampa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// leaseName is the leader lease the dispatchers of a database share.
const leaseName = "dispatcher"

// DispatcherOptions tune a dispatcher. Zero values take the defaults given.
type DispatcherOptions struct {
	// Delay is the longest wait between two rounds; workers running low
	// wake the dispatcher sooner. Default 1s on PostgreSQL, which also
	// wakes it on notifications; 50ms on SQLite and 250ms on CockroachDB,
	// which have none.
	Delay time.Duration
	// MaintenanceEvery is how often the dispatcher relaunches tasks and
	// re-balances workers (the stretch and relaunch steps). Default: Delay,
	// but at least 1s.
	MaintenanceEvery time.Duration
	// LeaseTTL is how long the leader's lease lasts without renewal; a
	// standby takes over that long after the leader vanishes. Default 5s.
	LeaseTTL time.Duration
	// WorkerTTL is how long a worker may go without a heartbeat before it
	// is declared dead and its tasks are handed on. Default 15s; keep it
	// equal to the workers' HeartbeatTTL (which workers act on one
	// heartbeat interval early).
	WorkerTTL time.Duration
	// ReleaseAfter is how long a job must have had nothing pending before
	// its workers are released: a quiet spell between bursts keeps them,
	// so new rows start at once. Default 10s.
	ReleaseAfter time.Duration
	// ExpiryGrace is added to a job's max duration before the dispatcher
	// relaunches a running try on its own (the worker normally fails it
	// first). Default 30s.
	ExpiryGrace time.Duration
	// ID names this dispatcher in the lease. Default "<host>:<pid>:<random>".
	ID string
	// Logger receives the dispatcher's log. Default: discard.
	Logger *slog.Logger
}

func (o DispatcherOptions) withDefaults() DispatcherOptions {
	if o.MaintenanceEvery == 0 {
		o.MaintenanceEvery = max(o.Delay, time.Second)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 5 * time.Second
	}
	if o.WorkerTTL == 0 {
		o.WorkerTTL = DefaultWorkerTTL
	}
	if o.ReleaseAfter == 0 {
		o.ReleaseAfter = 10 * time.Second
	}
	if o.ExpiryGrace == 0 {
		o.ExpiryGrace = 30 * time.Second
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), newInstance()[:6])
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Dispatcher reserves tasks for workers. Several may run; one leads (holds
// the lease) and the others wait as standbys. Each round of the leader:
//
//	stretch  → assign and release workers per job (see stretch.go)
//	relaunch → hand on tasks of dead workers, expired tries, failed tries
//	           with tries left, and rows picked by relaunching hooks
//	dispatch → top each assigned worker's queue up to queue_size
//
// stretch and relaunch run at most every MaintenanceEvery; dispatch runs
// every round.
type Dispatcher struct {
	c    *Client
	opts DispatcherOptions
	log  *slog.Logger

	leading         bool
	term            int64
	lastLease       time.Time
	lastMaintenance time.Time
	// idleSince is when each job was last seen with nothing pending and
	// nothing newly reserved (zero while it is busy).
	idleSince map[string]time.Time
	// dbTrouble is when a round last failed to reach the database. For a
	// WorkerTTL after it, stale heartbeats say more about the outage than
	// about the workers, so nobody is declared dead.
	dbTrouble time.Time
}

// NewDispatcher prepares a dispatcher.
func (c *Client) NewDispatcher(opts DispatcherOptions) *Dispatcher {
	if opts.Delay == 0 {
		opts.Delay = c.defaultDelay()
	}
	opts = opts.withDefaults()
	c.startNotifier(opts.Logger)
	return &Dispatcher{c: c, opts: opts, log: opts.Logger, idleSince: map[string]time.Time{}}
}

// Leading reports whether the dispatcher held the lease at its last round.
func (d *Dispatcher) Leading() bool { return d.leading }

// Run runs rounds until ctx is cancelled, then resigns the lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.c.cluster.OnDispatcherStart != nil {
		if err := d.c.cluster.OnDispatcherStart(ctx, d.log); err != nil {
			return fmt.Errorf("dispatcher start-up snippet: %w", err)
		}
	}
	d.log.Info("dispatcher started", "id", d.opts.ID, "jobs", len(d.c.jobs), "delay", d.opts.Delay)
	wake, unsubscribe := d.c.bus.Subscribe(notify.Dispatch)
	defer unsubscribe()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if _, err := d.RunOnce(ctx); err != nil && ctx.Err() == nil {
			if d.c.retryable(err) {
				if d.dbTrouble.IsZero() || time.Since(d.dbTrouble) > d.opts.Delay*10 {
					d.log.Warn("database unreachable; retrying", "err", err)
				}
				d.dbTrouble = time.Now()
			} else {
				d.log.Warn("round failed", "err", err)
			}
		}
		resetTimer(timer, d.opts.Delay)
		select {
		case <-ctx.Done():
			d.Resign()
			d.log.Info("dispatcher stopped")
			return nil
		case <-wake:
		case <-timer.C:
		}
	}
}

// Resign gives up the leader lease if this dispatcher holds it, so that
// another dispatcher can lead at once instead of after the lease's TTL.
// Run does it when it stops; a program that drives rounds with RunOnce
// calls it when done.
func (d *Dispatcher) Resign() {
	if !d.leading {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.c.store.ResignLease(ctx, leaseName, d.opts.ID); err != nil {
		d.log.Warn("resign lease", "err", err)
	}
	d.leading = false
}

// RoundStats say what one round did.
type RoundStats struct {
	Leading    bool
	Reserved   int // rows reserved for workers
	Relaunched int // rows returned to pending
	Failed     int // rows failed for good by recovery
	Released   int // unstarted reservations taken back from dead workers
	Assigned   int // assignment changes
	DeadMarked int // workers declared dead
}

// RunOnce runs one round if this dispatcher leads (or becomes leader).
func (d *Dispatcher) RunOnce(ctx context.Context) (RoundStats, error) {
	var st RoundStats
	if err := d.lead(ctx); err != nil {
		return st, err
	}
	st.Leading = d.leading
	if !d.leading {
		return st, nil
	}
	var merr error
	if time.Since(d.lastMaintenance) >= d.opts.MaintenanceEvery {
		// A failed maintenance step (a lock held by a frozen process, a
		// broken hook) does not hold up dispatching.
		merr = d.maintain(ctx, &st)
		d.lastMaintenance = time.Now()
	}
	return st, errors.Join(merr, d.dispatch(ctx, &st))
}

// lead takes or renews the lease; renewal happens at a third of its TTL.
func (d *Dispatcher) lead(ctx context.Context) error {
	if d.leading && time.Since(d.lastLease) < d.opts.LeaseTTL/3 {
		return nil
	}
	term, ok, err := d.c.store.AcquireLease(ctx, leaseName, d.opts.ID, d.opts.LeaseTTL)
	if err != nil {
		if d.leading && time.Since(d.lastLease) > d.opts.LeaseTTL*2/3 {
			// Stop acting as leader before the lease can pass to another.
			d.leading = false
			d.log.Warn("cannot renew the lease: standing down", "err", err)
		}
		return fmt.Errorf("lease: %w", err)
	}
	if ok && !d.leading {
		d.log.Info("leading", "term", term)
		d.lastMaintenance = time.Time{}
	}
	if !ok && d.leading {
		d.log.Warn("lost the lease to another dispatcher")
	}
	d.leading, d.term = ok, term
	if ok {
		d.lastLease = time.Now()
	}
	return nil
}

// maintain runs the stretch and relaunch steps.
func (d *Dispatcher) maintain(ctx context.Context, st *RoundStats) error {
	if !d.dbTrouble.IsZero() && time.Since(d.dbTrouble) < d.opts.WorkerTTL {
		// Just back from an outage: give workers a TTL to heartbeat again
		// before judging them; dispatching goes on meanwhile.
		return nil
	}
	dead, err := d.c.store.MarkDead(ctx, d.opts.WorkerTTL)
	if err != nil {
		return fmt.Errorf("mark dead workers: %w", err)
	}
	for _, id := range dead {
		d.log.Warn("worker declared dead: heartbeat lapsed", "worker", id, "ttl", d.opts.WorkerTTL)
	}
	st.DeadMarked = len(dead)
	workers, err := d.c.store.Workers(ctx, d.opts.WorkerTTL)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	// A job's tasks stay with a worker only while it is fresh and its
	// program still runs that job.
	// MarkDead has just judged the heartbeats: whoever it left running
	// still holds its tasks (judging again here, a moment later, could
	// hand on the tasks of a worker not yet declared dead).
	holds := map[string]map[string]bool{} // worker → jobs
	for _, w := range workers {
		if w.State == store.StateRunning || w.State == store.StateStopping {
			holds[w.ID] = map[string]bool{}
			for _, name := range w.Jobs {
				holds[w.ID][name] = true
			}
		}
	}
	// One job's failure (a broken hook, say) must not stop the others.
	var errs []error
	for _, j := range d.c.jobs {
		if err := d.relaunch(ctx, j, holds, st); err != nil {
			errs = append(errs, fmt.Errorf("job %s: relaunch: %w", j.Name, err))
		}
	}
	if err := d.stretch(ctx, workers, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// relaunch hands on the job's tasks that will not finish where they are.
func (d *Dispatcher) relaunch(ctx context.Context, j *jobRuntime, holds map[string]map[string]bool, st *RoundStats) error {
	holders, err := j.sql.InFlightWorkers(ctx, d.c.store.DB)
	if err != nil {
		return err
	}
	var gone []string
	for _, id := range holders {
		if !holds[id][j.Name] {
			gone = append(gone, id)
		}
	}
	var relaunched, failed []any
	err = d.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		relaunched, failed = nil, nil
		// A frozen process may hold locks on its rows (say, stopped in
		// the middle of a claim): give up on them for this round rather
		// than wait, and try again next round.
		if err := d.c.store.LockTimeout(ctx, tx, 2*time.Second); err != nil {
			return err
		}
		released, r1, f1, err := j.sql.RecoverWorkers(ctx, tx, gone, "worker died or left while running the task")
		if err != nil {
			return err
		}
		st.Released += int(released)
		r2, f2, err := j.sql.RecoverExpired(ctx, tx, j.MaxJobDuration+d.opts.ExpiryGrace,
			fmt.Sprintf("expired: still running %s after it started (max_job_duration %s)", j.MaxJobDuration+d.opts.ExpiryGrace, j.MaxJobDuration))
		if err != nil {
			return err
		}
		r3, err := j.sql.RelaunchFailed(ctx, tx, j.RetryBackoff)
		if err != nil {
			return err
		}
		relaunched = append(append(append(relaunched, r1...), r2...), r3...)
		failed = append(f1, f2...)
		return j.relaunched(ctx, tx, relaunched)
	})
	if err != nil {
		return err
	}
	if custom, err := d.customRelaunch(ctx, j); err != nil {
		return err
	} else {
		relaunched = append(relaunched, custom...)
	}
	if len(gone) > 0 || len(relaunched) > 0 || len(failed) > 0 {
		d.log.Info("relaunched tasks", "job", j.Name, "relaunched", len(relaunched), "failed_for_good", len(failed), "gone_workers", gone)
	}
	st.Relaunched += len(relaunched)
	st.Failed += len(failed)
	return nil
}

// relaunched runs the job's relauncher hook, if any, for each key reset
// for relaunch, in the transaction that reset them.
func (j *jobRuntime) relaunched(ctx context.Context, tx *sql.Tx, keys []any) error {
	if j.Hooks.Relauncher == nil {
		return nil
	}
	for _, k := range keys {
		if err := j.Hooks.Relauncher(ctx, tx, k); err != nil {
			return fmt.Errorf("relauncher hook (key %v): %w", k, err)
		}
	}
	return nil
}

// customRelaunch runs the job's relaunching hook, if any.
func (d *Dispatcher) customRelaunch(ctx context.Context, j *jobRuntime) ([]any, error) {
	h := j.Hooks
	if h.Relaunching == nil && h.RelaunchingSQL == "" {
		return nil, nil
	}
	n := max(j.QueueSize*10, 100)
	var keys []any
	var err error
	if h.Relaunching != nil {
		keys, err = h.Relaunching(ctx, d.c.querier(), n)
	} else {
		keys, err = j.sql.KeysFromQuery(ctx, d.c.store.DB, h.RelaunchingSQL, map[string]any{"n": n})
	}
	if err != nil {
		return nil, fmt.Errorf("relaunching hook: %w", err)
	}
	var done []any
	err = d.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if done, err = j.sql.RelaunchKeys(ctx, tx, keys); err != nil {
			return err
		}
		return j.relaunched(ctx, tx, done)
	})
	return done, err
}

// stretch applies the elastic assignment rule.
func (d *Dispatcher) stretch(ctx context.Context, workers []store.WorkerInfo, st *RoundStats) error {
	live := 0
	for _, w := range workers {
		if w.Alive {
			live++
		}
	}
	loads := make([]jobLoad, 0, len(d.c.jobs))
	var errs []error
	for _, j := range d.c.jobs {
		n, err := d.pendingCount(ctx, j, pendingLimit(j.Job, live))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("job %s: count pending: %w", j.Name, err))
			n = unknownLoad
		case n > 0:
			delete(d.idleSince, j.Name)
		case d.idleSince[j.Name].IsZero():
			d.idleSince[j.Name] = time.Now()
			n = unknownLoad // just went quiet: keep its workers a while
		case time.Since(d.idleSince[j.Name]) < d.opts.ReleaseAfter:
			n = unknownLoad
		}
		loads = append(loads, jobLoad{job: j.Job, pending: n})
	}
	for _, a := range planAssignments(loads, workers) {
		ok, err := d.c.store.Assign(ctx, a.worker, a.from, a.to)
		if err != nil {
			return fmt.Errorf("assign %s: %w", a.worker, err)
		}
		if ok {
			st.Assigned++
			if a.to == "" {
				d.log.Info("worker released", "worker", a.worker, "job", a.from)
			} else {
				d.log.Info("worker assigned", "worker", a.worker, "job", a.to)
			}
		}
	}
	return errors.Join(errs...)
}

// pendingCount counts a job's dispatchable backlog up to limit, through its
// pending or selecting hook when it has one.
func (d *Dispatcher) pendingCount(ctx context.Context, j *jobRuntime, limit int) (int, error) {
	h := j.Hooks
	switch {
	case h.Pending != nil || h.PendingSQL != "":
		n, err := d.c.reportHook(ctx, h.Pending, h.PendingSQL)
		return int(n), err
	case h.Selecting != nil || h.SelectingSQL != "":
		keys, err := d.c.selectKeys(ctx, j, limit)
		return len(keys), err
	default:
		return j.sql.CountPending(ctx, d.c.store.DB, limit)
	}
}

// dispatch tops up the queue of every live worker assigned to a job.
func (d *Dispatcher) dispatch(ctx context.Context, st *RoundStats) error {
	workers, err := d.c.store.Workers(ctx, d.opts.WorkerTTL)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	var errs []error
	for _, j := range d.c.jobs {
		if err := d.dispatchJob(ctx, j, workers, st); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.Name, err))
		}
	}
	if st.Reserved > 0 {
		d.log.Debug("reserved tasks", "n", st.Reserved)
	}
	return errors.Join(errs...)
}

// dispatchJob tops up the queues of the job's workers.
func (d *Dispatcher) dispatchJob(ctx context.Context, j *jobRuntime, workers []store.WorkerInfo, st *RoundStats) error {
	{
		var mine []store.WorkerInfo
		for _, w := range workers {
			if w.Alive && w.Job == j.Name {
				mine = append(mine, w)
			}
		}
		if len(mine) == 0 {
			return nil
		}
		queues, err := d.queueLengths(ctx, j, mine)
		if err != nil {
			return fmt.Errorf("queue lengths: %w", err)
		}
		type want struct {
			worker string
			n      int
		}
		var wants []want
		for _, w := range mine {
			free := j.QueueSize - queues[w.ID]
			if free <= 0 {
				continue
			}
			if ok, err := d.allowing(ctx, j, w.ID); err != nil {
				return fmt.Errorf("allowing hook (worker %s): %w", w.ID, err)
			} else if ok {
				wants = append(wants, want{w.ID, free})
			}
		}
		got := make([]int, len(wants))
		if j.Hooks.Selecting != nil || j.Hooks.SelectingSQL != "" {
			for i, w := range wants {
				n, err := d.reserveSelected(ctx, j, w.worker, w.n)
				if err != nil {
					return fmt.Errorf("reserve for %s: %w", w.worker, err)
				}
				if got[i] = n; n < w.n {
					break // the backlog is empty
				}
			}
		} else {
			// Every worker's share in one statement: one commit a round.
			shares := make([]store.Share, len(wants))
			for i, w := range wants {
				shares[i] = store.Share{Worker: w.worker, N: w.n}
			}
			err := d.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
				keys, err := j.sql.ReserveShares(ctx, tx, shares)
				for i := range keys {
					got[i] = len(keys[i])
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("reserve: %w", err)
			}
		}
		for i, w := range wants {
			if got[i] > 0 {
				st.Reserved += got[i]
				d.c.bus.Notify(notify.WorkerTopic(w.worker))
				delete(d.idleSince, j.Name) // busy: a trickle keeps its workers
			}
		}
	}
	return nil
}

func (d *Dispatcher) queueLengths(ctx context.Context, j *jobRuntime, ws []store.WorkerInfo) (map[string]int, error) {
	h := j.Hooks
	if h.Occupied == nil && h.OccupiedSQL == "" {
		return j.sql.QueueLengths(ctx, d.c.store.DB)
	}
	out := map[string]int{}
	for _, w := range ws {
		var n int
		var err error
		if h.Occupied != nil {
			n, err = h.Occupied(ctx, d.c.querier(), w.ID)
		} else {
			err = d.c.store.Scalar(ctx, d.c.store.DB, h.OccupiedSQL, map[string]any{"worker": w.ID}, &n)
		}
		if err != nil {
			return nil, fmt.Errorf("occupied hook (worker %s): %w", w.ID, err)
		}
		out[w.ID] = n
	}
	return out, nil
}

func (d *Dispatcher) allowing(ctx context.Context, j *jobRuntime, worker string) (bool, error) {
	h := j.Hooks
	switch {
	case h.Allowing != nil:
		return h.Allowing(ctx, d.c.querier(), worker)
	case h.AllowingSQL != "":
		var ok bool
		err := d.c.store.Scalar(ctx, d.c.store.DB, h.AllowingSQL, map[string]any{"worker": worker}, &ok)
		return ok, err
	}
	return true, nil
}

// reserveSelected reserves, for a worker, up to n of the rows the job's
// selecting hook picks, and returns how many.
func (d *Dispatcher) reserveSelected(ctx context.Context, j *jobRuntime, worker string, n int) (int, error) {
	custom, err := d.c.selectKeys(ctx, j, n)
	if err != nil || len(custom) == 0 {
		return 0, err
	}
	var keys []any
	err = d.c.store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		keys, err = j.sql.ReserveKeys(ctx, tx, worker, custom)
		return err
	})
	return len(keys), err
}

// selectKeys runs the job's selecting hook.
func (c *Client) selectKeys(ctx context.Context, j *jobRuntime, n int) ([]any, error) {
	var keys []any
	var err error
	if j.Hooks.Selecting != nil {
		keys, err = j.Hooks.Selecting(ctx, c.querier(), n)
	} else {
		keys, err = j.sql.KeysFromQuery(ctx, c.store.DB, j.Hooks.SelectingSQL, map[string]any{"n": n})
	}
	if err != nil {
		return nil, fmt.Errorf("selecting hook: %w", err)
	}
	if len(keys) > n {
		keys = keys[:n]
	}
	return keys, nil
}
