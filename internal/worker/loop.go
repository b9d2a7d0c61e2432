package worker

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// loop is the state of one Run: the slots in use and when to claim.
type loop struct {
	r      *Runtime
	done   chan engine.Outcome
	hbDone <-chan struct{}
	wake   <-chan struct{}
	timer  *time.Timer

	inflight int
	gen      int64 // cancelGen when the tasks taken ahead were claimed
	// look: the worker may claim. False once a claim came up short (its
	// queue ran dry), until the dispatcher wakes it or an idle poll finds
	// rows queued for it with a read: claiming as each task ends would
	// take the rows one or two at a time, a transaction each.
	look   bool
	polled bool // the idle timer fired: check with a read
	// adopt: woken or polled while idle: read the tries the dispatcher
	// may have started for us.
	adopt bool
	// arrivals measures how far apart tries come to this worker (see
	// arrivalGauge).
	arrivals  arrivalGauge
	reconcile bool // a write failed: rows may be started that we do not hold
	fatal     error
}

func (r *Runtime) newLoop(hbDone <-chan struct{}) *loop {
	return &loop{r: r, done: make(chan engine.Outcome, r.opts.Concurrency), hbDone: hbDone,
		gen: r.cancelGen.Load(), look: true}
}

// run claims and runs tasks until ctx ends, then stops gracefully.
func (l *loop) run(ctx context.Context) error {
	wake, unsubscribe := l.r.opts.Bus.Subscribe(notify.WorkerTopic(l.r.opts.Info.ID))
	defer unsubscribe()
	l.wake = wake
	l.timer = time.NewTimer(0)
	defer l.timer.Stop()
	for ctx.Err() == nil && l.fatal == nil {
		l.collectReady()
		l.tidy(ctx)
		l.startBuffered()
		l.adoptStarted(ctx)
		if l.produce(ctx) {
			continue // look again right away for the slots still free
		}
		l.wait(ctx)
	}
	l.writeRemaining(ctx)
	l.stopGracefully(ctx)
	return l.fatal
}

func (l *loop) collect(o engine.Outcome) {
	l.inflight--
	l.r.held.remove(o.Attempt)
	l.r.comp.Add(o)
}

// collectReady takes every outcome already sent.
func (l *loop) collectReady() {
	for {
		select {
		case o := <-l.done:
			l.collect(o)
		default:
			return
		}
	}
}

// tidy gives back the tasks taken ahead that must not run here, and
// hands on rows a failed write may have left started under our id.
func (l *loop) tidy(ctx context.Context) {
	p := l.r.prod
	if g := l.r.cancelGen.Load(); g != l.gen || l.r.hb.Fenced() {
		// Running tasks were cancelled (declared dead, or cut off): never
		// run the tasks taken ahead (a row meanwhile handed on is left
		// alone by the fence).
		l.gen = g
		p.DropAhead()
	}
	p.DropStale()
	if l.reconcile && l.inflight == 0 && p.Buffered() == 0 && l.r.comp.Len() == 0 && !l.r.hb.Fenced() {
		// Nothing runs here now: any row started under our id is a claim
		// whose commit we could not see, a try whose outcome could not be
		// written, a give-back that did not land, or a start the
		// dispatcher made for us. Each is a try of ours that nobody runs:
		// adopt them all (adoptStarted) and run them, as the same tries.
		// Handing them on instead would spend a try of each.
		l.reconcile = false
		l.r.held.remove(p.ForgetGiveBack()...)
		l.adopt = true
	}
}

// start runs a try in a free slot.
func (l *loop) start(a *engine.Attempt) {
	l.inflight++
	go func() {
		l.r.busy.Add(1)
		o, d := l.r.exec.Execute(a)
		l.r.busy.Add(-1)
		if d > 0 {
			l.r.prod.Observe(d)
		}
		l.done <- o
	}()
}

func (l *loop) startBuffered() {
	for l.inflight < l.r.opts.Concurrency {
		a, ok := l.r.prod.Pop()
		if !ok {
			return
		}
		l.start(a)
	}
}

// idle reports that the worker holds nothing: no try runs, none is taken
// ahead, no outcome waits to be recorded. Only then may the dispatcher
// have started rows for it (it starts rows only for a worker none of
// whose rows is still unended in the table), so only then is the read
// for them worth its cost: a busy worker's read would return its own
// unrecorded tries, a batch of rows for nothing.
func (l *loop) idle() bool {
	return l.inflight == 0 && l.r.prod.Buffered() == 0 && l.r.comp.Len() == 0
}

