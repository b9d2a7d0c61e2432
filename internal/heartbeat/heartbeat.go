// Package heartbeat keeps a worker's row in the registry: it registers
// the process under the worker's id (relaunching rows an earlier process
// of that id left running), refreshes the heartbeat, learns the assigned
// job, and lets go in time when the database cannot be reached.
//
// The timing rule: the dispatcher declares a worker dead once its
// heartbeat is older than the TTL. A worker that has had no successful
// heartbeat for TTL − interval therefore fences itself (takes no task and
// cancels its running ones) before anybody can hand its tasks on. One
// that finds itself declared dead cancels its tries and registers anew.
package heartbeat

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune a heartbeat.
type Options struct {
	Store *store.Store
	// Info is the registry row to write; its Instance is made here.
	Info store.WorkerInfo
	// Jobs are the worker's jobs, whose rows a new process relaunches.
	Jobs []*engine.Job
	// Interval between heartbeats. Default 5s.
	Interval time.Duration
	// TTL after which the registry counts the worker dead. Default 3 ×
	// Interval.
	TTL time.Duration
	Log *slog.Logger
	// OnLost is called when running tries must be cancelled: the
	// heartbeat lapsed, or the worker was declared dead.
	OnLost func()
	// OnCancel is given the tries an operator cancelled under the
	// worker's id, after each heartbeat, and returns those it acted on
	// (their rows are deleted; the others are offered again). Nil: none
	// are read.
	OnCancel func(ctx context.Context, tries []store.CancelledTry) []store.CancelledTry
}

// Heartbeat is a worker's presence in the registry.
type Heartbeat struct {
	opts     Options
	instance atomic.Pointer[string]
	assigned atomic.Pointer[string]
	fenced   atomic.Bool
	lastOK   time.Time
}

// New returns a heartbeat; Register it before Run.
func New(opts Options) *Heartbeat {
	if opts.Interval == 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.TTL == 0 {
		opts.TTL = 3 * opts.Interval
	}
	if opts.OnLost == nil {
		opts.OnLost = func() {}
	}
	h := &Heartbeat{opts: opts}
	none := ""
	h.assigned.Store(&none)
	return h
}

// Assigned is the job the registry assigned the worker to ("" for none).
func (h *Heartbeat) Assigned() string { return *h.assigned.Load() }

// Fenced reports that the heartbeat lapsed: the worker must take no task.
func (h *Heartbeat) Fenced() bool { return h.fenced.Load() }

// Instance is this process's registration, "" before Register.
func (h *Heartbeat) Instance() string {
	if p := h.instance.Load(); p != nil {
		return *p
	}
	return ""
}

func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Register records the process under the worker's id, then relaunches
// the rows the id holds as running and hands back its reservations: a
// process that has just registered runs none of them.
func (h *Heartbeat) Register(ctx context.Context) error {
	info := h.opts.Info
	info.Instance = newInstance()
	if err := h.opts.Store.RegisterWorker(ctx, info, h.opts.TTL); err != nil {
		return err
	}
	h.instance.Store(&info.Instance)
	h.lastOK = time.Now()
	h.RecoverOwn(ctx)
	// A heartbeat since registering tells the dispatcher that the
	// recovery above is done (WorkerInfo.Settled): only then does it start
	// rows for this worker itself, in the hand-out (one hop). Without it,
	// that waits for the first beat of Run, an interval away.
	if job, ok, err := h.opts.Store.Heartbeat(ctx, info.ID, info.Instance); err == nil && ok {
		h.assigned.Store(&job)
	}
	return nil
}

// RecoverOwn relaunches the rows this id holds as running, and hands back
// its unstarted reservations (the dispatcher reserves them again). They were left
// by an earlier process under the same id (killed, crashed, or stopped
// past its grace period), by this one before it was declared dead, or by
// a claim whose commit this process could not see. Registered again, the
// id looks alive, so the dispatcher would not hand them on before they
// expire. Late results of the old tries are fenced off by their try.
func (h *Heartbeat) RecoverOwn(ctx context.Context) {
	for _, j := range h.opts.Jobs {
		var relaunched, failed []any
		err := h.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			_, relaunched, failed, err = j.SQL.RecoverWorkers(ctx, tx, []string{h.opts.Info.ID},
				"worker restarted while running the task")
			if err != nil {
				return err
			}
			return j.Relaunched(ctx, tx, relaunched)
		})
		if err != nil {
			// Not fatal: the dispatcher relaunches them once they expire.
			h.opts.Log.Warn("relaunch tasks left running by an earlier process", "job", j.Name, "err", err)
			continue
		}
		if len(relaunched)+len(failed) > 0 {
			h.opts.Log.Info("relaunched tasks left running by an earlier process", "job", j.Name,
				"relaunched", len(relaunched), "failed_for_good", len(failed))
		}
	}
}

