package heartbeat

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

// Run is a goroutine of the caller's: none may outlive the tests.
func TestMain(m *testing.M) { enginetest.Main(m) }

const id = "n.1"

// bundle is a heartbeat of worker n.1 over a job's rows 1..5.
type bundle struct {
	s    *store.Store
	j    *engine.Job
	h    *Heartbeat
	lost atomic.Int32
	// fencedWhenLost: whether the worker was fenced when told to cancel.
	fencedWhenLost atomic.Bool
	logs           *enginetest.Logs
}

func setup(t *testing.T, s *store.Store, interval, ttl time.Duration) *bundle {
	t.Helper()
	b := &bundle{s: s, j: enginetest.NewJob(t, s, "tasks", 5, 2), logs: &enginetest.Logs{}}
	b.h = b.another(interval, ttl)
	return b
}

// another is a second heartbeat under the same id: another process.
func (b *bundle) another(interval, ttl time.Duration) *Heartbeat {
	return New(Options{
		Store: b.s, Info: store.WorkerInfo{ID: id, Node: "n", Host: "h", PID: 42, Jobs: []string{"tasks"}},
		Jobs: []*engine.Job{b.j}, Interval: interval, TTL: ttl, Log: b.logs.Logger(),
		OnLost: func() {
			b.lost.Add(1)
			b.fencedWhenLost.Store(b.h != nil && b.h.Fenced())
		},
	})
}

func (b *bundle) register(t *testing.T) {
	t.Helper()
	if err := b.h.Register(t.Context()); err != nil {
		t.Fatalf("Register: %v", err)
	}
}

func (b *bundle) worker(t *testing.T) store.WorkerInfo {
	t.Helper()
	w, err := b.s.Worker(t.Context(), id, time.Minute)
	if err != nil {
		t.Fatalf("read worker %s: %v", id, err)
	}
	return w
}

func (b *bundle) beat(t *testing.T) {
	t.Helper()
	if err := b.h.Beat(t.Context()); err != nil {
		t.Fatalf("Beat: %v", err)
	}
}

// age sets the worker's heartbeat to d ago.
func (b *bundle) age(t *testing.T, d time.Duration) {
	t.Helper()
	enginetest.Exec(t, b.s, `UPDATE pampa_workers SET heartbeat_at = `+b.s.Dialect.Ago()+` WHERE id = ?`, b.s.Dialect.AgoArg(d), id)
}

func TestRegisterAndBeat(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, time.Second, time.Minute)
		if b.h.Instance() != "" {
			t.Fatal("an instance before Register")
		}
		b.register(t)
		w := b.worker(t)
		if w.State != store.StateRunning || w.Instance != b.h.Instance() || b.h.Instance() == "" || w.PID != 42 ||
			!slices.Equal(w.Jobs, []string{"tasks"}) {
			t.Fatalf("registry row = %+v, want running under this instance (%q)", w, b.h.Instance())
		}
		if ok, err := s.Assign(t.Context(), id, "", "tasks"); err != nil || !ok {
			t.Fatalf("Assign = %v, %v", ok, err)
		}
		b.age(t, 30*time.Second)
		if b.h.Assigned() != "" {
			t.Fatalf("Assigned = %q before a beat", b.h.Assigned())
		}
		b.beat(t)
		if b.h.Assigned() != "tasks" {
			t.Fatalf("Assigned = %q after a beat, want the registry's 'tasks'", b.h.Assigned())
		}
		if w := b.worker(t); w.LastBeat > 5*time.Second || !w.Alive {
			t.Fatalf("heartbeat %.1fs old after a beat (alive %v), want fresh", w.LastBeat.Seconds(), w.Alive)
		}
		if b.lost.Load() != 0 || b.h.Fenced() {
			t.Fatal("a healthy beat cancelled or fenced the worker")
		}
	})
}

func TestSecondProcessUnderLiveIDIsRefused(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, time.Second, time.Minute)
		b.register(t)
		first := b.h.Instance()
		second := b.another(time.Second, time.Minute)
		if err := second.Register(t.Context()); !errors.Is(err, store.ErrWorkerRunning) {
			t.Fatalf("second Register = %v, want ErrWorkerRunning", err)
		}
		if w := b.worker(t); w.Instance != first {
			t.Fatalf("registry instance = %q, want the first process's %q kept", w.Instance, first)
		}
		// Once the first has left, the id is free.
		b.h.Leave()
		if err := second.Register(t.Context()); err != nil {
			t.Fatalf("Register after the first left: %v", err)
		}
	})
}