// adoptStarted takes on the tries the dispatcher started for this worker
// as it handed them out, while the worker was idle: one hop, the
// hand-out's commit, instead of a reservation and then a claim of ours.
func (l *loop) adoptStarted(ctx context.Context) {
	if !l.adopt {
		return
	}
	l.adopt = false
	if l.r.hb.Fenced() || l.reconcile {
		// After a failed write, not before nothing runs here (tidy).
		return
	}
	tasks, err := l.r.prod.Adopt(ctx, l.r.ours)
	if err != nil && ctx.Err() == nil {
		// Not lost: the next idle poll reads them again, and the
		// maintenance pass relaunches what nobody adopts.
		l.r.log.Warn("adopt started tasks", "err", err)
	}
	l.r.held.add(tasks...)
	l.arrivals.add(len(tasks), time.Now())
	if len(tasks) > 0 && l.r.prod.RanDry(len(tasks)) {
		// Nothing is queued for us: no claim until woken, which would
		// find nothing and wake the dispatcher for a round that finds
		// nothing either.
		l.look = false
	}
	for _, a := range tasks {
		if l.inflight < l.r.opts.Concurrency {
			l.start(a)
		} else {
			l.r.prod.Keep(a)
		}
	}
}

// produce records outcomes and claims tasks when it is time to, and
// reports whether slots are still free after a claim that found tasks.
func (l *loop) produce(ctx context.Context) bool {
	p, c := l.r.prod, l.r.comp
	want := l.r.opts.Concurrency - l.inflight
	if p.Buffered() == 0 {
		want += p.Ahead()
	}
	if !l.look && l.polled && p.Buffered() == 0 && want > 0 {
		l.look = p.Queued(ctx)
	}
	l.polled = false
	if l.r.hb.Fenced() || !l.look {
		want = 0
	}
	// Record outcomes once the tasks taken ahead are used up (unless the
	// queue ran dry: then with the next claim, or at once when nothing
	// runs and tries come sparse), or when the batch is due; claim in the
	// same transaction.
	flush := c.Len() > 0 && ((p.Buffered() == 0 && (l.look || l.inflight == 0 && l.arrivals.sparse())) || c.Due())
	if !flush && !p.HasGiveBack() && (want == 0 || p.Buffered() > 0) {
		return false
	}
	var batch []engine.Outcome
	if flush {
		batch = c.Take()
	}
	if p.Buffered() > 0 {
		want = 0
	}
	tasks, err := l.r.cycle(ctx, batch, want)
	if err != nil && ctx.Err() == nil {
		l.r.log.Warn("claim tasks", "err", err)
		l.reconcile = true
	}
	l.r.held.add(tasks...)
	for _, a := range tasks {
		if l.inflight < l.r.opts.Concurrency {
			l.start(a)
		} else {
			p.Keep(a)
		}
	}
	if len(tasks) < want {
		// The queue ran dry: ask the dispatcher for more.
		l.r.opts.Bus.Notify(notify.Dispatch)
	}
	if want > 0 {
		l.look = len(tasks) == want
	}
	l.arrivals.add(len(tasks), time.Now())
	return len(tasks) > 0 && l.inflight < l.r.opts.Concurrency
}

// wait blocks until something happens: a try ends, a wake-up, the
// outcomes' deadline, the poll, or the end.
func (l *loop) wait(ctx context.Context) {
	c := l.r.comp
	if l.inflight == l.r.opts.Concurrency || (l.inflight > 0 && c.Len() > 0) {
		// Slots busy, or outcomes waiting: wait for a try to end, or for
		// the outcomes' deadline.
		wait := time.Hour
		if c.Len() > 0 {
			wait = time.Until(c.Deadline())
		}
		engine.ResetTimer(l.timer, max(wait, time.Millisecond))
		select {
		case o := <-l.done:
			l.collect(o)
		case <-l.wake:
			l.look = true
		case <-l.timer.C:
		case <-ctx.Done():
		}
		return
	}
	if l.r.prod.Buffered() > 0 {
		return
	}
	// Idle, or outcomes waiting for the dispatcher to refill the queue.
	wait := l.r.opts.Delay
	if c.Len() > 0 {
		wait = max(min(wait, time.Until(c.Deadline())), time.Millisecond)
	}
	engine.ResetTimer(l.timer, wait)
	select {
	case <-ctx.Done():
	case o := <-l.done:
		l.collect(o)
	case <-l.wake:
		l.look = true
		l.adopt = l.idle()
	case <-l.timer.C:
		l.polled = true
		l.adopt = l.idle()
	case <-l.hbDone:
		l.fatal = errHeartbeatStopped
	}
}

