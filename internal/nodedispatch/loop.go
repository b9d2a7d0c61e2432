package nodedispatch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// loop is the node dispatcher's one goroutine of work: it collects
// outcomes, and in one transaction a cycle gives back, finishes and
// starts for every worker of the node.
type loop struct {
	r      *Runtime
	done   chan result
	hbDone <-chan struct{}
	wake   <-chan struct{}
	timer  *time.Timer

	// look: the node may start rows. False once a start came up short
	// (its queue ran dry), until the central dispatcher wakes it or an
	// idle poll finds rows reserved for it with a read.
	look     bool
	polled   bool
	giveBack []*engine.Attempt // started, not run: to un-start
	// reconcile: a cycle failed, and its commit may have happened
	// unseen: rows may be started for the workers that they do not run.
	reconcile bool
	fatal     error

	durEWMA  atomic.Int64 // recent try duration, ns
	observed atomic.Int64

	minQueue, maxQueue int           // of the node's jobs: largest queue_size and queue_size_max
	shortest           time.Duration // shortest max duration of the node's jobs
}

func newLoop(r *Runtime, hbDone <-chan struct{}) *loop {
	slots := 0
	for _, m := range r.members {
		slots += m.slots
	}
	l := &loop{r: r, done: make(chan result, 4*slots), hbDone: hbDone, look: true}
	for _, j := range r.opts.Jobs {
		l.minQueue = max(l.minQueue, j.QueueSize)
		l.maxQueue = max(l.maxQueue, j.QueueMax())
		if l.shortest == 0 || j.MaxJobDuration < l.shortest {
			l.shortest = j.MaxJobDuration
		}
	}
	for _, m := range r.members {
		m.start(l.done)
	}
	return l
}

// run starts and runs tries until ctx ends, then stops gracefully.
func (l *loop) run(ctx context.Context) error {
	wake, unsubscribe := l.r.opts.Bus.Subscribe(notify.WorkerTopic(l.r.opts.Info.ID))
	defer unsubscribe()
	l.wake = wake
	l.timer = time.NewTimer(0)
	defer l.timer.Stop()
	for ctx.Err() == nil && l.fatal == nil {
		l.collectReady()
		l.tidy(ctx)
		if l.produce(ctx) {
			continue
		}
		l.wait(ctx)
	}
	l.writeRemaining(ctx)
	l.stopGracefully(ctx)
	return l.fatal
}

// collect takes one result from a worker's slot.
func (l *loop) collect(res result) {
	m := res.m
	if res.gen != m.gen {
		return // an earlier incarnation's: its rows were relaunched
	}
	if res.panic != nil {
		l.memberDied(m, res)
		return
	}
	delete(m.running, res.out.Attempt)
	if res.d > 0 {
		l.observe(res.d)
	}
	l.r.comp.Add(res.out)
	m.feed()
}

func (l *loop) collectReady() {
	for {
		select {
		case res := <-l.done:
			l.collect(res)
		case ev := <-l.r.events:
			ev(l)
		default:
			return
		}
	}
}

// observe folds a try's duration into the recent average.
func (l *loop) observe(d time.Duration) {
	old := l.durEWMA.Load()
	if l.observed.Add(1) == 1 {
		l.durEWMA.Store(int64(d))
		return
	}
	l.durEWMA.Store(old + (int64(d)-old)/8)
}

// ahead is how many tries a worker may be started beyond its free slots,
// by the rule of the worker's own producer (producer.Ahead): while tries
// are short, a queue_size's worth or what a slot runs in
// engine.QueueHorizon, up to queue_size_max; none otherwise.
func (l *loop) ahead() int {
	if l.observed.Load() < 3 {
		return 0
	}
	d := max(time.Duration(l.durEWMA.Load()), time.Microsecond)
	if d*time.Duration(l.minQueue) > l.shortest/20 {
		return 0
	}
	return min(l.maxQueue, max(l.minQueue, int(engine.QueueHorizon/d)))
}

