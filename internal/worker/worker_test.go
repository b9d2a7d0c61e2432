package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/dispatch"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// The runtime runs its heartbeat and every try in goroutines of their
// own: none may outlive Run.
func TestMain(m *testing.M) { enginetest.Main(m) }

const id = "n.1"

// bundle is worker n.1 over a job of n rows, all reserved for it once it
// has registered (unless tune replaces OnStart).
type bundle struct {
	s *store.Store
	j *engine.Job
	r *Runtime
}

func setup(t *testing.T, n, concurrency int, process func(ctx context.Context, a *engine.Attempt) error, tune func(*Options)) *bundle {
	t.Helper()
	return setupOn(t, enginetest.Open(t, "sqlite"), n, concurrency, process, tune)
}

// setupOn is setup on a store of the caller's.
func setupOn(t *testing.T, s *store.Store, n, concurrency int, process func(ctx context.Context, a *engine.Attempt) error, tune func(*Options)) *bundle {
	t.Helper()
	j := enginetest.NewJob(t, s, "tasks", n, 3)
	j.Hooks.Process = process
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	opts := Options{
		Store: s, Bus: notify.NewBus(), Jobs: []*engine.Job{j},
		Info:        store.WorkerInfo{ID: id, Node: "n", Jobs: []string{"tasks"}},
		Concurrency: concurrency, Delay: 20 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond, HeartbeatTTL: 5 * time.Second,
		GracePeriod: 5 * time.Second, OverrunGrace: 200 * time.Millisecond,
		Log: enginetest.Discard(), Retryable: s.Dialect.Retryable,
		// Registering hands back what the id held unstarted: reserve once
		// registered, as the dispatcher would.
		OnStart: func(context.Context) error {
			enginetest.Reserve(t, s, j, id, ids...)
			return nil
		},
	}
	if tune != nil {
		tune(&opts)
	}
	return &bundle{s: s, j: j, r: New(opts)}
}

// start runs the worker until the returned cancel, and hands Run's error
// over on the channel.
func (b *bundle) start(t *testing.T) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		done <- b.r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		b.r.Kill()
		<-returned
	})
	return cancel, done
}

func waitRun(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return nil
	}
}

// dispatcher runs the leader's assignment and reservation rounds, woken
// by the workers' calls or every 20ms, until the returned stop.
func (b *bundle) dispatcher(t *testing.T) (stop func()) {
	t.Helper()
	svc := dispatch.New(dispatch.Options{Store: b.s, Bus: b.r.opts.Bus, Jobs: []*engine.Job{b.j},
		Log: enginetest.Discard(), WorkerTTL: 5 * time.Second, ReleaseAfter: time.Hour})
	wake, unsubscribe := b.r.opts.Bus.Subscribe(notify.Dispatch)
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer unsubscribe()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			var res dispatch.Result
			if ws, err := b.s.Workers(ctx, 5*time.Second); err == nil {
				_ = svc.Stretch(ctx, ws, &res)
				_ = svc.Reserve(ctx, &res)
			}
			select {
			case <-ctx.Done():
			case <-wake:
			case <-tick.C:
			}
		}
	}()
	stop = func() {
		cancel()
		<-finished
	}
	t.Cleanup(stop)
	return stop
}

func (b *bundle) state(t *testing.T) string {
	t.Helper()
	w, err := b.s.Worker(context.Background(), id, time.Minute)
	if err != nil {
		t.Fatalf("read worker: %v", err)
	}
	return w.State
}

