// Package worker is a worker's runtime: it wires the heartbeat, the
// producer, the executor and the completer together, and owns the slots
// in which tries run.
//
//	heartbeat ──(assigned job, fenced?)──┐
//	                                     ▼
//	producer ──claims──▶ slots (executor: one try each) ──outcomes──▶ completer
//	    ▲                                                               │
//	    └───────── one transaction: give back, record, claim ◀──────────┘
//
// Stopping, in order: the loop takes no new task; outcomes already in and
// tasks taken ahead are written and given back; running tries get the
// grace period (the heartbeat goes on, the row says "stopping"), then
// their contexts are cancelled; unstarted reservations are handed back
// and the registry row says "stopped".
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/completer"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/executor"
	"github.com/pampa-go/pampa/internal/heartbeat"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/producer"
	"github.com/pampa-go/pampa/internal/store"
)

// Options configure a worker's runtime. The public package fills in the
// defaults documented on its WorkerOptions.
type Options struct {
	Store *store.Store
	Bus   *notify.Bus
	// Info is the registry row (id, node, host, pid, version, jobs).
	Info store.WorkerInfo
	Jobs []*engine.Job

	Concurrency       int
	Delay             time.Duration
	HeartbeatInterval time.Duration
	HeartbeatTTL      time.Duration
	GracePeriod       time.Duration
	OverrunGrace      time.Duration

	Log *slog.Logger
	// Retryable reports passing database conditions.
	Retryable func(error) bool
	// NewHandle builds the public view of an attempt (engine.Attempt.Handle).
	NewHandle func(*engine.Attempt) any
	// OnStart runs once the worker registered, before it takes tasks.
	OnStart func(ctx context.Context) error
	// Observer is told of the worker's slots (its jobs' observers are on
	// each Job); nil records nothing.
	Observer engine.Observer
}

// Runtime is one worker process's engine.
type Runtime struct {
	opts  Options
	log   *slog.Logger
	stats engine.WorkerStats

	hb   *heartbeat.Heartbeat
	prod *producer.Producer
	exec *executor.Executor
	comp *completer.Completer
	held held // tries claimed and not yet finished or given back

	hardCtx    context.Context // cancelled by Kill
	hardCancel context.CancelFunc
	cancelGen  atomic.Int64 // bumped when running tries are cancelled
	busy       atomic.Int64 // slots running a try, for the observer
}

// New builds a runtime.
func New(opts Options) *Runtime {
	r := &Runtime{opts: opts, log: opts.Log}
	r.hardCtx, r.hardCancel = context.WithCancel(context.Background())
	r.hb = heartbeat.New(heartbeat.Options{
		Store: opts.Store, Info: opts.Info, Jobs: opts.Jobs, Log: opts.Log,
		Interval: opts.HeartbeatInterval, TTL: opts.HeartbeatTTL, OnLost: r.cancelRunning, OnCancel: r.cancelTries,
	})
	r.prod = producer.New(producer.Options{
		Store: opts.Store, Worker: opts.Info.ID, Jobs: opts.Jobs, Log: opts.Log, Slots: opts.Concurrency,
		Assigned: r.hb.Assigned, NewAttempt: r.newAttempt,
	})
	r.exec = executor.New(executor.Options{OverrunGrace: opts.OverrunGrace, Store: opts.Store, Hard: r.hardCtx})
	r.comp = completer.New(completer.Options{
		Store: opts.Store, Worker: opts.Info.ID, Log: opts.Log, Stats: &r.stats, Hard: r.hardCtx,
		MaxBatch: r.prod.MaxQueue(), Retryable: opts.Retryable,
	})
	return r
}

// Stats returns the worker's counters.
func (r *Runtime) Stats() *engine.WorkerStats { return &r.stats }

// Kill stops the worker at once: no heartbeat, no claim, running tries
// cancelled and their outcomes not recorded.
func (r *Runtime) Kill() { r.hardCancel() }

func (r *Runtime) cancelRunning() {
	r.cancelGen.Add(1)
	r.exec.CancelRunning()
}

