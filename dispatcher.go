package pampa

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pampa-go/pampa/internal/dispatcher"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/maintenance"
)

// DispatcherOptions tune a dispatcher. Zero values take the defaults given.
type DispatcherOptions struct {
	// Delay is the longest wait between two rounds; workers running low
	// wake the dispatcher sooner. Default 1s on PostgreSQL, whose
	// notifications also carry inserts (pampa setup --notify); 50ms on
	// SQLite and 250ms on CockroachDB, where only the poll finds inserted
	// rows and, on CockroachDB, hand-offs between machines.
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
	// HookTimeout bounds each call of a completion hook (on_drained,
	// on_group_done; docs/completion.md): its context ends then, and a
	// command is stopped. An event claimed by a dispatcher that died is
	// called again by the leader twice this long after the claim.
	// Stopping a dispatcher waits for the call in progress, up to this
	// long. Default 5 minutes.
	HookTimeout time.Duration
	// Metrics, if set, receive the dispatcher's figures: rounds,
	// reservations, relaunches, whether it leads (docs/metrics.md). The
	// database gauges are added apart, with Metrics.CollectDatabase.
	Metrics *Metrics

	// holdEvents, for tests, makes the dispatcher write completion events
	// and fire none.
	holdEvents bool
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
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.ID = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HookTimeout == 0 {
		o.HookTimeout = maintenance.DefaultHookTimeout
	}
	return o
}

// Dispatcher reserves tasks for workers. Several may run; one leads (holds
// the lease) and the others wait as standbys. Each round of the leader:
//
//	maintenance → declare dead workers; hand on tasks of gone workers,
//	              expired tries, failed tries with tries left, and rows
//	              picked by relaunching hooks
//	stretch     → assign and release workers per job (docs/elastic-assignment.md)
//	reserve     → top each assigned worker's queue up to queue_size
//
// maintenance and stretch run at most every MaintenanceEvery; reserve runs
// every round. The engine behind it is internal/dispatcher.
type Dispatcher struct {
	c    *Client
	opts DispatcherOptions
	loop *dispatcher.Loop
}

// NewDispatcher prepares a dispatcher.
func (c *Client) NewDispatcher(opts DispatcherOptions) *Dispatcher {
	if opts.Delay == 0 {
		opts.Delay = c.defaultDelay()
	}
	opts = opts.withDefaults()
	c.startNotifier(opts.Logger)
	jobs := c.engineJobs(c.jobs)
	for i, j := range c.jobs {
		c.completionHooks(j, &jobs[i].Hooks, opts.Logger)
	}
	loop := dispatcher.New(dispatcher.Options{
		Store: c.store, Bus: c.bus, Jobs: opts.Metrics.observe(jobs, engine.DispatcherRole), Log: opts.Logger, ID: opts.ID,
		Delay: opts.Delay, MaintenanceEvery: opts.MaintenanceEvery, LeaseTTL: opts.LeaseTTL,
		WorkerTTL: opts.WorkerTTL, ReleaseAfter: opts.ReleaseAfter, ExpiryGrace: opts.ExpiryGrace, HookTimeout: opts.HookTimeout, HoldEvents: opts.holdEvents,
		Retryable: c.retryable, Observer: opts.Metrics.observer(),
	})
	return &Dispatcher{c: c, opts: opts, loop: loop}
}

// Leading reports whether the dispatcher held the lease at its last round.
func (d *Dispatcher) Leading() bool { return d.loop.Leading() }

// Run runs rounds until ctx is cancelled, then resigns the lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	log := d.opts.Logger
	if start := d.c.cluster.OnDispatcherStart; start != nil {
		if err := start(ctx, log); err != nil {
			return fmt.Errorf("dispatcher start-up snippet: %w", err)
		}
	}
	log.Info("dispatcher started", "id", d.opts.ID, "jobs", len(d.c.jobs), "delay", d.opts.Delay)
	return d.loop.Run(ctx)
}

// Resign gives up the leader lease if this dispatcher holds it, so that
// another dispatcher can lead at once instead of after the lease's TTL.
// Run does it when it stops; a program that drives rounds with RunOnce
// calls it when done.
func (d *Dispatcher) Resign() { d.loop.Resign() }

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
	st, err := d.loop.RunOnce(ctx)
	m, r := st.Maintenance, st.Dispatch
	return RoundStats{Leading: st.Leading, Reserved: r.Reserved, Assigned: r.Assigned,
		Relaunched: m.Relaunched, Failed: m.Failed, Released: m.Released, DeadMarked: m.DeadMarked}, err
}

// LeaderInfo is the dispatchers' leader lease as the database holds it.
type LeaderInfo struct {
	// Holder is the leading dispatcher's id (DispatcherOptions.ID); ""
	// when none holds the lease (it resigned, or none ever led).
	Holder string `json:"holder"`
	// Term goes up each time the lease changes hands; 0 before any
	// dispatcher led.
	Term int64 `json:"term"`
	// ExpiresIn is how long the lease lasts unless renewed, by the
	// database's clock; 0 or less when it has lapsed or is free.
	ExpiresIn time.Duration `json:"expires_in_ns"`
}

// Leader reads the leader lease: which dispatcher leads, its term, and
// how long its lease has left.
func (c *Client) Leader(ctx context.Context) (LeaderInfo, error) {
	l, err := c.store.CurrentLease(ctx, dispatcher.LeaseName)
	if err != nil {
		return LeaderInfo{}, fmt.Errorf("read the leader lease: %w", err)
	}
	return LeaderInfo{Holder: l.Holder, Term: l.Term, ExpiresIn: time.Duration(l.ExpiresInSec * float64(time.Second))}, nil
}