// Run heartbeats every interval until ctx ends. It returns an error only
// when the worker must stop: another process took its id.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := h.Beat(ctx); err != nil {
			return err
		}
	}
}

// Beat sends one heartbeat and acts on its answer.
func (h *Heartbeat) Beat(ctx context.Context) error {
	// A slow heartbeat still counts, but not one so slow that the worker
	// would notice its loss too late.
	hbCtx, cancel := context.WithTimeout(ctx, max(h.opts.Interval, h.opts.TTL/2)-h.opts.Interval/2)
	job, ok, err := h.opts.Store.Heartbeat(hbCtx, h.opts.Info.ID, h.Instance())
	cancel()
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return nil
		}
		h.opts.Log.Warn("heartbeat failed", "err", err, "since_last_ok", time.Since(h.lastOK).Round(time.Millisecond))
		// Stop a heartbeat short of the TTL: the dispatcher hands our
		// tasks on at the TTL, and by then we must have let go.
		if time.Since(h.lastOK) > h.opts.TTL-h.opts.Interval && !h.fenced.Swap(true) {
			h.opts.Log.Error("no heartbeat for longer than the TTL: taking no tasks and cancelling running ones, which the dispatcher hands on",
				"ttl", h.opts.TTL)
			h.opts.OnLost()
		}
	case !ok:
		// Declared dead (say, after a long pause): our running tasks were
		// relaunched elsewhere. Drop them and join again.
		h.opts.Log.Warn("the registry declared this worker dead; cancelling running tasks and registering again")
		// Claim nothing until registered again: the rows the id still
		// holds are about to be handed on (marking dead and recovering are
		// two transactions), and registering relaunches them itself.
		h.fenced.Store(true)
		h.opts.OnLost()
		if err := h.Register(ctx); err != nil {
			if errors.Is(err, store.ErrWorkerRunning) {
				return fmt.Errorf("worker %s: %w", h.opts.Info.ID, err)
			}
			h.opts.Log.Warn("register again", "err", err)
			return nil
		}
		h.fenced.Store(false)
	default:
		h.lastOK = time.Now()
		if h.fenced.Swap(false) {
			h.opts.Log.Info("heartbeat back: taking tasks again")
		}
		h.assigned.Store(&job)
		h.cancels(ctx)
	}
	return nil
}

// cancels hands the tries an operator cancelled under this id to
// OnCancel, and deletes the rows it acted on. A row whose try this
// process does not hold yet (claimed a moment ago) stays for the next
// beat; the dispatcher deletes the rows no worker takes up.
func (h *Heartbeat) cancels(ctx context.Context) {
	if h.opts.OnCancel == nil {
		return
	}
	opCtx, cancel := context.WithTimeout(ctx, h.opts.Interval)
	defer cancel()
	tries, err := h.opts.Store.Cancels(opCtx, h.opts.Info.ID)
	if err == nil && len(tries) > 0 {
		err = h.opts.Store.ForgetCancels(opCtx, h.opts.OnCancel(opCtx, tries))
	}
	if err != nil && ctx.Err() == nil {
		h.opts.Log.Warn("cancelled tasks", "err", err)
	}
}

// SetState moves this process's registry row to a state.
func (h *Heartbeat) SetState(ctx context.Context, state string) error {
	inst := h.Instance()
	if inst == "" {
		return nil
	}
	return h.opts.Store.SetWorkerState(ctx, h.opts.Info.ID, inst, state)
}

// Leave hands unstarted reservations back and marks the worker stopped.
func (h *Heartbeat) Leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, j := range h.opts.Jobs {
		err := h.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			n, err := j.SQL.HandBack(ctx, tx, h.opts.Info.ID)
			if n > 0 {
				h.opts.Log.Info("handed back unstarted tasks", "job", j.Name, "n", n)
			}
			return err
		})
		if err != nil {
			h.opts.Log.Warn("hand back unstarted tasks", "job", j.Name, "err", err)
		}
	}
	if err := h.SetState(ctx, store.StateStopped); err != nil {
		h.opts.Log.Warn("leave registry", "err", err)
	}
}
