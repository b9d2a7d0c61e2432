package dispatch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// Reserve tops up the queue of every live worker assigned to a job, and
// hands back what paused jobs and drained workers hold unstarted.
func (s *Service) Reserve(ctx context.Context, res *Result) error {
	workers, err := s.opts.Store.Workers(ctx, s.opts.WorkerTTL)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	paused, err := s.pausedJobs(ctx, false)
	if err != nil {
		return err
	}
	errs := []error{s.handBackDrained(ctx, workers, res)}
	for _, j := range s.opts.Jobs {
		if paused[j.Name] {
			if err := s.handBackPaused(ctx, j, res); err != nil {
				errs = append(errs, fmt.Errorf("job %s: %w", j.Name, err))
			}
			continue
		}
		if err := s.reserveJob(ctx, j, workers, res); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.Name, err))
		}
	}
	if res.Reserved > 0 {
		s.opts.Log.Debug("reserved tasks", "n", res.Reserved)
	}
	return errors.Join(errs...)
}

// reserveJob tops up the queues of the job's workers.
func (s *Service) reserveJob(ctx context.Context, j *engine.Job, workers []store.WorkerInfo, res *Result) error {
	var mine []store.WorkerInfo
	for _, w := range workers {
		if w.Dispatchable() && w.Job == j.Name {
			mine = append(mine, w)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	if j.SQL.Spec().Limits.Any() {
		return s.reserveLimited(ctx, j, mine, res)
	}
	wants, queues, err := s.wants(ctx, j, mine)
	if err != nil {
		return err
	}
	var got []int
	if j.Hooks.Selecting != nil {
		got, err = s.reserveSelected(ctx, j, wants)
	} else {
		var idle map[string]int
		if idle, err = s.idle(ctx, j, mine, queues); err != nil {
			return err
		}
		for i, w := range wants {
			// An idle worker gets this round only what its slots start,
			// all of it started: a row left queued beside them could be
			// claimed before the started ones are adopted, leaving those
			// to wait (the worker adopts only while it holds nothing).
			if k := idle[w.Worker]; k > 0 {
				wants[i].N = min(w.N, k)
			}
		}
		got, err = s.reserveShares(ctx, j, wants, idle)
	}
	if err != nil {
		return err
	}
	s.handedOut(j, wants, got, res)
	return nil
}

// handedOut wakes the workers that got rows (in this process: wakeInTx
// signalled the others), and counts them.
func (s *Service) handedOut(j *engine.Job, wants []store.Share, got []int, res *Result) {
	total := 0
	for i, w := range wants {
		if got[i] > 0 {
			total += got[i]
			s.handed(j.Name, w.Worker, got[i])
			if s.signalsInTx() {
				s.opts.Bus.NotifyLocal(notify.WorkerTopic(w.Worker))
			} else {
				s.opts.Bus.Notify(notify.WorkerTopic(w.Worker))
			}
			delete(s.idleSince, j.Name) // busy: a trickle keeps its workers
		}
	}
	res.Reserved += total
	j.Observe().Reserved(total)
}

// signalsInTx reports whether the hand-out's transaction carries the
// workers' wake-ups to other processes (PostgreSQL's NOTIFY).
func (s *Service) signalsInTx() bool {
	return s.opts.Bus != nil && s.opts.Store.Dialect.SupportsNotify()
}

// wakeInTx signals, within the hand-out's transaction, the workers that
// got rows: they wake as it commits, when their rows can be seen, and the
// signals cost no commit (a disk flush) of their own.
func (s *Service) wakeInTx(ctx context.Context, tx *sql.Tx, wants []store.Share, got []int) error {
	if !s.signalsInTx() {
		return nil
	}
	var topics []string
	for i, w := range wants {
		if got[i] > 0 {
			topics = append(topics, notify.WorkerTopic(w.Worker))
		}
	}
	return notify.SendInTx(ctx, tx, s.opts.Bus.Origin(), topics)
}

// wants is how many rows each worker's queue lacks (queue.go), for the
// workers the allowing hook lets have more.
func (s *Service) wants(ctx context.Context, j *engine.Job, mine []store.WorkerInfo) ([]store.Share, map[string]int, error) {
	queues, err := s.queueLengths(ctx, j, mine)
	if err != nil {
		return nil, nil, fmt.Errorf("queue lengths: %w", err)
	}
	var wants []store.Share
	now := s.now()
	for _, w := range mine {
		free := s.target(j, w, queues[w.ID], now) - queues[w.ID]
		if free <= 0 {
			continue
		}
		ok := true
		if j.Hooks.Allowing != nil {
			if ok, err = j.Hooks.Allowing(ctx, w.ID); err != nil {
				return nil, nil, fmt.Errorf("allowing hook (worker %s): %w", w.ID, err)
			}
		}
		if ok {
			wants = append(wants, store.Share{Worker: w.ID, N: free})
		}
	}
	return wants, queues, nil
}

// idle returns the workers that hold nothing of any job, by their slots:
// the hand-out starts their first rows itself (one hop), so
// that such a worker adopts them with a read rather than claims them with
// a commit of its own. Only settled workers with an empty queue are
// looked at (one that just registered is still handing on the rows left
// under its id), and not at all for a job whose occupied hook tells its
// queues.
func (s *Service) idle(ctx context.Context, j *engine.Job, mine []store.WorkerInfo, queues map[string]int) (map[string]int, error) {
	if j.Hooks.Occupied != nil {
		return nil, nil
	}
	var empty []string
	slots := map[string]int{}
	for _, w := range mine {
		// Not a node dispatcher's entry: its rows stay unstarted, to be
		// started for the worker of the node that runs each (StartFor).
		if queues[w.ID] == 0 && w.Slots > 0 && w.Settled() && !w.IsNode() {
			empty = append(empty, w.ID)
			slots[w.ID] = w.Slots
		}
	}
	if len(empty) == 0 {
		return nil, nil
	}
	for _, other := range s.opts.Jobs {
		holding, err := other.SQL.Holding(ctx, s.opts.Store.DB, empty)
		if err != nil {
			return nil, fmt.Errorf("the idle workers (job %s): %w", other.Name, err)
		}
		for w := range holding {
			delete(slots, w)
		}
	}
	return slots, nil
}

func (s *Service) queueLengths(ctx context.Context, j *engine.Job, ws []store.WorkerInfo) (map[string]int, error) {
	if j.Hooks.Occupied == nil {
		return j.SQL.QueueLengths(ctx, s.opts.Store.DB)
	}
	out := map[string]int{}
	for _, w := range ws {
		n, err := j.Hooks.Occupied(ctx, w.ID)
		if err != nil {
			return nil, fmt.Errorf("occupied hook (worker %s): %w", w.ID, err)
		}
		out[w.ID] = n
	}
	return out, nil
}

// reserveShares reserves every worker's share in one statement: one
// commit a round. The rows of an idle worker (its share is its slots) are
// started in the same transaction, as its own claim would start them.
func (s *Service) reserveShares(ctx context.Context, j *engine.Job, wants []store.Share, idle map[string]int) ([]int, error) {
	got := make([]int, len(wants))
	opened := false
	err := s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		keys, err := j.SQL.ReserveShares(ctx, tx, wants)
		n := 0
		for i := range keys {
			got[i] = len(keys[i])
			n += got[i]
		}
		if err != nil {
			return err
		}
		for i, w := range wants {
			if idle[w.Worker] > 0 && got[i] > 0 {
				if _, err := j.SQL.Claim(ctx, tx, w.Worker, got[i]); err != nil {
					return fmt.Errorf("start for idle worker %s: %w", w.Worker, err)
				}
			}
		}
		if err := s.wakeInTx(ctx, tx, wants, got); err != nil {
			return err
		}
		opened, err = s.openRun(ctx, tx, j, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reserve: %w", err)
	}
	s.ranOpen(j, opened)
	return got, nil
}

// openRun opens, in the transaction that handed out n rows of the job,
// its drain run, if it has an on_drained hook and the run is not known
// open; it reports whether it ran the statement. Opening it here, and not
// at the next maintenance pass, is what counts a run that starts and
// drains between two passes.
func (s *Service) openRun(ctx context.Context, tx *sql.Tx, j *engine.Job, n int) (bool, error) {
	if n == 0 || j.Hooks.OnDrained == nil || s.opts.Runs.Open(j.Name) {
		return false, nil
	}
	if _, err := s.opts.Store.OpenRun(ctx, tx, j.Name); err != nil {
		return false, err
	}
	return true, nil
}

// ranOpen notes, once its transaction committed, that openRun left the
// job's run open.
func (s *Service) ranOpen(j *engine.Job, opened bool) {
	if opened {
		s.opts.Runs.Set(j.Name, true)
	}
}

// reserveSelected reserves, worker by worker, the rows the job's
// selecting hook picks, until the backlog runs out.
func (s *Service) reserveSelected(ctx context.Context, j *engine.Job, wants []store.Share) ([]int, error) {
	got := make([]int, len(wants))
	for i, w := range wants {
		custom, err := selectKeys(ctx, j, w.N)
		if err != nil || len(custom) == 0 {
			if err != nil {
				err = fmt.Errorf("reserve for %s: %w", w.Worker, err)
			}
			return got, err
		}
		var keys []any
		opened := false
		err = s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			if keys, err = j.SQL.ReserveKeys(ctx, tx, w.Worker, custom); err != nil {
				return err
			}
			if err := s.wakeInTx(ctx, tx, wants[i:i+1], []int{len(keys)}); err != nil {
				return err
			}
			opened, err = s.openRun(ctx, tx, j, len(keys))
			return err
		})
		if err != nil {
			return got, fmt.Errorf("reserve for %s: %w", w.Worker, err)
		}
		s.ranOpen(j, opened)
		if got[i] = len(keys); got[i] < w.N {
			break // the backlog is empty
		}
	}
	return got, nil
}

