package nodedispatch

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// errLost is the cause given to the tries cancelled when the node lost
// its place in the registry (declared dead, or its heartbeat lapsed).
var errLost = errors.New("the node dispatcher lost its heartbeat; the task is handed on")

// registry keeps the registry rows of the node dispatcher and of its
// workers: it registers them, beats all their heartbeats in one
// statement, and lets go in time when the database cannot be reached,
// by the rule of a worker's own heartbeat (internal/heartbeat).
type registry struct {
	r *Runtime

	mu        sync.Mutex
	instances map[string]string // id → this process's instance
	job       atomic.Pointer[string]
	fenced    atomic.Bool
	lastOK    time.Time
	interval  time.Duration
	ttl       time.Duration
}

func newRegistry(r *Runtime) *registry {
	g := &registry{r: r, instances: map[string]string{}, interval: r.opts.HeartbeatInterval, ttl: r.opts.HeartbeatTTL}
	if g.interval == 0 {
		g.interval = 5 * time.Second
	}
	if g.ttl == 0 {
		g.ttl = 3 * g.interval
	}
	none := ""
	g.job.Store(&none)
	return g
}

// assigned is the job the central dispatcher assigned the node to.
func (g *registry) assigned() string { return *g.job.Load() }

func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// entries are the registry rows the node keeps: its own first.
func (g *registry) entries() []store.WorkerInfo {
	out := []store.WorkerInfo{g.r.opts.Info}
	for _, m := range g.r.opts.Members {
		out = append(out, m.Info)
	}
	return out
}

// register records the node dispatcher and its workers, then relaunches
// the rows its workers' ids hold as running: an earlier process of the
// node left them (killed, crashed, declared dead); this one runs none.
// The rows reserved for the node, unstarted, stay its own.
func (g *registry) register(ctx context.Context) error {
	for _, w := range g.entries() {
		if err := g.registerOne(ctx, w); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.lastOK = time.Now()
	g.mu.Unlock()
	ids := make([]string, len(g.r.members))
	for i, m := range g.r.members {
		ids[i] = m.id
	}
	g.recover(ctx, ids, "worker restarted while running the task")
	return nil
}

func (g *registry) registerOne(ctx context.Context, w store.WorkerInfo) error {
	w.Instance = newInstance()
	if err := g.r.opts.Store.RegisterWorker(ctx, w, g.ttl); err != nil {
		return err
	}
	g.mu.Lock()
	g.instances[w.ID] = w.Instance
	g.mu.Unlock()
	return nil
}

// recover relaunches the running rows of the workers ids, job by job.
func (g *registry) recover(ctx context.Context, ids []string, reason string) {
	r := g.r
	for _, j := range r.opts.Jobs {
		var relaunched, failed []any
		err := r.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			_, relaunched, failed, err = j.SQL.RecoverWorkers(ctx, tx, ids, reason)
			if err != nil {
				return err
			}
			return j.Relaunched(ctx, tx, relaunched)
		})
		if err != nil {
			r.log.Warn("relaunch tasks left running by an earlier process", "job", j.Name, "err", err)
			continue
		}
		if len(relaunched)+len(failed) > 0 {
			r.log.Info("relaunched tasks left running by an earlier process", "job", j.Name,
				"relaunched", len(relaunched), "failed_for_good", len(failed))
		}
	}
}

// run heartbeats every interval until ctx ends. It returns an error only
// when the node must stop: another process took the node dispatcher's id.
func (g *registry) run(ctx context.Context) error {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := g.beat(ctx); err != nil {
			return err
		}
	}
}

// beat sends one heartbeat for the node and its workers and acts on the
// answer.
func (g *registry) beat(ctx context.Context) error {
	r := g.r
	g.mu.Lock()
	beats := make([]store.Beat, 0, len(g.instances))
	for _, w := range g.entries() {
		if inst, ok := g.instances[w.ID]; ok {
			beats = append(beats, store.Beat{ID: w.ID, Instance: inst})
		}
	}
	g.mu.Unlock()
	hbCtx, cancel := context.WithTimeout(ctx, max(g.interval, g.ttl/2)-g.interval/2)
	ans, err := r.opts.Store.HeartbeatMany(hbCtx, beats, g.assigned())
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		since := time.Since(g.lastOK)
		r.log.Warn("heartbeat failed", "err", err, "since_last_ok", since.Round(time.Millisecond))
		if since > g.ttl-g.interval && !g.fenced.Swap(true) {
			r.log.Error("no heartbeat for longer than the TTL: taking no tasks and cancelling running ones, which the dispatcher hands on",
				"ttl", g.ttl)
			r.post(ctx, func(l *loop) { l.cancelAll() })
		}
		return nil
	}
	self, ok := ans[r.opts.Info.ID]
	if !ok {
		// Declared dead (a long pause): our rows were handed on. Drop
		// every try and join again, workers included.
		r.log.Warn("the registry declared this node dispatcher dead; cancelling running tasks and registering again")
		g.fenced.Store(true)
		r.post(ctx, func(l *loop) { l.cancelAll() })
		if err := g.register(ctx); err != nil {
			if errors.Is(err, store.ErrWorkerRunning) {
				return fmt.Errorf("node dispatcher %s: %w", r.opts.Info.ID, err)
			}
			r.log.Warn("register again", "err", err)
			return nil
		}
		g.fenced.Store(false)
		return nil
	}
	g.lastOK = time.Now()
	if g.fenced.Swap(false) {
		r.log.Info("heartbeat back: taking tasks again")
	}
	job := self.Job
	g.job.Store(&job)
	var lost []string
	drained := map[string]bool{}
	for _, b := range beats[1:] {
		a, ok := ans[b.ID]
		if !ok {
			lost = append(lost, b.ID)
			continue
		}
		drained[b.ID] = a.Drained
	}
	r.post(ctx, func(l *loop) {
		for id, d := range drained {
			if m := r.byID[id]; m != nil {
				m.drained = d
			}
		}
	})
	for _, id := range lost {
		g.memberLost(ctx, id)
	}
	g.cancels(ctx)
	return nil
}