// tidy gives back the tries taken ahead that waited too long (a quarter
// of the shortest max duration, far from their expiry), or that must not
// run (the heartbeat lapsed), and starts again the workers due.
func (l *loop) tidy(ctx context.Context) {
	fenced := l.r.reg.fenced.Load()
	now := time.Now()
	for _, m := range l.r.members {
		if len(m.buffer) > 0 && (fenced || m.drained || m.lost || now.Sub(m.since) > l.shortest/4) {
			l.giveBack = append(l.giveBack, m.buffer...)
			m.buffer = nil
		}
		if m.down && !m.lost && !now.Before(m.restart) && ctx.Err() == nil {
			m.start(l.done)
			m.log.Info("worker started again")
		}
	}
	if l.reconcile && !fenced && l.running() == 0 && l.r.comp.Len() == 0 && ctx.Err() == nil {
		// Nothing runs here now: a row started under a worker of the node
		// is a start whose commit we could not see (or one taken ahead and
		// not yet given back). Hand such rows on.
		held := false
		for _, m := range l.r.members {
			held = held || len(m.buffer) > 0
		}
		if !held {
			ids := make([]string, len(l.r.members))
			for i, m := range l.r.members {
				ids[i] = m.id
			}
			l.r.reg.recover(ctx, ids, "the node dispatcher lost track of the task")
			l.giveBack = nil
			l.reconcile = false
		}
	}
}

// wants is how many rows each worker should be started: its free slots,
// and, once its buffer is empty, as many as it may take ahead.
func (l *loop) wants() ([]store.Share, int) {
	if l.r.reg.fenced.Load() || !l.look {
		return nil, 0
	}
	ahead := l.ahead()
	var out []store.Share
	total := 0
	for _, m := range l.r.members {
		if m.drained || len(m.buffer) > 0 {
			continue
		}
		n := m.room()
		if n <= 0 {
			continue
		}
		n += ahead
		out = append(out, store.Share{Worker: m.id, N: n})
		total += n
	}
	return out, total
}

// produce records outcomes and starts rows when it is time to, and
// reports whether to look again at once (slots still free after a start
// that found rows).
func (l *loop) produce(ctx context.Context) bool {
	c := l.r.comp
	if !l.look && l.polled && !l.r.reg.fenced.Load() && l.anyRoom() {
		l.look = l.queued(ctx)
	}
	l.polled = false
	wants, want := l.wants()
	if want == 0 && !c.Due() && len(l.giveBack) == 0 {
		return false
	}
	batch := c.Take()
	started, err := l.cycle(ctx, batch, wants)
	if err != nil && ctx.Err() == nil {
		l.r.log.Warn("record results and start tasks", "err", err)
		l.reconcile = len(wants) > 0
	}
	for _, a := range started {
		l.r.byID[a.Worker].take(a)
	}
	if want > 0 {
		if len(started) < want {
			l.r.opts.Bus.Notify(notify.Dispatch) // the queue ran dry
		}
		l.look = len(started) == want
	}
	return len(started) > 0 && l.anyRoom()
}

// anyRoom reports whether a worker has a free slot and nothing waiting.
func (l *loop) anyRoom() bool {
	for _, m := range l.r.members {
		if !m.drained && len(m.buffer) == 0 && m.room() > 0 {
			return true
		}
	}
	return false
}

// queued reports, with a read, whether rows wait reserved for the node.
func (l *loop) queued(ctx context.Context) bool {
	for _, j := range l.r.opts.Jobs {
		ok, err := j.SQL.Queued(ctx, l.r.opts.Store.DB, l.r.opts.Info.ID)
		if err != nil || ok {
			return true
		}
	}
	return false
}

// cycle gives back, records outcomes and starts rows for the workers, in
// one transaction. If the batch cannot be written as it is, each outcome
// is recorded on its own, with the full handling of the completer's
// FinishOne.
func (l *loop) cycle(ctx context.Context, batch []engine.Outcome, wants []store.Share) ([]*engine.Attempt, error) {
	r := l.r
	var applied []bool
	var started []*engine.Attempt
	giveBack := l.giveBack
	err := r.opts.Store.Tx(r.hardCtx, func(txCtx context.Context, tx *sql.Tx) error {
		applied, started = nil, nil
		for _, a := range giveBack {
			if _, err := a.Job.SQL.UnstartFor(txCtx, tx, r.opts.Info.ID, a.Fence()); err != nil {
				return err
			}
		}
		var err error
		if applied, err = r.comp.WriteIn(txCtx, tx, batch); err != nil {
			return err
		}
		if len(wants) > 0 && ctx.Err() == nil && !r.reg.fenced.Load() {
			started, err = l.startIn(txCtx, tx, wants)
		}
		return err
	})
	if err != nil {
		r.comp.FinishEach(batch)
		// The give-back is tried again; a start whose commit was cut off
		// leaves rows started for workers that do not run them: the loop
		// relaunches them once nothing runs here (reconcile).
		return nil, err
	}
	l.giveBack = l.giveBack[len(giveBack):]
	r.comp.Recorded(batch, applied)
	return started, nil
}

