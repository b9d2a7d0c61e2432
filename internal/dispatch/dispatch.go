// Package dispatch is the leader's hand-out: it assigns workers to jobs
// (the stretch rule, stretch.go) and tops each assigned worker's queue up
// (to its job's queue_size, or more for a worker of short tasks: the
// queue rule, queue.go), reserving every worker's share of a job in one
// statement (reserve.go).
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune the service.
type Options struct {
	Store *store.Store
	Bus   *notify.Bus
	Jobs  []*engine.Job
	Log   *slog.Logger
	// WorkerTTL: a heartbeat older than this makes a worker not alive.
	WorkerTTL time.Duration
	// ReleaseAfter is how long a job must have had nothing pending before
	// its workers are released.
	ReleaseAfter time.Duration
	// Runs are the drain runs the leader knows open: a hand-out of a job
	// with an on_drained hook whose run is not known open opens it, in
	// the hand-out's transaction.
	Runs *engine.OpenRuns
	// QueueHorizon is the time of work a worker's queue holds beyond its
	// job's queue_size when its tasks are short (queue.go); 0 for
	// engine.QueueHorizon.
	QueueHorizon time.Duration
}

// Result says what the service did.
type Result struct {
	Reserved   int // rows reserved for workers
	Assigned   int // assignment changes
	HandedBack int // reservations of paused jobs and drained workers handed back
}

// Service assigns and reserves. It is used by one goroutine.
type Service struct {
	opts Options
	// idleSince is when each job was last seen with nothing pending and
	// nothing newly reserved (absent while it is busy).
	idleSince map[string]time.Time
	// paused is the last read of the paused jobs, at pausedRead.
	paused     map[string]bool
	pausedRead time.Time
	// drainedBack is when the drained workers' reservations were last
	// handed back.
	drainedBack time.Time
	// cursors are where each grouped job's fair share resumes.
	cursors map[string]*store.GroupCursor
	// wake is when a rate limit makes room for a task it held back.
	wake time.Time
	// queues follow each worker's queue for the queue rule, on the clock
	// now (time.Now; a test's own).
	queues map[queueKey]*queueGauge
	now    func() time.Time
}

// New returns the service.
func New(opts Options) *Service {
	return &Service{opts: opts, idleSince: map[string]time.Time{}, cursors: map[string]*store.GroupCursor{},
		queues: map[queueKey]*queueGauge{}, now: time.Now}
}

// Stretch applies the elastic assignment rule to the registry as the
// maintenance pass judged it.
func (s *Service) Stretch(ctx context.Context, workers []store.WorkerInfo, res *Result) error {
	s.forgetQueues(s.now())
	live := 0
	for _, w := range workers {
		if w.Dispatchable() {
			live++
		}
	}
	paused, err := s.pausedJobs(ctx, true)
	if err != nil {
		return err
	}
	loads := make([]jobLoad, 0, len(s.opts.Jobs))
	var errs []error
	for _, j := range s.opts.Jobs {
		if paused[j.Name] {
			// Nothing to dispatch: its workers go once ReleaseAfter passes.
			loads = append(loads, jobLoad{job: j, pending: s.load(j.Name, 0, nil)})
			continue
		}
		n, err := s.pendingCount(ctx, j, pendingLimit(j, live))
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: count pending: %w", j.Name, err))
		}
		loads = append(loads, jobLoad{job: j, pending: s.load(j.Name, n, err)})
	}
	for _, a := range planAssignments(loads, workers) {
		ok, err := s.opts.Store.Assign(ctx, a.worker, a.from, a.to)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("assign %s: %w", a.worker, err))...)
		}
		if !ok {
			continue
		}
		res.Assigned++
		if a.to == "" {
			s.opts.Log.Info("worker released", "worker", a.worker, "job", a.from)
		} else {
			s.opts.Log.Info("worker assigned", "worker", a.worker, "job", a.to)
		}
	}
	return errors.Join(errs...)
}

// load is the backlog the stretch rule sees: unknownLoad (keep the
// workers, add none) when it could not be counted, or when the job has
// just gone quiet, for ReleaseAfter.
func (s *Service) load(job string, pending int, err error) int {
	switch {
	case err != nil:
		return unknownLoad
	case pending > 0:
		delete(s.idleSince, job)
		return pending
	case s.idleSince[job].IsZero():
		s.idleSince[job] = time.Now()
		return unknownLoad
	case time.Since(s.idleSince[job]) < s.opts.ReleaseAfter:
		return unknownLoad
	}
	return 0
}

// pendingCount counts a job's dispatchable backlog up to limit, through
// its pending or selecting hook when it has one.
func (s *Service) pendingCount(ctx context.Context, j *engine.Job, limit int) (int, error) {
	h := j.Hooks
	switch {
	case h.Pending != nil:
		n, err := h.Pending(ctx)
		return int(n), err
	case h.Selecting != nil:
		keys, err := selectKeys(ctx, j, limit)
		return len(keys), err
	default:
		return j.SQL.CountPending(ctx, s.opts.Store.DB, limit)
	}
}

// selectKeys runs the job's selecting hook, keeping at most n keys.
func selectKeys(ctx context.Context, j *engine.Job, n int) ([]any, error) {
	keys, err := j.Hooks.Selecting(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("selecting hook: %w", err)
	}
	if len(keys) > n {
		keys = keys[:n]
	}
	return keys, nil
}