// writeRemaining records the outcomes that came in as the loop ended,
// and gives back the tasks taken ahead that will not run now.
func (l *loop) writeRemaining(ctx context.Context) {
	l.r.prod.DropAhead()
	if l.r.comp.Len() > 0 || l.r.prod.HasGiveBack() {
		_, _ = l.r.cycle(ctx, l.r.comp.Take(), 0)
	}
}

// stopGracefully lets running tries finish within the grace period.
func (l *loop) stopGracefully(ctx context.Context) {
	r := l.r
	if l.inflight == 0 {
		return
	}
	// "stopping": the dispatcher reserves nothing more for us, and still
	// counts us alive while the heartbeat goes on.
	stCtx, cancel := context.WithTimeout(r.hardCtx, 5*time.Second)
	if err := r.hb.SetState(stCtx, store.StateStopping); err != nil {
		r.log.Warn("mark stopping", "err", err)
	}
	cancel()
	r.log.Info("stopping: waiting for running tasks", "running", l.inflight, "grace", r.opts.GracePeriod)
	grace := time.NewTimer(r.opts.GracePeriod)
	defer grace.Stop()
	for l.inflight > 0 {
		select {
		case o := <-l.done:
			l.inflight--
			r.held.remove(o.Attempt)
			_, _ = r.cycle(ctx, []engine.Outcome{o}, 0)
		case <-grace.C:
			r.log.Warn("grace period over: cancelling running tasks", "running", l.inflight)
			r.hardCancel()
		case <-r.hardCtx.Done():
			l.drainKilled()
			return
		}
	}
}

// drainKilled waits for cancelled tries, whose outcomes are not
// recorded, but not for functions that ignore their context.
func (l *loop) drainKilled() {
	drain := time.NewTimer(l.r.opts.OverrunGrace + time.Second)
	defer drain.Stop()
	for l.inflight > 0 {
		select {
		case <-l.done:
			l.inflight--
		case <-drain.C:
			l.r.log.Warn("tasks still running after cancel; leaving them to be relaunched", "running", l.inflight)
			return
		}
	}
}

// cycle records outcomes, gives back tasks and claims up to n new ones,
// in one transaction: one commit per batch of tasks instead of two per
// task. If the batch cannot be written as it is, each outcome is recorded
// on its own, with the full handling of the completer's FinishOne.
func (r *Runtime) cycle(ctx context.Context, batch []engine.Outcome, n int) ([]*engine.Attempt, error) {
	p := r.prod
	if len(batch) == 0 && !p.HasGiveBack() {
		if n == 0 {
			return nil, nil
		}
		var out []*engine.Attempt
		err := r.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			out, err = p.ClaimIn(ctx, tx, n)
			return err
		})
		return out, err
	}
	var applied []bool
	var claimed []*engine.Attempt
	err := r.opts.Store.Tx(r.hardCtx, func(txCtx context.Context, tx *sql.Tx) error {
		applied, claimed = nil, nil
		if err := p.GiveBackIn(txCtx, tx); err != nil {
			return err
		}
		var err error
		if applied, err = r.comp.WriteIn(txCtx, tx, batch); err != nil {
			return err
		}
		if n > 0 && ctx.Err() == nil && !r.hb.Fenced() {
			claimed, err = p.ClaimIn(txCtx, tx, n)
		}
		return err
	})
	if err != nil {
		r.comp.FinishEach(batch)
		// The batch's fate is unknown if its commit was cut off: the loop
		// reconciles once nothing runs here.
		return nil, fmt.Errorf("record results and claim: %w", err)
	}
	r.held.remove(p.Committed()...)
	r.comp.Recorded(batch, applied)
	return claimed, nil
}

// sparseGap is the mean gap between tries from which a worker counts its
// tasks as sparse: a trickle, not a burn.
const sparseGap = 5 * time.Millisecond

// arrivalGauge smooths the gap between the tries a worker is given. While
// they come sparse, an outcome is recorded as soon as nothing else runs,
// not with the next claim: the worker then holds nothing when the next
// task comes, and the dispatcher hands it that task started, in one hop.
// In a burn the outcome waits for the claim it rides with, as a commit of
// its own per task would cost more than the hop saves.
type arrivalGauge struct {
	last time.Time
	gap  time.Duration // smoothed, per try
}

func (g *arrivalGauge) add(n int, now time.Time) {
	if n <= 0 {
		return
	}
	if !g.last.IsZero() {
		per := now.Sub(g.last) / time.Duration(n)
		g.gap += (per - g.gap) / 4
	}
	g.last = now
}

func (g *arrivalGauge) sparse() bool { return !g.last.IsZero() && g.gap >= sparseGap }