// startIn starts, within tx, rows reserved for the node for the workers
// of wants, job by job: rows of jobs the node was moved away from first
// (at most a queue of them), its assigned job last, as a worker claims.
func (l *loop) startIn(ctx context.Context, tx *sql.Tx, wants []store.Share) ([]*engine.Attempt, error) {
	r := l.r
	assigned := r.reg.assigned()
	order := make([]*engine.Job, 0, len(r.opts.Jobs))
	for _, j := range r.opts.Jobs {
		if j.Name != assigned {
			order = append(order, j)
		}
	}
	for _, j := range r.opts.Jobs {
		if j.Name == assigned {
			order = append(order, j)
		}
	}
	left := map[string]int{}
	for _, w := range wants {
		left[w.Worker] = w.N
	}
	var out []*engine.Attempt
	for _, j := range order {
		var shares []store.Share
		for _, w := range wants {
			if n := left[w.Worker]; n > 0 && r.byID[w.Worker].jobs[j.Name] {
				shares = append(shares, store.Share{Worker: w.Worker, N: n})
			}
		}
		if len(shares) == 0 {
			continue
		}
		rows, err := j.SQL.StartFor(ctx, tx, r.opts.Info.ID, shares)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		for _, row := range rows {
			a := l.newAttempt(j, row)
			if r.byID[a.Worker] == nil {
				return nil, fmt.Errorf("job %s: started a row for %q, not a worker of this node", j.Name, a.Worker)
			}
			left[a.Worker]--
			out = append(out, a)
		}
	}
	return out, nil
}

func (l *loop) newAttempt(j *engine.Job, row store.Row) *engine.Attempt {
	spec := j.SQL.Spec()
	key, _ := row.Get(spec.PrimaryKey)
	a := &engine.Attempt{Job: j, Row: row, Key: key}
	if v, ok := row.Get(spec.ReservationID); ok {
		switch w := v.(type) {
		case string:
			a.Worker = w
		case []byte:
			a.Worker = string(w)
		}
	}
	if v, ok := row.Get(spec.ReservationTimes); ok {
		a.Try, _ = engine.AsInt64(v)
	}
	log := l.r.log
	if m := l.r.byID[a.Worker]; m != nil {
		log = m.log
	}
	a.Log = log.With("job", j.Name, "task", key, "try", a.Try)
	if l.r.opts.NewHandle != nil {
		a.Handle = l.r.opts.NewHandle(a)
	}
	return a
}

// wait blocks until something happens: a try ends, a wake-up, an event
// of the heartbeat, the outcomes' deadline, a restart due, the poll, or
// the end.
func (l *loop) wait(ctx context.Context) {
	c := l.r.comp
	wait := l.r.opts.Delay
	if c.Len() > 0 {
		wait = min(wait, time.Until(c.Deadline()))
	}
	if len(l.giveBack) > 0 {
		wait = min(wait, 200*time.Millisecond) // a give-back that failed, tried again
	}
	now := time.Now()
	for _, m := range l.r.members {
		if m.down && !m.lost {
			wait = min(wait, m.restart.Sub(now))
		}
		if len(m.buffer) > 0 {
			wait = min(wait, m.since.Add(l.shortest/4).Sub(now)+time.Millisecond)
		}
	}
	engine.ResetTimer(l.timer, max(wait, time.Millisecond))
	select {
	case <-ctx.Done():
	case res := <-l.done:
		l.collect(res)
	case ev := <-l.r.events:
		ev(l)
	case <-l.wake:
		l.look = true
	case <-l.timer.C:
		l.polled = true
	case <-l.hbDone:
		l.fatal = errHeartbeatStopped
	}
}

// errDied is the cause given to the other tries of a worker that died.
var errDied = errors.New("its worker died; the task is relaunched")

