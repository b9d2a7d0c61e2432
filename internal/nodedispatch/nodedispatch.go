// Package nodedispatch is the second level of dispatch: a node
// dispatcher claims for a node as a whole and hands the tries to the
// node's workers, so that the database serves one claimer per node
// rather than one per worker.
//
//	central dispatcher ──reserves for <node>.0──▶ rows in the database
//	                                                  │
//	node dispatcher <node>.0 (one loop, one transaction a cycle):
//	  give back stale tries taken ahead · finish the outcomes of every
//	  worker (fenced, batched) · start rows for the workers with room
//	  (StartFor: each row gets its worker's id, start time, try count)
//	    │ Go channels: attempts out, outcomes back
//	  worker <node>.1 … <node>.N: run tries in their slots (executor)
//
//	heartbeat: one statement for the node dispatcher and its workers
//
// The central dispatcher sees the node dispatcher's registry entry as one
// worker whose slots are its workers' added up and whose queue is one per
// worker; the workers keep registry rows of their own (pointing at the
// node dispatcher), which the dashboard and reports show as ever, and
// from its start each row records the worker that runs it: every write
// stays fenced by (key, worker, try).
//
// Failures: a worker whose goroutine ends with a panic has its running
// tries relaunched (or failed on their last try) at once, its tries
// taken ahead with them, and is started again after a backoff. The node
// dispatcher stopping stops its workers: gracefully, they finish within
// the grace period and their outcomes are recorded; killed, nothing more
// is written and the central dispatcher hands their rows on once the
// heartbeats lapse (or the next node dispatcher of the node does as it
// registers).
package nodedispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/completer"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// Member is one worker of the node.
type Member struct {
	// Info is its registry row (id, node, host, pid, version, jobs,
	// slots); Via is set here.
	Info store.WorkerInfo
	// Concurrency is how many tries it runs at once.
	Concurrency int
	// Jobs are the names of the jobs it runs (its filter_worker_id
	// passed); a subset of Options.Jobs.
	Jobs []string
	Log  *slog.Logger
}

// Options configure a node dispatcher. The public package fills in the
// defaults documented on its NodeOptions.
type Options struct {
	Store *store.Store
	Bus   *notify.Bus
	// Info is the node dispatcher's own registry row (its id is
	// "<node>.0"); Slots, Members and Jobs are filled in here.
	Info    store.WorkerInfo
	Members []Member
	// Jobs are the node's jobs, shared by its workers: one statement
	// finishes the tries of all the workers.
	Jobs []*engine.Job

	Delay             time.Duration
	HeartbeatInterval time.Duration
	HeartbeatTTL      time.Duration
	GracePeriod       time.Duration
	OverrunGrace      time.Duration
	// RestartBackoff is the first wait before a worker whose goroutine
	// panicked is started again; it doubles up to 30s. Default 1s.
	RestartBackoff time.Duration

	Log       *slog.Logger
	Retryable func(error) bool
	// NewHandle builds the public view of an attempt (engine.Attempt.Handle).
	NewHandle func(*engine.Attempt) any
	// OnStart runs once for each worker, once everything registered,
	// before the node takes tasks.
	OnStart func(ctx context.Context, worker string) error
	// Observer is told of each worker's slots; nil records nothing.
	Observer engine.Observer
}

// Runtime is one node dispatcher and its workers.
type Runtime struct {
	opts  Options
	log   *slog.Logger
	stats engine.WorkerStats
	comp  *completer.Completer
	reg   *registry

	members []*member
	byID    map[string]*member
	jobs    map[string]*engine.Job

	hardCtx    context.Context // cancelled by Kill
	hardCancel context.CancelFunc
	// events are run by the loop's goroutine: what the heartbeat learns
	// and acts on there (cancel everything, a member lost, cancels).
	events chan func(*loop)
}