func (b *bundle) ended(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.s.DB.QueryRow(`SELECT COUNT(*) FROM tasks WHERE ended IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunProcessesEveryRow(t *testing.T) {
	t.Parallel()
	var running, most atomic.Int32
	b := setup(t, 40, 3, func(ctx context.Context, a *engine.Attempt) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		payload, _ := a.Row.Get("payload")
		a.Set = map[string]any{"result": fmt.Sprintf("done %s", payload)}
		if k, _ := engine.AsInt64(a.Key); k%10 == 0 {
			return errors.New("tens fail")
		}
		return nil
	}, func(o *Options) { o.OnStart = nil })
	stopDispatch := b.dispatcher(t)
	stop, done := b.start(t)
	enginetest.Eventually(t, 20*time.Second, "every row to end", func() bool { return b.ended(t) == 40 })
	stopDispatch()
	stop()
	if err := waitRun(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil after a stop", err)
	}
	for id := 1; id <= 40; id++ {
		r := enginetest.Get(t, b.s, b.j, id)
		if r.Result.String != fmt.Sprintf("done p%d", id) || r.Tries != 1 || r.RID.String != "n.1" {
			t.Fatalf("row %d = %+v, want processed once by n.1 with its result", id, r)
		}
		if wantOK := id%10 != 0; r.OK.Bool != wantOK || (!wantOK && r.Why.String != "tens fail") {
			t.Fatalf("row %d = %+v, want success %v", id, r, wantOK)
		}
	}
	st := b.r.Stats()
	if st.Succeeded.Load() != 36 || st.Failed.Load() != 4 || st.Dropped.Load() != 0 {
		t.Fatalf("stats = %d/%d/%d, want 36 succeeded, 4 failed", st.Succeeded.Load(), st.Failed.Load(), st.Dropped.Load())
	}
	if most.Load() > 3 {
		t.Fatalf("%d tries ran at once, above the concurrency of 3", most.Load())
	}
	if got := b.state(t); got != store.StateStopped {
		t.Fatalf("registry state = %q, want stopped", got)
	}
}

func TestKillStopsAtOnce(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	b := setup(t, 5, 2, func(ctx context.Context, a *engine.Attempt) error {
		started.Add(1)
		<-ctx.Done()
		a.Set = map[string]any{"result": "after kill"}
		return nil
	}, func(o *Options) { o.GracePeriod = time.Hour })
	_, done := b.start(t)
	enginetest.Eventually(t, 10*time.Second, "two tries to run", func() bool { return started.Load() == 2 })
	killed := time.Now()
	b.r.Kill()
	if err := waitRun(t, done, 5*time.Second); err != nil {
		t.Fatalf("Run = %v after Kill", err)
	}
	if took := time.Since(killed); took > 2*time.Second {
		t.Fatalf("Run returned %s after Kill, want at once", took)
	}
	if n := b.ended(t); n != 0 {
		t.Fatalf("%d rows recorded after Kill, want none (the dispatcher relaunches them)", n)
	}
	runningRows := 0
	for id := 1; id <= 5; id++ {
		if r := enginetest.Get(t, b.s, b.j, id); r.Started {
			runningRows++
			if r.Result.Valid {
				t.Fatalf("row %d = %+v, want its columns unwritten", id, r)
			}
		}
	}
	if runningRows != 2 || started.Load() != 2 {
		t.Fatalf("%d rows started, %d tries run; want the 2 that ran left started", runningRows, started.Load())
	}
}

func TestGracefulStopFinishesRunningAndHandsBackTheRest(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	running := make(chan struct{}, 5)
	b := setup(t, 5, 1, func(ctx context.Context, a *engine.Attempt) error {
		running <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.Set = map[string]any{"result": "finished"}
		return nil
	}, nil)
	stop, done := b.start(t)
	<-running
	stop()
	// The running try gets its grace period: the row says "stopping".
	enginetest.Eventually(t, 10*time.Second, "the registry to say stopping", func() bool {
		return b.state(t) == store.StateStopping
	})
	close(release)
	if err := waitRun(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run = %v after a graceful stop", err)
	}
	if got := b.state(t); got != store.StateStopped {
		t.Fatalf("registry state = %q, want stopped", got)
	}
	finished := 0
	for id := 1; id <= 5; id++ {
		r := enginetest.Get(t, b.s, b.j, id)
		switch {
		case r.Ended:
			finished++
			if !r.OK.Bool || r.Result.String != "finished" {
				t.Fatalf("row %d = %+v, want the running try recorded as succeeded", id, r)
			}
		case r.RID.Valid || r.Reserved || r.Started || r.Tries != 0:
			t.Fatalf("row %d = %+v, want handed back unstarted, its try uncounted", id, r)
		}
	}
	if finished != 1 || len(running) != 0 {
		t.Fatalf("%d rows finished, %d more tries started; want the one running try only", finished, len(running))
	}
}

func TestGracePeriodOverCancelsRunningTries(t *testing.T) {
	t.Parallel()
	running := make(chan struct{}, 1)
	b := setup(t, 1, 1, func(ctx context.Context, a *engine.Attempt) error {
		running <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, func(o *Options) { o.GracePeriod = 100 * time.Millisecond })
	stop, done := b.start(t)
	<-running
	stopped := time.Now()
	stop()
	if err := waitRun(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if took := time.Since(stopped); took < 100*time.Millisecond {
		t.Fatalf("Run returned %s after the stop, before the grace period", took)
	}
	if r := enginetest.Get(t, b.s, b.j, 1); r.Ended || !r.Started {
		t.Fatalf("row 1 = %+v, want left started for the dispatcher (its try was cut off)", r)
	}
}

func TestStartUpFailureLeaves(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, 1, func(context.Context, *engine.Attempt) error { return nil }, func(o *Options) {
		o.OnStart = func(context.Context) error {
			enginetest.Reserve(t, o.Store, o.Jobs[0], id, 1) // reserved meanwhile
			return errors.New("no config")
		}
	})
	err := b.r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "worker n.1: start-up snippet: no config") {
		t.Fatalf("Run = %v, want the start-up failure named", err)
	}
	if got := b.state(t); got != store.StateStopped {
		t.Fatalf("registry state = %q, want stopped", got)
	}
	if r := enginetest.Get(t, b.s, b.j, 1); r.RID.Valid || r.Started {
		t.Fatalf("row 1 = %+v, want its reservation handed back, never started", r)
	}
}

func TestRunRefusesLiveID(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, 1, func(context.Context, *engine.Attempt) error { return nil }, nil)
	w := store.WorkerInfo{ID: id, Node: "n", Instance: "other"}
	if err := b.s.RegisterWorker(context.Background(), w, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.r.Run(context.Background()); !errors.Is(err, store.ErrWorkerRunning) {
		t.Fatalf("Run = %v, want ErrWorkerRunning", err)
	}
	if r := enginetest.Get(t, b.s, b.j, 1); r.Started {
		t.Fatalf("row 1 = %+v, want untouched by a refused worker", r)
	}
}

// A row the dispatcher started for the worker (one hop) that the worker
// never adopted (it was not woken, and does not poll here) is given back
// as the worker leaves: unstarted, its try count taken back, pending.
func TestLeaveGivesBackStartsNeverAdopted(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	b := setup(t, 2, 1, func(ctx context.Context, a *engine.Attempt) error {
		runs.Add(1)
		return nil
	}, func(o *Options) {
		o.OnStart = nil
		o.Delay = time.Hour // no idle poll: only a wake-up would adopt
	})
	stop, done := b.start(t)
	enginetest.Eventually(t, 10*time.Second, "the worker to register", func() bool {
		w, err := b.s.Worker(context.Background(), id, time.Minute)
		return err == nil && w.State == store.StateRunning
	})
	// Past its first look, at once after it registered: then, as the
	// hand-out does for an idle worker, a start without its wake-up.
	time.Sleep(time.Second)
	enginetest.Reserve(t, b.s, b.j, id, 1)
	enginetest.Claim(t, b.s, b.j, id, 1)
	stop()
	if err := waitRun(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if runs.Load() != 0 {
		t.Fatalf("%d tries ran, want none (the start was never adopted)", runs.Load())
	}
	if r := enginetest.Get(t, b.s, b.j, 1); r.Started || r.RID.Valid || r.Tries != 0 {
		t.Fatalf("row 1 after the worker left = %+v, want pending again with no try counted", r)
	}
}
