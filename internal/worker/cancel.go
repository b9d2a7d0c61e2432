package worker

import (
	"context"
	"sync"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// held are the tries this process claimed and has neither finished nor
// given back, running or taken ahead, so that the heartbeat can find the
// ones an operator cancelled. The loop adds and removes; the heartbeat
// looks up.
type held struct {
	mu sync.Mutex
	m  map[*engine.Attempt]store.CancelledTry // the try's job and key
}

func (h *held) add(as ...*engine.Attempt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[*engine.Attempt]store.CancelledTry{}
	}
	for _, a := range as {
		h.m[a] = store.CancelledTry{Job: a.Job.Name, Task: store.KeyText(a.Key)}
	}
}

func (h *held) remove(as ...*engine.Attempt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range as {
		delete(h.m, a)
	}
}

// has reports whether the try is held.
func (h *held) has(a *engine.Attempt) bool {
	for _, b := range h.find(a.Job.Name, store.KeyText(a.Key)) {
		if b.SameTry(a) {
			return true
		}
	}
	return false
}

// find returns the tries held of a job's task (more than one only when
// an abandoned try still runs beside a later one).
func (h *held) find(job, task string) []*engine.Attempt {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*engine.Attempt
	for a, t := range h.m {
		if t.Job == job && t.Task == task {
			out = append(out, a)
		}
	}
	return out
}

// cancelTries cancels the held tries of tasks an operator cancelled, and
// returns the cancel rows it acted on. A try is cancelled only once its
// fence no longer holds: a cancel row left over from before a retry must
// not stop the task's new try, and a try whose fence is gone has no
// result to give anyway. A row whose task is not held here is left for
// the next beat (its try may be claimed but not yet held).
func (r *Runtime) cancelTries(ctx context.Context, tries []store.CancelledTry) []store.CancelledTry {
	var done []store.CancelledTry
	var cancel []*engine.Attempt
	for _, c := range tries {
		as := r.held.find(c.Job, c.Task)
		acted := len(as) > 0
		for _, a := range as {
			live, err := a.Job.SQL.FenceHolds(ctx, r.opts.Store.DB, a.Fence())
			switch {
			case err != nil:
				a.Log.Warn("cancelled task: read its row", "err", err)
				acted = false // offered again at the next beat
			case !live:
				a.Log.Info("task cancelled by an operator: cancelling its try")
				cancel = append(cancel, a)
			}
		}
		if acted {
			done = append(done, c)
		}
	}
	engine.Cancel(cancel, engine.ErrCancelled)
	return done
}
