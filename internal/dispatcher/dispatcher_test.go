package dispatcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// Run is a goroutine of the caller's: none may outlive the tests.
func TestMain(m *testing.M) { enginetest.Main(m) }

func newLoop(s *store.Store, id string, jobs ...*engine.Job) *Loop {
	return New(Options{Store: s, Bus: notify.NewBus(), Jobs: jobs, Log: enginetest.Discard(), ID: id,
		Delay: 10 * time.Millisecond, MaintenanceEvery: 0, LeaseTTL: time.Minute, WorkerTTL: time.Minute,
		ReleaseAfter: time.Hour, ExpiryGrace: time.Minute, Retryable: func(error) bool { return false }})
}

func registerFree(t *testing.T, s *store.Store, id string) {
	t.Helper()
	w := store.WorkerInfo{ID: id, Node: "n", Instance: "i-" + id, Jobs: []string{"tasks"}}
	if err := s.RegisterWorker(t.Context(), w, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// One round of the leader runs every step in order: it takes the lease,
// assigns the free worker to the job with a backlog (stretch, after the
// maintenance pass judged the registry), then fills its queue (reserve);
// a second dispatcher on the same database stays a standby and does
// nothing, until the leader resigns.
func TestRoundLeadsAssignsAndReserves(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 20, 3) // queue_size 5
		registerFree(t, s, "n.1")
		leader, standby := newLoop(s, "d1", j), newLoop(s, "d2", j)
		st, err := leader.RunOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Leading || st.Dispatch.Assigned != 1 || st.Dispatch.Reserved != j.QueueSize {
			t.Fatalf("leader's round = %+v, want leading, 1 assignment, %d reserved", st, j.QueueSize)
		}
		w, err := s.Worker(t.Context(), "n.1", time.Minute)
		if err != nil || w.Job != "tasks" {
			t.Fatalf("n.1 = %+v (%v), want assigned to tasks", w, err)
		}
		st2, err := standby.RunOnce(t.Context())
		if err != nil || st2.Leading || st2.Dispatch.Reserved != 0 {
			t.Fatalf("standby's round = %+v (%v), want nothing done", st2, err)
		}
		if q, _ := j.SQL.QueueLengths(t.Context(), s.DB); q["n.1"] != j.QueueSize {
			t.Fatalf("queue of n.1 = %d, want %d (the standby must not reserve)", q["n.1"], j.QueueSize)
		}
		leader.Resign()
		if st2, err = standby.RunOnce(t.Context()); err != nil || !st2.Leading {
			t.Fatalf("after the leader resigned, standby's round = %+v (%v), want leading", st2, err)
		}
	})
}

// Just after the dispatcher's own outage, stale heartbeats say more about
// the outage than about the workers: for a worker TTL, maintenance
// declares nobody dead, while reserving goes on.
func TestNoDeathsJustAfterAnOutage(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 5, 3)
		registerFree(t, s, "n.1")
		enginetest.Exec(t, s, `UPDATE pampa_workers SET heartbeat_at = `+s.Dialect.Ago()+` WHERE id = ?`, s.Dialect.AgoArg(2*time.Minute), "n.1")
		l := newLoop(s, "d1", j)
		l.opts.Retryable = func(error) bool { return true }
		l.logFailure(errRetryable{}) // as Run does after a round that could not reach the database
		st, err := l.RunOnce(t.Context())
		if err != nil || st.Maintenance.DeadMarked != 0 {
			t.Fatalf("round just after an outage = %+v (%v), want nobody declared dead", st, err)
		}
		l.dbTrouble = time.Now().Add(-2 * time.Minute) // the outage is a worker TTL old
		l.lastMaintenance = time.Time{}
		if st, err = l.RunOnce(t.Context()); err != nil || st.Maintenance.DeadMarked != 1 {
			t.Fatalf("round a TTL after the outage = %+v (%v), want n.1 declared dead", st, err)
		}
	})
}

type errRetryable struct{}

func (errRetryable) Error() string { return "connection refused" }

// Run returns when its context ends, having resigned the lease.
func TestRunResignsOnStop(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 5, 3)
		l := newLoop(s, "d1", j)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		enginetest.Eventually(t, 10*time.Second, "the loop to lead", func() bool {
			ls, err := s.CurrentLease(t.Context(), LeaseName)
			return err == nil && ls.Holder == "d1"
		})
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
		if ls, err := s.CurrentLease(t.Context(), LeaseName); err != nil || ls.Holder != "" {
			t.Fatalf("lease after Run returned = %+v (%v), want resigned", ls, err)
		}
	})
}