func TestBeatWhenDeclaredDeadCancelsAndRegistersAgain(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, time.Second, time.Minute)
		b.register(t)
		old := b.h.Instance()
		// A try it was running when it froze, still held by its id.
		enginetest.Reserve(t, s, b.j, id, 1)
		enginetest.Claim(t, s, b.j, id, 1)
		b.age(t, time.Hour)
		if dead, err := s.MarkDead(t.Context(), time.Minute); err != nil || !slices.Equal(dead, []string{id}) {
			t.Fatalf("MarkDead = %v, %v", dead, err)
		}
		b.beat(t)
		if b.lost.Load() != 1 {
			t.Fatalf("OnLost called %d times, want once", b.lost.Load())
		}
		// Declared dead, it claims nothing until registered again: the
		// rows its id holds are about to be handed on.
		if !b.fencedWhenLost.Load() {
			t.Fatal("the worker was not fenced while it cancelled its tries and registered again")
		}
		if b.h.Fenced() {
			t.Fatal("still fenced once registered again")
		}
		w := b.worker(t)
		if w.State != store.StateRunning || w.Instance == old || w.Instance != b.h.Instance() {
			t.Fatalf("registry row = %+v, want running under a new instance (old %q)", w, old)
		}
		if r := enginetest.Get(t, s, b.j, 1); r.RID.Valid || r.Started || r.Tries != 1 {
			t.Fatalf("row 1 = %+v, want relaunched (pending, try 1 kept)", r)
		}
		b.beat(t)
		if b.lost.Load() != 1 {
			t.Fatal("a beat after registering again cancelled the worker again")
		}
	})
}

func TestBeatWhenIDTakenOverStops(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, time.Second, time.Minute)
	b.register(t)
	// Another process holds the id now, and heartbeats.
	enginetest.Exec(t, s, `UPDATE pampa_workers SET instance = 'someone-else' WHERE id = ?`, id)
	err := b.h.Beat(t.Context())
	if !errors.Is(err, store.ErrWorkerRunning) {
		t.Fatalf("Beat = %v, want ErrWorkerRunning", err)
	}
	if b.lost.Load() != 1 {
		t.Fatalf("OnLost called %d times, want once", b.lost.Load())
	}
}

// A worker whose heartbeat fails fences itself once TTL − Interval has
// passed since its last success (here 100ms − 20ms = 80ms), and only once.
// The last success is Register's, somewhere between t0 and t1: a beat
// that ended less than 80ms after t0 must not fence, one that started
// more than 80ms after t1 must.
func TestBeatFencesOnlyAfterTTLMinusInterval(t *testing.T) {
	t.Parallel()
	const interval, ttl = 20 * time.Millisecond, 100 * time.Millisecond
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, interval, ttl)
	t0 := time.Now()
	b.register(t)
	t1 := time.Now()
	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(interval / 4)
	defer tick.Stop()
	for !b.h.Fenced() {
		if time.Since(t0) > 5*time.Second {
			t.Fatal("never fenced with the database closed")
		}
		start := time.Now()
		b.beat(t)
		end := time.Now()
		switch {
		case b.h.Fenced() && end.Sub(t0) < ttl-interval:
			t.Fatalf("fenced %s after the last successful heartbeat, before TTL − interval (%s)", end.Sub(t0), ttl-interval)
		case !b.h.Fenced() && start.Sub(t1) > ttl-interval:
			t.Fatalf("not fenced %s after the last successful heartbeat, past TTL − interval (%s)", start.Sub(t1), ttl-interval)
		case !b.h.Fenced() && b.lost.Load() != 0:
			t.Fatal("OnLost called without fencing")
		}
		<-tick.C
	}
	for range 3 {
		b.beat(t)
	}
	if b.lost.Load() != 1 || !b.h.Fenced() {
		t.Fatalf("OnLost called %d times over several failed beats (fenced %v), want once, still fenced",
			b.lost.Load(), b.h.Fenced())
	}
	if !b.logs.Contains("no heartbeat for longer than the TTL") {
		t.Fatalf("no log of the fence:\n%s", b.logs)
	}
}

