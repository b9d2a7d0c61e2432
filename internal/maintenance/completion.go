package maintenance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Completion defaults (docs/completion.md).
const (
	// DefaultHookTimeout bounds one call of a completion hook.
	DefaultHookTimeout = 5 * time.Minute
	// DefaultHookAttempts is how many calls an event gets before it is
	// given up (failed, its last error kept).
	DefaultHookAttempts = 10
	// DefaultHookBackoff is the wait after a first failed call; it
	// doubles after each, up to DefaultHookMaxBackoff.
	DefaultHookBackoff    = time.Second
	DefaultHookMaxBackoff = 5 * time.Minute
	// EventsKept is how long fired and given-up events stay in
	// pampa_events, for inspection.
	EventsKept = 7 * 24 * time.Hour
	// groupsPerPass bounds the candidate groups one pass checks; the next
	// pass goes on from there.
	groupsPerPass = 500
)

// CompletionOptions tune the completion service.
type CompletionOptions struct {
	Store *store.Store
	Jobs  []*engine.Job
	Log   *slog.Logger
	// ID names this dispatcher in the claims of events.
	ID string
	// Runs is the leader's memory of open drain runs, shared with the
	// hand-out.
	Runs *engine.OpenRuns
	// HookTimeout bounds each hook call; a claim lasts twice as long,
	// after which another leader may call the hook again. Default
	// DefaultHookTimeout.
	HookTimeout time.Duration
	// Attempts, Backoff and MaxBackoff: see the defaults of those names.
	Attempts            int
	Backoff, MaxBackoff time.Duration
}

// Completion is the leader's completion pass: it opens and closes drain
// runs and groups' runs (Detect), and calls the hooks of the events they
// write (Fire). Detect runs in the maintenance pass, on the round's
// goroutine; Fire may run on another goroutine, one at a time.
type Completion struct {
	opts    CompletionOptions
	byName  map[string]*engine.Job
	jobs    []string // jobs with a completion hook
	cursors map[string]string
}

// NewCompletion returns the service.
func NewCompletion(opts CompletionOptions) *Completion {
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = DefaultHookTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultHookAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultHookBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultHookMaxBackoff
	}
	c := &Completion{opts: opts, byName: map[string]*engine.Job{}, cursors: map[string]string{}}
	for _, j := range opts.Jobs {
		if j.Hooks.OnDrained != nil || j.Hooks.OnGroupDone != nil {
			c.byName[j.Name] = j
			c.jobs = append(c.jobs, j.Name)
		}
	}
	return c
}

// Active reports whether any job has a completion hook.
func (c *Completion) Active() bool { return len(c.jobs) > 0 }

// Detect opens the drain runs of jobs it finds busy and closes those that
// drained, checks the candidate groups and closes those that are done,
// writing an event for each end, and deletes old settled events. One
// job's failure does not stop the others.
func (c *Completion) Detect(ctx context.Context) error {
	var errs []error
	for _, name := range c.jobs {
		j := c.byName[name]
		if j.Hooks.OnDrained != nil {
			if err := c.drains(ctx, j); err != nil {
				errs = append(errs, fmt.Errorf("job %s: drain check: %w", j.Name, err))
			}
		}
		if j.Hooks.OnGroupDone != nil {
			if err := c.groups(ctx, j); err != nil {
				errs = append(errs, fmt.Errorf("job %s: group check: %w", j.Name, err))
			}
		}
	}
	if c.Active() {
		if _, err := c.opts.Store.PruneEvents(ctx, EventsKept); err != nil {
			errs = append(errs, fmt.Errorf("delete old events: %w", err))
		}
	}
	return errors.Join(errs...)
}

// drains opens the job's run when it is busy and none is open (a run the
// hand-out did not open: rows pending with no worker yet, or handed out
// by another dispatcher), and closes it when the job drained.
func (c *Completion) drains(ctx context.Context, j *engine.Job) error {
	st, err := c.opts.Store.RunState(ctx, j.Name)
	if err != nil {
		return err
	}
	busy, err := j.SQL.ProbeBusy(ctx, c.opts.Store.DB)
	if err != nil {
		return err
	}
	switch {
	case !st.Open && busy.Any():
		var opened bool
		err = c.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			opened, err = c.opts.Store.OpenRun(ctx, tx, j.Name)
			return err
		})
		if err != nil {
			return err
		}
		if opened {
			c.opts.Log.Debug("drain run opened: the job has work", "job", j.Name, "run", st.Run+1)
		}
		c.opts.Runs.Set(j.Name, true)
	case st.Open && !busy.Any():
		var e *store.Event
		err = c.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			e, err = j.SQL.CloseRun(ctx, tx, j.Name)
			return err
		})
		if err != nil {
			return err
		}
		if e != nil {
			c.opts.Log.Info("job drained", "job", j.Name, "event_id", e.ID, "run", e.Run,
				"succeeded", e.Succeeded, "failed", e.Failed, "took", time.Duration(e.EndedMs-e.StartedMs)*time.Millisecond)
			c.opts.Runs.Set(j.Name, false)
		}
	default:
		c.opts.Runs.Set(j.Name, st.Open)
	}
	return nil
}

