package dispatch

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// reserveLimited hands a job with limits or groups only what its workers'
// free slots start at once (a queue would hold capacity the limits count
// while the tasks wait), through the store's limited reservation.
func (s *Service) reserveLimited(ctx context.Context, j *engine.Job, mine []store.WorkerInfo, res *Result) error {
	wants, err := s.freeSlots(ctx, j, mine)
	if err != nil {
		return err
	}
	if len(wants) == 0 {
		return nil
	}
	cur := s.cursors[j.Name]
	if cur == nil {
		cur = &store.GroupCursor{}
		s.cursors[j.Name] = cur
	}
	var out store.Limited
	opened := false
	err = s.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		c := *cur // a retried transaction starts from the same group
		var err error
		if out, err = j.SQL.ReserveLimited(ctx, tx, j.Name, wants, &c); err != nil {
			return err
		}
		n := 0
		got := make([]int, len(wants))
		for i, k := range out.Keys {
			n += len(k)
			got[i] = len(k)
		}
		if err := s.wakeInTx(ctx, tx, wants, got); err != nil {
			return err
		}
		if opened, err = s.openRun(ctx, tx, j, n); err == nil {
			*cur = c
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("reserve through the limits: %w", err)
	}
	s.ranOpen(j, opened)
	got := make([]int, len(wants))
	for i := range out.Keys {
		got[i] = len(out.Keys[i])
	}
	s.handedOut(j, wants, got, res)
	if out.Wake > 0 {
		s.wakeAt(time.Now().Add(out.Wake))
	}
	if out.HeldBack > 0 {
		s.opts.Log.Debug("limits held tasks back", "job", j.Name, "free_slots_left", out.HeldBack, "reason", out.Reason)
	}
	return nil
}

// freeSlots is, for each worker of a limited job, how many tries it can
// start now: its slots less the rows it holds of every job. A worker that
// registered no slot count (an older version) gets its queue topped up
// as for any job.
func (s *Service) freeSlots(ctx context.Context, j *engine.Job, mine []store.WorkerInfo) ([]store.Share, error) {
	held := map[string]int{}
	for _, other := range s.opts.Jobs {
		h, err := other.SQL.Held(ctx, s.opts.Store.DB)
		if err != nil {
			return nil, fmt.Errorf("count the tasks workers hold (job %s): %w", other.Name, err)
		}
		for w, n := range h {
			held[w] += n
		}
	}
	var wants []store.Share
	for _, w := range mine {
		free := j.QueueSize - held[w.ID]
		if w.Slots > 0 {
			free = w.Slots - held[w.ID]
		}
		if free <= 0 {
			continue
		}
		ok := true
		if j.Hooks.Allowing != nil {
			var err error
			if ok, err = j.Hooks.Allowing(ctx, w.ID); err != nil {
				return nil, fmt.Errorf("allowing hook (worker %s): %w", w.ID, err)
			}
		}
		if ok {
			wants = append(wants, store.Share{Worker: w.ID, N: free})
		}
	}
	return wants, nil
}

// wakeAt asks for a round at t (the earliest asked for wins until it
// passes).
func (s *Service) wakeAt(t time.Time) {
	if s.wake.IsZero() || t.Before(s.wake) || time.Now().After(s.wake) {
		s.wake = t
	}
}

// NextWake is how long until a limit makes room for a task it held back
// (0: no such time is known).
func (s *Service) NextWake() time.Duration {
	if s.wake.IsZero() {
		return 0
	}
	d := time.Until(s.wake)
	if d <= 0 {
		s.wake = time.Time{}
		return 0
	}
	return d
}
