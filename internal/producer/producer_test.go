package producer

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// newProducer is worker w.1's producer over jobs, assigned to assigned.
func newProducer(s *store.Store, assigned string, jobs ...*engine.Job) *Producer {
	return New(Options{
		Store: s, Worker: "w.1", Jobs: jobs, Log: enginetest.Discard(),
		Assigned:   func() string { return assigned },
		NewAttempt: func(j *engine.Job, row store.Row) *engine.Attempt { return enginetest.NewAttempt(j, "w.1", row) },
	})
}

func claimIn(t *testing.T, s *store.Store, p *Producer, n int) []*engine.Attempt {
	t.Helper()
	var out []*engine.Attempt
	err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = p.ClaimIn(ctx, tx, n)
		return err
	})
	if err != nil {
		t.Fatalf("ClaimIn(%d): %v", n, err)
	}
	return out
}

func giveBack(t *testing.T, s *store.Store, p *Producer) {
	t.Helper()
	err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error { return p.GiveBackIn(ctx, tx) })
	if err != nil {
		t.Fatalf("GiveBackIn: %v", err)
	}
	p.Committed()
}

func keys(t *testing.T, as []*engine.Attempt) []int {
	t.Helper()
	out := make([]int, len(as))
	for i, a := range as {
		out[i] = enginetest.Key(t, a)
	}
	slices.Sort(out)
	return out
}

func TestClaimInStartsOnlyOwnReservations(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 6, 3)
		enginetest.Reserve(t, s, j, "w.1", 1, 2, 3)
		enginetest.Reserve(t, s, j, "w.2", 4, 5)
		p := newProducer(s, "tasks", j)
		got := claimIn(t, s, p, 10)
		if ks := keys(t, got); !slices.Equal(ks, []int{1, 2, 3}) {
			t.Fatalf("claimed %v, want w.1's rows [1 2 3]", ks)
		}
		for _, a := range got {
			if a.Try != 1 || a.Worker != "w.1" || a.Job != j {
				t.Fatalf("attempt of %v: try %d, worker %s; want try 1 of w.1", a.Key, a.Try, a.Worker)
			}
			if r := enginetest.Get(t, s, j, enginetest.Key(t, a)); !r.Started || r.Tries != 1 || r.RID.String != "w.1" {
				t.Fatalf("row %v = %+v, want started, try 1, for w.1", a.Key, r)
			}
		}
		for _, id := range []int{4, 5} {
			if r := enginetest.Get(t, s, j, id); r.Started || r.RID.String != "w.2" {
				t.Fatalf("row %d = %+v, want w.2's and unstarted", id, r)
			}
		}
		if again := claimIn(t, s, p, 10); len(again) != 0 {
			t.Fatalf("second claim took %v, want nothing (all started)", keys(t, again))
		}
	})
}

func TestClaimInTakesRowsOfOtherJobsFirst(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	assigned := enginetest.NewJob(t, s, "assigned", 5, 3)
	left := enginetest.NewJob(t, s, "left", 5, 3)
	enginetest.Reserve(t, s, assigned, "w.1", 1, 2, 3)
	enginetest.Reserve(t, s, left, "w.1", 4, 5)
	// The assigned job is listed first: order must come from the
	// assignment, not from the list.
	p := newProducer(s, "assigned", assigned, left)
	got := claimIn(t, s, p, 3)
	var jobs []string
	for _, a := range got {
		jobs = append(jobs, a.Job.Name)
	}
	if !slices.Equal(jobs, []string{"left", "left", "assigned"}) {
		t.Fatalf("claimed from %v, want the left job's two rows, then one of the assigned job", jobs)
	}
}

func TestClaimInHonoursN(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 5, 3)
	enginetest.Reserve(t, s, j, "w.1", 1, 2, 3, 4)
	p := newProducer(s, "tasks", j)
	if got := claimIn(t, s, p, 0); len(got) != 0 {
		t.Fatalf("ClaimIn(0) took %d", len(got))
	}
	if got := claimIn(t, s, p, 2); !slices.Equal(keys(t, got), []int{1, 2}) {
		t.Fatalf("ClaimIn(2) took %v, want the oldest two [1 2]", keys(t, got))
	}
}

