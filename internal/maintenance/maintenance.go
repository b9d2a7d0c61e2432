// Package maintenance is the leader's recovery pass: it declares dead the
// workers whose heartbeat lapsed, and for each job hands on what will not
// finish where it is — unstarted reservations of gone workers (released),
// their running tries and tries past their max duration (relaunched while
// tries are left, failed for good otherwise), failed tries waiting for
// their backoff, and rows the job's relaunching hook picks. It also
// deletes the cancel rows no worker took up.
package maintenance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune the pass.
type Options struct {
	Store *store.Store
	Jobs  []*engine.Job
	Log   *slog.Logger
	// WorkerTTL: a heartbeat older than this declares its worker dead.
	WorkerTTL time.Duration
	// ExpiryGrace is added to a job's max duration before a running try
	// is relaunched here (the worker normally fails it first).
	ExpiryGrace time.Duration
}

// Result says what a pass did.
type Result struct {
	DeadMarked int // workers declared dead
	Released   int // unstarted reservations taken back from gone workers
	Relaunched int // rows returned to pending
	Failed     int // rows failed for good
}

// Service runs the pass.
type Service struct{ opts Options }

// New returns the service.
func New(opts Options) *Service { return &Service{opts: opts} }

// RunOnce runs one pass and returns the registry as it judged it, for the
// assignment step (nil when it could not be read).
func (s *Service) RunOnce(ctx context.Context, res *Result) ([]store.WorkerInfo, error) {
	dead, err := s.opts.Store.MarkDead(ctx, s.opts.WorkerTTL)
	if err != nil {
		return nil, fmt.Errorf("mark dead workers: %w", err)
	}
	for _, id := range dead {
		s.opts.Log.Warn("worker declared dead: heartbeat lapsed", "worker", id, "ttl", s.opts.WorkerTTL)
	}
	res.DeadMarked += len(dead)
	workers, err := s.opts.Store.Workers(ctx, s.opts.WorkerTTL)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	// A job's tasks stay with a worker only while it is fresh and its
	// program still runs that job. MarkDead has just judged the
	// heartbeats: whoever it left running still holds its tasks (judging
	// again here, a moment later, could hand on the tasks of a worker not
	// yet declared dead).
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
	for _, j := range s.opts.Jobs {
		if err := s.relaunch(ctx, j, holds, res); err != nil {
			errs = append(errs, fmt.Errorf("job %s: relaunch: %w", j.Name, err))
		}
	}
	// A live worker takes up its cancel rows within a heartbeat or two
	// (the interval is a third of the TTL by default). One still there
	// after two TTLs never will be: its try ended first (its result was
	// dropped all the same), or its worker is gone (a worker that lost
	// its heartbeat cancels all its tries itself). An age is the whole
	// rule: no need to know who holds what.
	if _, err := s.opts.Store.PruneCancels(ctx, 2*s.opts.WorkerTTL); err != nil {
		errs = append(errs, err)
	}
	return workers, errors.Join(errs...)
}

// relaunch hands on the job's tasks that will not finish where they are.
func (s *Service) relaunch(ctx context.Context, j *engine.Job, holds map[string]map[string]bool, res *Result) error {
	holders, err := j.SQL.InFlightWorkers(ctx, s.opts.Store.DB)
	if err != nil {
		return err
	}
	var gone []string
	for _, id := range holders {
		if !holds[id][j.Name] {
			gone = append(gone, id)
		}
	}
	var released int64
	var relaunched, failed []any
	err = s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		released, relaunched, failed, err = s.recover(ctx, tx, j, gone)
		return err
	})
	if err != nil {
		return err
	}
	// The recovery above is committed: count it even if the hook fails.
	custom, err := s.customRelaunch(ctx, j)
	if err == nil {
		relaunched = append(relaunched, custom...)
	}
	if len(gone) > 0 || len(relaunched) > 0 || len(failed) > 0 {
		s.opts.Log.Info("relaunched tasks", "job", j.Name, "relaunched", len(relaunched), "failed_for_good", len(failed), "gone_workers", gone)
	}
	res.Released += int(released)
	res.Relaunched += len(relaunched)
	res.Failed += len(failed)
	j.Observe().Recovered(len(relaunched), len(failed))
	return err
}

