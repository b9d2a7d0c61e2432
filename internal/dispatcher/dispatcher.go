// Package dispatcher is the dispatcher's round loop. Several dispatchers
// may share a database; the one holding the lease leads, the others wait
// as standbys. Each round of the leader:
//
//	lease       → take or renew the lease (internal/leadership)
//	maintenance → declare dead workers, relaunch what will not finish
//	              where it is (internal/maintenance)
//	stretch     → assign and release workers per job (internal/dispatch)
//	reserve     → top each assigned worker's queue up to queue_size
//	              (internal/dispatch)
//
// With completion hooks, the maintenance pass also closes the drain runs
// and groups' runs that ended, writing their events (internal/maintenance,
// completion.go), and Run calls the events' hooks on a goroutine of its
// own, one event at a time, so that a slow hook holds up no round. A
// stopping dispatcher waits for the hook call in progress to return and
// records its outcome before it resigns the lease.
//
// maintenance and stretch run at most every MaintenanceEvery; reserve
// runs every round. A round runs every Delay, or sooner when a worker
// running low wakes the dispatcher, or when a scheduled task falls due
// (the leader reads the next run-at after each round); that round runs
// maintenance and stretch too, so that the job has workers.
package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/dispatch"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/leadership"
	"github.com/pampa-go/pampa/internal/maintenance"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// LeaseName is the leader lease the dispatchers of a database share.
const LeaseName = "dispatcher"

// Options configure the loop; the public package fills in the defaults
// documented on its DispatcherOptions.
type Options struct {
	Store *store.Store
	Bus   *notify.Bus
	Jobs  []*engine.Job
	Log   *slog.Logger
	ID    string

	Delay            time.Duration
	MaintenanceEvery time.Duration
	LeaseTTL         time.Duration
	WorkerTTL        time.Duration
	ReleaseAfter     time.Duration
	ExpiryGrace      time.Duration
	// HookTimeout bounds each completion hook call (0: the default).
	HookTimeout time.Duration
	// HoldEvents writes completion events but fires none: for tests of a
	// leader that stops between detecting an event and firing it.
	HoldEvents bool

	// Retryable reports passing database conditions.
	Retryable func(error) bool
	// Observer is told of each round and of the lease (the jobs'
	// observers are on each Job); nil records nothing.
	Observer engine.Observer
}

// Stats say what one round did.
type Stats struct {
	Leading     bool
	Maintenance maintenance.Result
	Dispatch    dispatch.Result
}

// Loop is one dispatcher.
type Loop struct {
	opts     Options
	elector  *leadership.Elector
	maintain *maintenance.Service
	complete *maintenance.Completion
	dispatch *dispatch.Service
	runs     *engine.OpenRuns

	// leading mirrors the elector's state for the goroutine that fires
	// completion events; firing is set while it runs.
	leading atomic.Bool
	firing  atomic.Bool
	fireWG  sync.WaitGroup
	// async is set under Run: events are fired on their own goroutine
	// (RunOnce alone fires them before it returns).
	async bool

	lastMaintenance time.Time
	// dbTrouble is when a round last failed to reach the database. For a
	// WorkerTTL after it, stale heartbeats say more about the outage than
	// about the workers, so nobody is declared dead.
	dbTrouble time.Time
}

// New returns a loop.
func New(opts Options) *Loop {
	runs := &engine.OpenRuns{}
	return &Loop{
		opts:    opts,
		runs:    runs,
		elector: leadership.New(leadership.Options{Store: opts.Store, Name: LeaseName, ID: opts.ID, TTL: opts.LeaseTTL, Log: opts.Log}),
		maintain: maintenance.New(maintenance.Options{Store: opts.Store, Jobs: opts.Jobs, Log: opts.Log,
			WorkerTTL: opts.WorkerTTL, ExpiryGrace: opts.ExpiryGrace}),
		complete: maintenance.NewCompletion(maintenance.CompletionOptions{Store: opts.Store, Jobs: opts.Jobs, Log: opts.Log,
			ID: opts.ID, Runs: runs, HookTimeout: opts.HookTimeout}),
		dispatch: dispatch.New(dispatch.Options{Store: opts.Store, Bus: opts.Bus, Jobs: opts.Jobs, Log: opts.Log,
			WorkerTTL: opts.WorkerTTL, ReleaseAfter: opts.ReleaseAfter, Runs: runs, QueueHorizon: queueHorizon(opts)}),
	}
}

// queueHorizon is the time of work the queue rule keeps queued: longer
// than a worker's round trip to its refill, which, where the database
// cannot carry a wake-up, may take up to a poll.
func queueHorizon(opts Options) time.Duration {
	if opts.Store.Dialect.SupportsNotify() {
		return engine.QueueHorizon
	}
	return max(engine.QueueHorizon, 2*opts.Delay)
}

// Leading reports whether the dispatcher held the lease at its last round.
func (l *Loop) Leading() bool { return l.elector.Leading() }

// Resign gives up the lease if held.
func (l *Loop) Resign() {
	l.leading.Store(false)
	l.elector.Resign()
	if l.opts.Observer != nil {
		l.opts.Observer.Resigned()
	}
}