// groups checks up to groupsPerPass candidate groups from where the last
// pass stopped, and closes those that are done.
func (c *Completion) groups(ctx context.Context, j *engine.Job) error {
	keys, err := c.opts.Store.OpenGroups(ctx, j.Name, c.cursors[j.Name], groupsPerPass)
	if err != nil {
		return err
	}
	if len(keys) < groupsPerPass {
		c.cursors[j.Name] = "" // from the first again next pass
	} else {
		c.cursors[j.Name] = keys[len(keys)-1]
	}
	done, err := j.SQL.GroupsLookDone(ctx, c.opts.Store.DB, keys)
	if err != nil {
		return err
	}
	var errs []error
	for _, key := range done {
		var e *store.Event
		err := c.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			e, err = j.SQL.CloseGroup(ctx, tx, j.Name, key)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", key, err))
			continue
		}
		if e != nil {
			c.opts.Log.Info("group done", "job", j.Name, "group", store.GroupValue(key), "event_id", e.ID, "run", e.Run,
				"succeeded", e.Succeeded, "failed", e.Failed)
		}
	}
	return errors.Join(errs...)
}

// Fire calls the hooks of the events that are due, one after another,
// while leading says this dispatcher leads and ctx lasts. A hook call, once
// begun, is not cut short by ctx (only by HookTimeout), and its outcome
// is recorded: so that a dispatcher that stops, or loses the lease, never
// leaves behind an event whose hook ran but is not marked fired.
func (c *Completion) Fire(ctx context.Context, leading func() bool) error {
	for ctx.Err() == nil && leading() {
		due, err := c.opts.Store.DueEvents(ctx, c.jobs, 20)
		if err != nil || len(due) == 0 {
			return err
		}
		fired := 0
		for _, e := range due {
			if ctx.Err() != nil || !leading() {
				return nil
			}
			ok, err := c.fire(ctx, e)
			if err != nil {
				return err
			}
			if ok {
				fired++
			}
		}
		if fired == 0 {
			return nil // all claimed elsewhere, or put off
		}
	}
	return nil
}

// fire claims one event and calls its hook; ok is false when the event
// was not this dispatcher's to fire. Only database errors are returned: a
// hook's failure is the event's, recorded and logged.
func (c *Completion) fire(ctx context.Context, e store.Event) (ok bool, err error) {
	j := c.byName[e.Job]
	var hook *engine.CompletionHook
	if j != nil {
		hook = j.Hooks.OnDrained
		if e.Kind == store.EventGroupDone {
			hook = j.Hooks.OnGroupDone
		}
	}
	if hook == nil {
		return false, nil // the job no longer has this hook here
	}
	log := c.opts.Log.With("job", e.Job, "event_id", e.ID)
	// Past its claim, a call is no longer cut short by ctx: its outcome
	// must be recorded.
	bg := context.WithoutCancel(ctx)
	attempt := e.Attempts + 1
	if e.Attempts >= c.opts.Attempts {
		// The last claim expired: its dispatcher never reported back.
		_, err := c.opts.Store.MarkFailed(bg, e.ID, e.Attempts, e.ClaimedBy, false,
			"gave up: the last call's dispatcher never reported back ("+e.LastError+")", 0, true)
		log.Error("completion hook given up", "attempts", e.Attempts)
		return false, err
	}
	ev := engine.CompletionEvent{ID: e.ID, Kind: e.Kind, Job: e.Job, Run: e.Run,
		StartedAt: time.UnixMilli(e.StartedMs), EndedAt: time.UnixMilli(e.EndedMs),
		Succeeded: e.Succeeded, Failed: e.Failed, Attempt: attempt}
	if e.Kind == store.EventGroupDone {
		ev.Group = store.GroupValue(e.Group)
	}
	callCtx, cancel := context.WithTimeout(bg, c.opts.HookTimeout)
	defer cancel()
	var callErr error
	if hook.InTx != nil {
		claimed, err := c.opts.Store.FireInTx(callCtx, e.ID, e.Attempts, c.opts.ID, func(ctx context.Context, tx *sql.Tx) error {
			return safeCall(func() error { return hook.InTx(ctx, tx, ev) })
		})
		if !claimed {
			return false, err
		}
		callErr = err
	} else {
		claimed, err := c.opts.Store.ClaimEvent(ctx, e.ID, e.Attempts, c.opts.ID, 2*c.opts.HookTimeout)
		if err != nil || !claimed {
			return false, err
		}
		callErr = safeCall(func() error { return hook.Call(callCtx, ev) })
		if callErr == nil {
			mine, err := c.opts.Store.MarkFired(bg, e.ID, attempt, c.opts.ID)
			if err != nil {
				return true, fmt.Errorf("mark event %s fired: %w", e.ID, err)
			}
			if !mine {
				log.Warn("completion hook returned after its claim expired; another dispatcher may have called it again", "attempt", attempt)
			}
		}
	}
	if callErr == nil {
		log.Info("completion hook called", "event", e.Kind, "attempt", attempt)
		return true, nil
	}
	giveUp := attempt >= c.opts.Attempts
	retryIn := c.backoff(attempt)
	if _, err := c.opts.Store.MarkFailed(bg, e.ID, attempt, c.opts.ID, hook.InTx != nil, callErr.Error(), retryIn, giveUp); err != nil {
		return true, fmt.Errorf("record the failure of event %s: %w", e.ID, err)
	}
	if giveUp {
		log.Error("completion hook failed; given up", "attempt", attempt, "err", callErr)
	} else {
		log.Warn("completion hook failed; will retry", "attempt", attempt, "retry_in", retryIn, "err", callErr)
	}
	return true, nil
}

// backoff is the wait after failed call n: Backoff doubled n-1 times, at
// most MaxBackoff.
func (c *Completion) backoff(n int) time.Duration {
	d := c.opts.Backoff
	for i := 1; i < n && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.opts.MaxBackoff)
}

// safeCall turns a hook's panic into its error.
func safeCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}