// New builds a node dispatcher.
func New(opts Options) (*Runtime, error) {
	if len(opts.Members) == 0 {
		return nil, fmt.Errorf("node dispatcher %s: no worker to run", opts.Info.ID)
	}
	if opts.RestartBackoff == 0 {
		opts.RestartBackoff = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{opts: opts, log: opts.Log, byID: map[string]*member{}, jobs: map[string]*engine.Job{},
		events: make(chan func(*loop), 64)}
	r.hardCtx, r.hardCancel = context.WithCancel(context.Background())
	for _, j := range opts.Jobs {
		r.jobs[j.Name] = j
	}
	slots := 0
	union := map[string]bool{}
	for i, m := range opts.Members {
		if m.Concurrency < 1 {
			return nil, fmt.Errorf("node dispatcher %s: worker %s: concurrency = %d: must be at least 1", opts.Info.ID, m.Info.ID, m.Concurrency)
		}
		m.Info.Via, m.Info.Slots = opts.Info.ID, m.Concurrency
		mb := newMember(r, m)
		for _, name := range m.Jobs {
			if r.jobs[name] == nil {
				return nil, fmt.Errorf("node dispatcher %s: worker %s: job %q is not one of the node's", opts.Info.ID, m.Info.ID, name)
			}
			union[name] = true
		}
		r.members = append(r.members, mb)
		r.byID[m.Info.ID] = mb
		opts.Members[i] = m
		slots += m.Concurrency
	}
	r.opts.Info.Slots, r.opts.Info.Members = slots, len(opts.Members)
	r.opts.Info.Jobs = nil
	for _, j := range opts.Jobs {
		if union[j.Name] {
			r.opts.Info.Jobs = append(r.opts.Info.Jobs, j.Name)
		}
	}
	maxBatch := 0
	for _, j := range opts.Jobs {
		maxBatch = max(maxBatch, j.QueueMax())
	}
	r.comp = completer.New(completer.Options{
		Store: opts.Store, Log: opts.Log, Stats: &r.stats, Hard: r.hardCtx,
		MaxBatch: maxBatch * len(opts.Members), Retryable: opts.Retryable,
	})
	r.reg = newRegistry(r)
	return r, nil
}

// ID is the node dispatcher's id in the registry.
func (r *Runtime) ID() string { return r.opts.Info.ID }

// Stats returns the counters of all the node's workers.
func (r *Runtime) Stats() *engine.WorkerStats { return &r.stats }

// Kill stops the node dispatcher and its workers at once: no heartbeat,
// no more writes, running tries cancelled.
func (r *Runtime) Kill() { r.hardCancel() }

// errHeartbeatStopped tells Run that the loop ended because the
// heartbeat did.
var errHeartbeatStopped = errors.New("heartbeat stopped")

// Run registers the node dispatcher and its workers, and runs their
// tries until ctx is cancelled, then stops gracefully: no new tries,
// running ones get the grace period, unstarted reservations are handed
// back and every registry row says "stopped".
func (r *Runtime) Run(ctx context.Context) error {
	if err := r.reg.register(ctx); err != nil {
		return err
	}
	r.log.Info("node dispatcher started", "workers", len(r.members), "slots", r.opts.Info.Slots, "jobs", len(r.opts.Info.Jobs))
	if o := r.opts.Observer; o != nil {
		for _, m := range r.members {
			defer o.WorkerSlots(m.id, m.slots, func() int { return int(m.busy.Load()) })()
		}
	}
	for _, j := range r.opts.Jobs {
		if err := j.SQL.LoadColumnTypes(ctx); err != nil {
			r.log.Warn("results will be recorded row by row", "job", j.Name, "err", err)
		}
	}
	if r.opts.OnStart != nil {
		for _, m := range r.members {
			if err := r.opts.OnStart(ctx, m.id); err != nil {
				r.reg.leave()
				return fmt.Errorf("worker %s: start-up snippet: %w", m.id, err)
			}
		}
	}
	loopCtx, stopLoop := context.WithCancel(ctx)
	hbCtx, stopHeartbeat := context.WithCancel(context.Background())
	stopOnKill := context.AfterFunc(r.hardCtx, func() { stopLoop(); stopHeartbeat() })
	defer stopOnKill()
	var hbErr error
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		hbErr = r.reg.run(hbCtx)
	}()
	l := newLoop(r, hbDone)
	err := l.run(loopCtx)
	stopLoop()
	stopHeartbeat()
	<-hbDone
	for _, m := range r.members {
		m.stop()
	}
	if err == nil || errors.Is(err, errHeartbeatStopped) {
		err = hbErr
	}
	r.reg.leave()
	r.log.Info("node dispatcher stopped", "succeeded", r.stats.Succeeded.Load(), "failed", r.stats.Failed.Load())
	return err
}

// post hands an event to the loop, unless the node is stopping.
func (r *Runtime) post(ctx context.Context, ev func(*loop)) {
	select {
	case r.events <- ev:
	case <-ctx.Done():
	case <-r.hardCtx.Done():
	}
}