// memberLost handles a worker of the node the registry no longer knows
// as this process's: its tries are dropped, and it registers again, or,
// when another live process holds its id, stops for good.
func (g *registry) memberLost(ctx context.Context, id string) {
	r := g.r
	m := r.byID[id]
	r.log.Warn("the registry no longer knows a worker of this node as ours; cancelling its tasks", "worker", id)
	done := make(chan struct{})
	r.post(ctx, func(l *loop) {
		defer close(done)
		engine.Cancel(m.held(), errLost)
		l.giveBack = append(l.giveBack, m.buffer...)
		m.buffer = nil
		m.lost = true // no new tries until registered again
	})
	select {
	case <-done:
	case <-ctx.Done():
		return
	}
	for _, mi := range r.opts.Members {
		if mi.Info.ID != id {
			continue
		}
		err := g.registerOne(ctx, mi.Info)
		if err != nil {
			g.mu.Lock()
			delete(g.instances, id)
			g.mu.Unlock()
			r.log.Error("worker stops: it cannot register again", "worker", id, "err", err)
			return
		}
		g.recover(ctx, []string{id}, "worker restarted while running the task")
		r.post(ctx, func(*loop) { m.lost = false })
	}
}

// cancels acts on the tries an operator cancelled under the ids of the
// node's workers: one read for all of them.
func (g *registry) cancels(ctx context.Context) {
	r := g.r
	ids := make([]string, 0, len(r.members))
	for _, m := range r.members {
		ids = append(ids, m.id)
	}
	opCtx, cancel := context.WithTimeout(ctx, g.interval)
	defer cancel()
	tries, err := r.opts.Store.CancelsOf(opCtx, ids)
	if err != nil || len(tries) == 0 {
		if err != nil && ctx.Err() == nil {
			r.log.Warn("cancelled tasks", "err", err)
		}
		return
	}
	// The loop owns the tries; it lists the ones asked for.
	found := make(chan map[int][]*engine.Attempt, 1)
	r.post(ctx, func(*loop) {
		out := map[int][]*engine.Attempt{}
		for i, c := range tries {
			if m := r.byID[c.Worker]; m != nil {
				for _, a := range m.held() {
					if a.Job.Name == c.Job && store.KeyText(a.Key) == c.Task {
						out[i] = append(out[i], a)
					}
				}
			}
		}
		found <- out
	})
	var held map[int][]*engine.Attempt
	select {
	case held = <-found:
	case <-ctx.Done():
		return
	}
	var done []store.CancelledTry
	var cancelled []*engine.Attempt
	for i, c := range tries {
		as := held[i]
		acted := len(as) > 0
		for _, a := range as {
			live, err := a.Job.SQL.FenceHolds(opCtx, r.opts.Store.DB, a.Fence())
			switch {
			case err != nil:
				acted = false
			case !live:
				a.Log.Info("task cancelled by an operator: cancelling its try")
				cancelled = append(cancelled, a)
			}
		}
		if acted {
			done = append(done, c)
		}
	}
	engine.Cancel(cancelled, engine.ErrCancelled)
	if err := r.opts.Store.ForgetCancels(opCtx, done); err != nil && ctx.Err() == nil {
		r.log.Warn("cancelled tasks", "err", err)
	}
}

// setState moves every registry row of the node to a state.
func (g *registry) setState(ctx context.Context, state string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for id, inst := range g.instances {
		if err := g.r.opts.Store.SetWorkerState(ctx, id, inst, state); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// leave hands back the rows reserved for the node and its workers,
// unstarted, and marks every row of the node stopped.
func (g *registry) leave() {
	r := g.r
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := []string{r.opts.Info.ID}
	for _, m := range r.members {
		ids = append(ids, m.id)
	}
	for _, j := range r.opts.Jobs {
		err := r.opts.Store.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			n, err := j.SQL.HandBack(ctx, tx, ids...)
			if n > 0 {
				r.log.Info("handed back unstarted tasks", "job", j.Name, "n", n)
			}
			return err
		})
		if err != nil {
			r.log.Warn("hand back unstarted tasks", "job", j.Name, "err", err)
		}
	}
	if err := g.setState(ctx, store.StateStopped); err != nil {
		r.log.Warn("leave registry", "err", err)
	}
}