// memberDied handles a worker whose slot's goroutine ended with a panic:
// the worker's other tries are cancelled, every row it holds is
// relaunched (or failed, on its last try) in one fenced transaction,
// without waiting for a heartbeat to lapse, and the worker is started
// again after a backoff.
func (l *loop) memberDied(m *member, res result) {
	m.log.Error("worker died: relaunching its tasks and starting it again", "panic", res.panic, "backoff", m.nextBackoff())
	// Marked first, the tries still in the worker's channel are not run
	// by its other slots: their rows are relaunched just below.
	engine.Cancel(m.held(), errDied)
	m.exec.CancelRunning()
	m.stop()
	m.running = map[*engine.Attempt]bool{}
	m.buffer = nil
	m.down = true
	m.restart = time.Now().Add(m.backoff)
	l.relaunch(m.id, "worker died while running the task")
}

// nextBackoff doubles the member's restart backoff, from RestartBackoff
// up to 30s.
func (m *member) nextBackoff() time.Duration {
	if m.backoff == 0 {
		m.backoff = m.r.opts.RestartBackoff
	} else {
		m.backoff = min(2*m.backoff, 30*time.Second)
	}
	return m.backoff
}

// relaunch relaunches the rows a worker of the node holds as running (or
// fails them for good, on their last try), fenced by the worker's id.
func (l *loop) relaunch(id, reason string) {
	r := l.r
	for _, j := range r.opts.Jobs {
		var relaunched, failed []any
		err := r.opts.Store.Tx(r.hardCtx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			_, relaunched, failed, err = j.SQL.RecoverWorkers(ctx, tx, []string{id}, reason)
			if err != nil {
				return err
			}
			return j.Relaunched(ctx, tx, relaunched)
		})
		if err != nil {
			// Not fatal: they expire, or the next process relaunches them.
			r.log.Warn("relaunch the tasks of a worker", "worker", id, "job", j.Name, "err", err)
			continue
		}
		if len(relaunched)+len(failed) > 0 {
			r.log.Info("relaunched the tasks of a worker", "worker", id, "job", j.Name, "relaunched", len(relaunched), "failed_for_good", len(failed))
		}
	}
}

// cancelAll cancels every running try and gives back every try taken
// ahead: the registry declared the node dead, or its heartbeat lapsed.
func (l *loop) cancelAll() {
	for _, m := range l.r.members {
		engine.Cancel(m.held(), errLost)
		l.giveBack = append(l.giveBack, m.buffer...)
		m.buffer = nil
	}
}

// writeRemaining records the outcomes in, and gives back the tries taken
// ahead that will not run now.
func (l *loop) writeRemaining(ctx context.Context) {
	for _, m := range l.r.members {
		l.giveBack = append(l.giveBack, m.buffer...)
		m.buffer = nil
	}
	l.collectReady()
	if l.r.comp.Len() > 0 || len(l.giveBack) > 0 {
		_, _ = l.cycle(ctx, l.r.comp.Take(), nil)
	}
}

// running counts the tries the workers run.
func (l *loop) running() int {
	n := 0
	for _, m := range l.r.members {
		n += len(m.running)
	}
	return n
}

// stopGracefully lets running tries finish within the grace period,
// recording each outcome as it comes.
func (l *loop) stopGracefully(ctx context.Context) {
	r := l.r
	if l.running() == 0 {
		return
	}
	stCtx, cancel := context.WithTimeout(r.hardCtx, 5*time.Second)
	if err := r.reg.setState(stCtx, store.StateStopping); err != nil {
		r.log.Warn("mark stopping", "err", err)
	}
	cancel()
	r.log.Info("stopping: waiting for running tasks", "running", l.running(), "grace", r.opts.GracePeriod)
	grace := time.NewTimer(r.opts.GracePeriod)
	defer grace.Stop()
	for l.running() > 0 {
		select {
		case res := <-l.done:
			if res.gen != res.m.gen || res.panic != nil {
				if res.panic != nil {
					l.memberDied(res.m, res)
				}
				continue
			}
			delete(res.m.running, res.out.Attempt)
			_, _ = l.cycle(ctx, []engine.Outcome{res.out}, nil)
		case ev := <-r.events:
			ev(l) // the heartbeat goes on meanwhile: never leave it waiting
		case <-grace.C:
			r.log.Warn("grace period over: cancelling running tasks", "running", l.running())
			r.hardCancel()
		case <-r.hardCtx.Done():
			return
		}
	}
}