func (r *Runtime) newAttempt(j *engine.Job, row store.Row) *engine.Attempt {
	spec := j.SQL.Spec()
	key, _ := row.Get(spec.PrimaryKey)
	a := &engine.Attempt{Job: j, Worker: r.opts.Info.ID, Row: row, Key: key}
	if v, ok := row.Get(spec.ReservationTimes); ok {
		a.Try, _ = engine.AsInt64(v)
	}
	a.Log = r.log.With("job", j.Name, "task", key, "try", a.Try)
	if r.opts.NewHandle != nil {
		a.Handle = r.opts.NewHandle(a)
	}
	return a
}

// errHeartbeatStopped tells Run that the loop ended because the heartbeat
// did.
var errHeartbeatStopped = errors.New("heartbeat stopped")

// Run registers the worker and processes its tasks until ctx is
// cancelled, then stops gracefully (see the package doc).
func (r *Runtime) Run(ctx context.Context) error {
	if err := r.hb.Register(ctx); err != nil {
		return err
	}
	r.log.Info("worker started", "jobs", len(r.opts.Jobs), "concurrency", r.opts.Concurrency)
	if o := r.opts.Observer; o != nil {
		// Published now, withdrawn when Run returns.
		defer o.WorkerSlots(r.opts.Info.ID, r.opts.Concurrency, func() int { return int(r.busy.Load()) })()
	}
	for _, j := range r.opts.Jobs {
		if err := j.SQL.LoadColumnTypes(ctx); err != nil {
			r.log.Warn("results will be recorded row by row", "job", j.Name, "err", err)
		}
	}
	if r.opts.OnStart != nil {
		if err := r.opts.OnStart(ctx); err != nil {
			r.hb.Leave()
			return fmt.Errorf("worker %s: start-up snippet: %w", r.opts.Info.ID, err)
		}
	}
	loopCtx, stopLoops := context.WithCancel(ctx)
	// The heartbeat outlives ctx: it goes on while running tasks finish
	// during a graceful stop, so they are not handed on meanwhile.
	hbCtx, stopHeartbeat := context.WithCancel(context.Background())
	// Kill stops the loops too: a killed worker neither heartbeats nor
	// claims, so its tasks are handed on.
	stopOnKill := context.AfterFunc(r.hardCtx, func() { stopLoops(); stopHeartbeat() })
	defer stopOnKill()
	// hbDone is closed once the heartbeat has returned hbErr; closing
	// (rather than sending) lets both the loop and Run observe it.
	var hbErr error
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		hbErr = r.hb.Run(hbCtx)
	}()

	err := r.newLoop(hbDone).run(loopCtx)
	stopLoops()
	stopHeartbeat()
	<-hbDone
	if err == nil || errors.Is(err, errHeartbeatStopped) {
		// A nil hbErr means the heartbeat ended only because ctx did.
		err = hbErr
	}
	r.giveBackUnadopted()
	r.hb.Leave()
	r.log.Info("worker stopped", "succeeded", r.stats.Succeeded.Load(), "failed", r.stats.Failed.Load())
	return err
}

// giveBackUnadopted undoes, as the worker leaves, the starts the
// dispatcher made for it in a hand-out (one hop) that it never adopted:
// those tries never ran, so their start and try count are taken back
// (fenced by the try) and the row goes back to the pool with the
// unstarted ones. Tries it holds still (cut off by a kill or the end of
// the grace period) stay started for the dispatcher to hand on, and a
// killed worker writes nothing more.
func (r *Runtime) giveBackUnadopted() {
	if r.hardCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, j := range r.opts.Jobs {
		rows, err := j.SQL.Started(ctx, r.opts.Store.DB, r.opts.Info.ID)
		if err != nil {
			r.log.Warn("read the tasks started for this worker", "job", j.Name, "err", err)
			continue
		}
		for _, row := range rows {
			a := r.newAttempt(j, row)
			if r.ours(a) {
				continue
			}
			if ok, err := j.SQL.Unstart(ctx, r.opts.Store.DB, a.Fence()); err != nil {
				r.log.Warn("give back a task started for this worker", "job", j.Name, "task", a.Key, "err", err)
			} else if ok {
				r.log.Info("gave back a task started for this worker and never run", "job", j.Name, "task", a.Key)
			}
		}
	}
}

// ours reports whether the worker already has the try: it runs it, holds
// it taken ahead, or waits to record its outcome (a try whose outcome is
// not recorded still reads as started in the table).
func (r *Runtime) ours(a *engine.Attempt) bool { return r.held.has(a) || r.comp.Holds(a) }