func TestAhead(t *testing.T) {
	t.Parallel()
	job := &engine.Job{Name: "j", QueueSize: 5, MaxJobDuration: time.Minute}
	other := &engine.Job{Name: "k", QueueSize: 2, MaxJobDuration: 10 * time.Minute}
	t.Run("NeedsThreeObservations", func(t *testing.T) {
		p := New(Options{Jobs: []*engine.Job{job, other}})
		if p.MaxQueue() != 5 {
			t.Fatalf("MaxQueue = %d, want 5", p.MaxQueue())
		}
		for i := range 2 {
			p.Observe(time.Millisecond)
			if p.Ahead() != 0 {
				t.Fatalf("Ahead = %d after %d observations, want 0", p.Ahead(), i+1)
			}
		}
		p.Observe(time.Millisecond)
		if p.Ahead() != 5 {
			t.Fatalf("Ahead = %d after 3 short tasks, want a queue's worth (5)", p.Ahead())
		}
	})
	t.Run("LongTasksTakeNone", func(t *testing.T) {
		// A queue of 5 must take under 1min/20 = 3s: 700ms tasks do not.
		p := New(Options{Jobs: []*engine.Job{job, other}})
		for range 3 {
			p.Observe(700 * time.Millisecond)
		}
		if p.Ahead() != 0 {
			t.Fatalf("Ahead = %d for 700ms tasks, want 0", p.Ahead())
		}
		q := New(Options{Jobs: []*engine.Job{job, other}})
		for range 3 {
			q.Observe(500 * time.Millisecond)
		}
		if q.Ahead() != 5 {
			t.Fatalf("Ahead = %d for 500ms tasks, want 5", q.Ahead())
		}
	})
	t.Run("AHorizonOfShortTasks", func(t *testing.T) {
		// With room for a queue of 250, a worker takes ahead what a slot
		// runs in engine.QueueHorizon (100 ms), at least queue_size.
		grown := &engine.Job{Name: "g", QueueSize: 5, QueueSizeMax: 250, MaxJobDuration: time.Minute}
		for _, c := range []struct {
			task time.Duration
			want int
		}{{10 * time.Microsecond, 250}, {time.Millisecond, 100}, {4 * time.Millisecond, 25}, {30 * time.Millisecond, 5}, {500 * time.Millisecond, 5}, {time.Second, 0}} {
			p := New(Options{Jobs: []*engine.Job{grown, other}})
			if p.MaxQueue() != 250 {
				t.Fatalf("MaxQueue = %d, want queue_size_max 250", p.MaxQueue())
			}
			for range 3 {
				p.Observe(c.task)
			}
			if p.Ahead() != c.want {
				t.Errorf("Ahead = %d for %s tasks, want %d", p.Ahead(), c.task, c.want)
			}
		}
	})
	t.Run("AHorizonOfItsSlots", func(t *testing.T) {
		// 20 slots of 50 ms tasks run 40 in 100 ms.
		grown := &engine.Job{Name: "g", QueueSize: 5, QueueSizeMax: 250, MaxJobDuration: time.Minute}
		p := New(Options{Jobs: []*engine.Job{grown}, Slots: 20})
		for range 3 {
			p.Observe(50 * time.Millisecond)
		}
		if p.Ahead() != 40 {
			t.Errorf("Ahead = %d for 20 slots of 50 ms tasks, want 40", p.Ahead())
		}
	})
	t.Run("RecentAverage", func(t *testing.T) {
		p := New(Options{Jobs: []*engine.Job{job}})
		for range 3 {
			p.Observe(time.Millisecond)
		}
		// One very long task moves the average by an eighth: 1ms + 40s/8 ≈ 5s.
		p.Observe(40 * time.Second)
		if p.Ahead() != 0 {
			t.Fatalf("Ahead = %d after a 40s task, want 0", p.Ahead())
		}
	})
}

func TestKeepPopInOrder(t *testing.T) {
	t.Parallel()
	p := New(Options{Jobs: []*engine.Job{{Name: "j", QueueSize: 5, MaxJobDuration: time.Minute}}})
	a, b := &engine.Attempt{Key: 1}, &engine.Attempt{Key: 2}
	p.Keep(a, b)
	if p.Buffered() != 2 {
		t.Fatalf("Buffered = %d, want 2", p.Buffered())
	}
	if got, _ := p.Pop(); got != a {
		t.Fatal("Pop did not return the first kept attempt")
	}
	if got, _ := p.Pop(); got != b {
		t.Fatal("Pop did not return the second kept attempt")
	}
	if _, ok := p.Pop(); ok {
		t.Fatal("Pop on an empty buffer reported an attempt")
	}
}