// recover runs, in tx, the job's default recovery statements.
func (s *Service) recover(ctx context.Context, tx *sql.Tx, j *engine.Job, gone []string) (released int64, relaunched, failed []any, err error) {
	// A frozen process may hold locks on its rows (say, stopped in the
	// middle of a claim): give up on them for this round rather than
	// wait, and try again next round.
	if err := s.opts.Store.LockTimeout(ctx, tx, 2*time.Second); err != nil {
		return 0, nil, nil, err
	}
	gone, err = s.stillGone(ctx, tx, j, gone)
	if err != nil {
		return 0, nil, nil, err
	}
	released, r1, f1, err := j.SQL.RecoverWorkers(ctx, tx, gone, "worker died or left while running the task")
	if err != nil {
		return 0, nil, nil, err
	}
	expiry := j.MaxJobDuration + s.opts.ExpiryGrace
	r2, f2, err := j.SQL.RecoverExpired(ctx, tx, expiry,
		fmt.Sprintf("expired: still running %s after it started (max_job_duration %s)", expiry, j.MaxJobDuration))
	if err != nil {
		return 0, nil, nil, err
	}
	r3, err := j.SQL.RelaunchFailed(ctx, tx, j.RetryBackoff)
	if err != nil {
		return 0, nil, nil, err
	}
	relaunched = append(append(append(relaunched, r1...), r2...), r3...)
	failed = append(f1, f2...)
	return released, relaunched, failed, j.Relaunched(ctx, tx, relaunched)
}

// stillGone keeps, of the workers judged gone, those that still are as tx
// reads (and locks) their registry rows: a worker declared dead may have
// registered again since the registry was listed, and its new process may
// already run rows its id holds; those stay with it.
func (s *Service) stillGone(ctx context.Context, tx *sql.Tx, j *engine.Job, gone []string) ([]string, error) {
	live, err := s.opts.Store.LockLive(ctx, tx, gone)
	if err != nil {
		return nil, err
	}
	out := gone[:0:0]
	for _, id := range gone {
		if !slices.Contains(live[id], j.Name) {
			out = append(out, id)
		}
	}
	return out, nil
}

// customRelaunch runs the job's relaunching hook, if any, and if its
// schedule has a due time now.
func (s *Service) customRelaunch(ctx context.Context, j *engine.Job) ([]any, error) {
	if j.Hooks.Relaunching == nil {
		return nil, nil
	}
	if due, err := s.relaunchDue(ctx, j); !due || err != nil {
		return nil, err
	}
	keys, err := j.Hooks.Relaunching(ctx, max(j.QueueSize*10, 100))
	if err != nil {
		return nil, fmt.Errorf("relaunching hook: %w", err)
	}
	var done []any
	err = s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if done, err = j.SQL.RelaunchKeys(ctx, tx, keys); err != nil {
			return err
		}
		return j.Relaunched(ctx, tx, done)
	})
	return done, err
}

// relaunchDue says whether the relaunching hook runs in this pass: always
// without relaunch_cron; with it, when a due time has come since the last
// run recorded in the database, and this leader claimed it. Due times
// missed while no leader was up collapse into one run (the latest one), and
// a claim made just before a crash counts as run: once at most per due time.
func (s *Service) relaunchDue(ctx context.Context, j *engine.Job) (bool, error) {
	if j.RelaunchSchedule == nil {
		return true, nil
	}
	name := "relaunching:" + j.Name
	now := time.Now()
	last, err := s.opts.Store.CronLast(ctx, name, now)
	if err != nil {
		return false, err
	}
	due := j.RelaunchSchedule.Next(last)
	if due.After(now) {
		return false, nil
	}
	claimed, err := s.opts.Store.CronClaim(ctx, name, due, now)
	if claimed {
		s.opts.Log.Info("relaunching hook due", "job", j.Name, "due", due, "last_run", last)
	}
	return claimed, err
}