// Run runs rounds until ctx is cancelled, then resigns the lease.
func (l *Loop) Run(ctx context.Context) error {
	wake, unsubscribe := l.opts.Bus.Subscribe(notify.Dispatch)
	defer unsubscribe()
	timer := time.NewTimer(0)
	defer timer.Stop()
	l.async = true
	defer func() { l.async = false }()
	for {
		if _, err := l.RunOnce(ctx); err != nil && ctx.Err() == nil {
			l.logFailure(err)
		}
		sleep, due := l.sleep(ctx)
		engine.ResetTimer(timer, sleep)
		select {
		case <-ctx.Done():
			// The hook call in progress, if any, ends and is recorded
			// before the lease goes.
			l.fireWG.Wait()
			l.Resign()
			l.opts.Log.Info("dispatcher stopped")
			return nil
		case <-wake:
		case <-timer.C:
			if due {
				l.lastMaintenance = time.Time{}
			}
		}
	}
}

// dueMargin is added to the wait for a scheduled task, so that the round
// it wakes finds the task due by the database's clock.
const dueMargin = 5 * time.Millisecond

// sleep is how long to wait for the next round: Delay, or less when, as
// leader, a scheduled task falls due sooner (due is then set).
func (l *Loop) sleep(ctx context.Context) (d time.Duration, due bool) {
	d = l.opts.Delay
	if !l.elector.Leading() {
		return d, false
	}
	for _, j := range l.opts.Jobs {
		in, err := j.SQL.NextDue(ctx, l.opts.Store.DB)
		if err != nil {
			if ctx.Err() == nil {
				l.opts.Log.Debug("next due time unknown", "job", j.Name, "err", err)
			}
			continue
		}
		if in != nil && *in+dueMargin < d {
			d, due = max(0, *in)+dueMargin, true
		}
	}
	if in := l.dispatch.NextWake(); in > 0 && in+dueMargin < d {
		d, due = in+dueMargin, false
	}
	return d, due
}

func (l *Loop) logFailure(err error) {
	if !l.opts.Retryable(err) {
		l.opts.Log.Warn("round failed", "err", err)
		return
	}
	if l.dbTrouble.IsZero() || time.Since(l.dbTrouble) > l.opts.Delay*10 {
		l.opts.Log.Warn("database unreachable; retrying", "err", err)
	}
	l.dbTrouble = time.Now()
}

// RunOnce runs one round if this dispatcher leads (or becomes leader),
// and tells the observer how it went.
func (l *Loop) RunOnce(ctx context.Context) (Stats, error) {
	start := time.Now()
	st, err := l.round(ctx)
	if l.opts.Observer != nil {
		l.opts.Observer.Round(time.Since(start), l.elector.Leading(), err)
	}
	return st, err
}

// round takes or renews the lease, then, as leader, runs the steps due.
func (l *Loop) round(ctx context.Context) (Stats, error) {
	var st Stats
	gained, err := l.elector.Elect(ctx)
	l.leading.Store(l.elector.Leading())
	if err != nil {
		return st, err
	}
	if gained {
		l.lastMaintenance = time.Time{}
		l.runs.Reset() // what another leader did meanwhile is unknown
	}
	st.Leading = l.elector.Leading()
	if !st.Leading {
		return st, nil
	}
	var merr error
	if time.Since(l.lastMaintenance) >= l.opts.MaintenanceEvery {
		// A failed maintenance step (a lock held by a frozen process, a
		// broken hook) does not hold up dispatching.
		merr = errors.Join(l.maintainAndStretch(ctx, &st), l.completion(ctx))
		l.lastMaintenance = time.Now()
	}
	return st, errors.Join(merr, l.dispatch.Reserve(ctx, &st.Dispatch))
}

// completion closes the runs that ended, then fires the events due: on
// a goroutine of its own under Run (unless one is at it already), at once
// otherwise.
func (l *Loop) completion(ctx context.Context) error {
	if !l.complete.Active() {
		return nil
	}
	err := l.complete.Detect(ctx)
	if l.opts.HoldEvents {
		return err
	}
	if !l.async {
		return errors.Join(err, l.complete.Fire(ctx, l.leading.Load))
	}
	if l.firing.CompareAndSwap(false, true) {
		l.fireWG.Add(1)
		go func() {
			defer l.fireWG.Done()
			defer l.firing.Store(false)
			if err := l.complete.Fire(ctx, l.leading.Load); err != nil && ctx.Err() == nil {
				l.opts.Log.Warn("completion events not fired", "err", err)
			}
		}()
	}
	return err
}

// maintainAndStretch runs the maintenance pass, then the stretch rule on
// the registry it judged.
func (l *Loop) maintainAndStretch(ctx context.Context, st *Stats) error {
	if !l.dbTrouble.IsZero() && time.Since(l.dbTrouble) < l.opts.WorkerTTL {
		// Just back from an outage: give workers a TTL to heartbeat again
		// before judging them; dispatching goes on meanwhile.
		return nil
	}
	workers, err := l.maintain.RunOnce(ctx, &st.Maintenance)
	if workers == nil {
		return err
	}
	if serr := l.dispatch.Stretch(ctx, workers, &st.Dispatch); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// ReserveOnce runs the reserve step alone, lease or not: for tests that
// race dispatchers against each other without the lease's protection.
func (l *Loop) ReserveOnce(ctx context.Context) (dispatch.Result, error) {
	var r dispatch.Result
	err := l.dispatch.Reserve(ctx, &r)
	return r, err
}