// A database locked by another process fails the heartbeat within its
// own timeout; once the lock goes, the next beat lifts the fence.
func TestBeatLiftsFenceWhenDatabaseAnswersAgain(t *testing.T) {
	t.Parallel()
	const interval, ttl = 20 * time.Millisecond, 60 * time.Millisecond
	path := testdb.SQLitePath(t)
	s := enginetest.OpenURL(t, "sqlite", path)
	b := setup(t, s, interval, ttl)
	b.register(t)
	other := enginetest.OpenURL(t, "sqlite", path)
	tx, err := other.DB.BeginTx(t.Context(), nil) // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock := func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(unlock)
	enginetest.Eventually(t, 5*time.Second, "the heartbeat to fence", func() bool {
		if err := b.h.Beat(t.Context()); err != nil {
			t.Fatalf("Beat: %v", err)
		}
		return b.h.Fenced()
	})
	unlock()
	b.beat(t)
	if b.h.Fenced() {
		t.Fatal("still fenced after a successful beat")
	}
	if !b.logs.Contains("heartbeat back") {
		t.Fatalf("no log of the heartbeat coming back:\n%s", b.logs)
	}
}

func TestLeaveHandsBackUnstartedAndStops(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, time.Second, time.Minute)
		b.register(t)
		enginetest.Reserve(t, s, b.j, id, 1, 2, 3)
		enginetest.Claim(t, s, b.j, id, 1) // row 1 runs
		enginetest.Reserve(t, s, b.j, "n.2", 4)
		b.h.Leave()
		if w := b.worker(t); w.State != store.StateStopped {
			t.Fatalf("state after Leave = %q, want stopped", w.State)
		}
		for _, rid := range []int{2, 3} {
			if r := enginetest.Get(t, s, b.j, rid); r.RID.Valid || r.Reserved {
				t.Fatalf("row %d = %+v, want handed back", rid, r)
			}
		}
		if r := enginetest.Get(t, s, b.j, 1); r.RID.String != id || !r.Started {
			t.Fatalf("running row 1 = %+v, want left to its try", r)
		}
		if r := enginetest.Get(t, s, b.j, 4); r.RID.String != "n.2" {
			t.Fatalf("row 4 = %+v, want n.2's reservation kept", r)
		}
	})
}

func TestRegisterRecoversRowsLeftRunning(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, time.Second, time.Minute)
		var relaunched []int
		b.j.Hooks.Relauncher = func(ctx context.Context, tx store.Querier, key any) error {
			k, _ := engine.AsInt64(key)
			relaunched = append(relaunched, int(k))
			return nil
		}
		// An earlier process of n.1 left rows 1 and 2 running; row 2 on its
		// last try (max 2). Row 3 is n.2's.
		enginetest.Reserve(t, s, b.j, id, 1, 2)
		enginetest.Claim(t, s, b.j, id, 2)
		enginetest.Exec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 2`)
		enginetest.Reserve(t, s, b.j, "n.2", 3)
		enginetest.Claim(t, s, b.j, "n.2", 1)
		b.register(t)
		if r := enginetest.Get(t, s, b.j, 1); r.RID.Valid || r.Started || r.Tries != 1 {
			t.Fatalf("row 1 = %+v, want relaunched with its try kept", r)
		}
		r2 := enginetest.Get(t, s, b.j, 2)
		if !r2.Ended || r2.OK.Bool || r2.Why.String != "worker restarted while running the task" {
			t.Fatalf("row 2 = %+v, want failed for good (tries used up)", r2)
		}
		if r := enginetest.Get(t, s, b.j, 3); r.RID.String != "n.2" || !r.Started {
			t.Fatalf("row 3 = %+v, want n.2's try left alone", r)
		}
		if !slices.Equal(relaunched, []int{1}) {
			t.Fatalf("relauncher hook ran for %v, want [1]", relaunched)
		}
	})
}

func TestRunBeatsUntilCancelled(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, 10*time.Millisecond, time.Minute)
	b.register(t)
	b.age(t, 30*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.h.Run(ctx) }()
	enginetest.Eventually(t, 5*time.Second, "a heartbeat from Run", func() bool {
		return b.worker(t).LastBeat < 5*time.Second
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunStopsWhenIDTakenOver(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, 10*time.Millisecond, time.Minute)
	b.register(t)
	enginetest.Exec(t, s, `UPDATE pampa_workers SET instance = 'someone-else' WHERE id = ?`, id)
	select {
	case err := <-goRun(t.Context(), b.h):
		if !errors.Is(err, store.ErrWorkerRunning) {
			t.Fatalf("Run = %v, want ErrWorkerRunning", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run went on after another process took the id")
	}
}

func goRun(ctx context.Context, h *Heartbeat) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	return done
}