// handBackPaused returns a paused job's reserved, unstarted rows to the
// pool; what runs goes on to its end.
func (s *Service) handBackPaused(ctx context.Context, j *engine.Job, res *Result) error {
	var n int64
	err := s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		n, err = j.SQL.HandBackAll(ctx, tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("hand back the paused job's reservations: %w", err)
	}
	if n > 0 {
		res.HandedBack += int(n)
		s.opts.Log.Info("paused job: reservations handed back", "job", j.Name, "n", n)
	}
	return nil
}

// drainedEvery is how often the reserve step hands back the drained
// workers' unstarted reservations: a write per job each round would cost
// every round, and a drain need not act within milliseconds.
const drainedEvery = time.Second

// handBackDrained returns to the pool the reserved, unstarted rows of the
// drained workers still alive (those of gone workers are the maintenance
// pass's); what they run goes on to its end.
func (s *Service) handBackDrained(ctx context.Context, workers []store.WorkerInfo, res *Result) error {
	var drained []string
	for _, w := range workers {
		if w.Drained && w.Fresh {
			drained = append(drained, w.ID)
		}
	}
	if len(drained) == 0 || time.Since(s.drainedBack) < drainedEvery {
		return nil
	}
	s.drainedBack = time.Now()
	var errs []error
	for _, j := range s.opts.Jobs {
		var n int64
		err := s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			n, err = j.SQL.HandBack(ctx, tx, drained...)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: hand back the drained workers' reservations: %w", j.Name, err))
			continue
		}
		if n > 0 {
			res.HandedBack += int(n)
			s.opts.Log.Info("drained workers: reservations handed back", "job", j.Name, "n", n, "workers", drained)
		}
	}
	return errors.Join(errs...)
}

// pausedFor is how long the reserve step trusts its last read of the
// paused jobs: a read per round would cost the hand-off of a single row a
// tenth of its time, and a pause need not act within milliseconds.
const pausedFor = time.Second

// pausedJobs returns the paused jobs, read again when fresh is asked for
// (the maintenance pass) or the last read is older than pausedFor.
func (s *Service) pausedJobs(ctx context.Context, fresh bool) (map[string]bool, error) {
	if !fresh && s.paused != nil && time.Since(s.pausedRead) < pausedFor {
		return s.paused, nil
	}
	p, err := s.opts.Store.Paused(ctx)
	if err != nil {
		return nil, err
	}
	s.paused, s.pausedRead = p, time.Now()
	return p, nil
}