func TestDropStaleGivesBackAfterQuarterOfShortestDuration(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 3, 3)
		long := enginetest.NewJob(t, s, "long", 1, 3)
		j.MaxJobDuration = 200 * time.Millisecond // shortest: stale after 50ms
		enginetest.Reserve(t, s, j, "w.1", 1, 2)
		p := newProducer(s, "tasks", j, long)
		kept := time.Now()
		p.Keep(claimIn(t, s, p, 2)...)
		p.DropStale()
		if time.Since(kept) < 50*time.Millisecond && (p.Buffered() != 2 || p.HasGiveBack()) {
			t.Fatalf("fresh tasks dropped: buffered %d, give-back %v", p.Buffered(), p.HasGiveBack())
		}
		enginetest.Eventually(t, 5*time.Second, "the buffer to go stale", func() bool {
			p.DropStale()
			return p.Buffered() == 0
		})
		if waited := time.Since(kept); waited < 50*time.Millisecond {
			t.Fatalf("given back after %s, before a quarter of the max duration (50ms)", waited)
		}
		if !p.HasGiveBack() {
			t.Fatal("stale tasks dropped but not listed to give back")
		}
		giveBack(t, s, p)
		if p.HasGiveBack() {
			t.Fatal("give-back list kept after commit")
		}
		for _, id := range []int{1, 2} {
			if r := enginetest.Get(t, s, j, id); r.Started || r.Tries != 0 || r.RID.String != "w.1" {
				t.Fatalf("row %d = %+v, want reserved for w.1 again, unstarted, try not counted", id, r)
			}
		}
	})
}

func TestGiveBackInUnstartsOnlyFencedRows(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 3, 3)
		enginetest.Reserve(t, s, j, "w.1", 1, 2, 3)
		p := newProducer(s, "tasks", j)
		p.Keep(claimIn(t, s, p, 3)...)
		// Row 2 moved on to another try; row 3 to another worker.
		enginetest.Exec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 2`)
		enginetest.Exec(t, s, `UPDATE tasks SET rid = 'w.2' WHERE id = 3`)
		p.DropAhead()
		giveBack(t, s, p)
		if r := enginetest.Get(t, s, j, 1); r.Started || r.Tries != 0 {
			t.Fatalf("row 1 = %+v, want un-started with its try uncounted", r)
		}
		if r := enginetest.Get(t, s, j, 2); !r.Started || r.Tries != 2 {
			t.Fatalf("row 2 = %+v, want left alone at try 2", r)
		}
		if r := enginetest.Get(t, s, j, 3); !r.Started || r.Tries != 1 || r.RID.String != "w.2" {
			t.Fatalf("row 3 = %+v, want left alone with w.2", r)
		}
	})
}

func TestForgetGiveBack(t *testing.T) {
	t.Parallel()
	p := New(Options{Jobs: []*engine.Job{{Name: "j", QueueSize: 5, MaxJobDuration: time.Minute}}})
	p.Keep(&engine.Attempt{Key: 1})
	p.DropAhead()
	if !p.HasGiveBack() || p.Buffered() != 0 {
		t.Fatalf("after DropAhead: give-back %v, buffered %d", p.HasGiveBack(), p.Buffered())
	}
	p.ForgetGiveBack()
	if p.HasGiveBack() {
		t.Fatal("ForgetGiveBack left the list")
	}
}

func TestQueued(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		a := enginetest.NewJob(t, s, "a", 2, 3)
		b := enginetest.NewJob(t, s, "b", 2, 3)
		p := newProducer(s, "a", a, b)
		ctx := t.Context()
		if p.Queued(ctx) {
			t.Fatal("Queued with nothing reserved")
		}
		enginetest.Reserve(t, s, a, "w.2", 1)
		if p.Queued(ctx) {
			t.Fatal("Queued with a row reserved for another worker")
		}
		enginetest.Reserve(t, s, b, "w.1", 2)
		if !p.Queued(ctx) {
			t.Fatal("not Queued with a row of its second job reserved for it")
		}
		claimIn(t, s, p, 5)
		if p.Queued(ctx) {
			t.Fatal("Queued once its only row was started")
		}
	})
}

func TestQueuedSaysYesOnError(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 1, 3)
	p := newProducer(s, "tasks", j)
	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	if !p.Queued(t.Context()) {
		t.Fatal("Queued = false on a closed database, want true (let the claim find out)")
	}
}
