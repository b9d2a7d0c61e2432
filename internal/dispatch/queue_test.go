package dispatch

import (
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// queueRun drives the reserve step on a clock of its own: each round,
// the clock moves by every, then every worker takes what take says out
// of its queue, and the dispatcher tops the queues up again.
type queueRun struct {
	t     *testing.T
	s     *store.Store
	j     *engine.Job
	svc   *Service
	clock time.Time
}

func newQueueRun(t *testing.T, s *store.Store, rows, queueSize, queueMax int, workers ...string) *queueRun {
	j := enginetest.NewJob(t, s, "tasks", rows, 3)
	j.QueueSize, j.QueueSizeMax = queueSize, queueMax
	for _, w := range workers {
		register(t, s, w, "tasks", 0)
	}
	r := &queueRun{t: t, s: s, j: j, svc: newService(s, notify.NewBus(), j), clock: time.Unix(1_000_000, 0)}
	r.svc.now = func() time.Time { return r.clock }
	reserve(t, r.svc)
	return r
}

// round lets the clock move by every, each worker take take(worker, its
// queue) of its queued rows, then runs the reserve step; it returns the
// queues after it.
func (r *queueRun) round(every time.Duration, take func(worker string, queued int) int) map[string]int {
	r.t.Helper()
	r.clock = r.clock.Add(every)
	for w, n := range queues(r.t, r.s, r.j) {
		if k := min(take(w, n), n); k > 0 {
			enginetest.Claim(r.t, r.s, r.j, w, k)
		}
	}
	reserve(r.t, r.svc)
	return queues(r.t, r.s, r.j)
}

func all(_ string, queued int) int { return queued }

// A worker that empties its queue every 10 ms is handed more each round,
// up to queue_size_max and never past it; once it slows down to a task
// every 100 ms, its queue shrinks back to queue_size.
func TestQueueRuleFollowsTheWorkersPace(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		r := newQueueRun(t, s, 20_000, 5, 60, "n.1")
		longest, roundsToMax := 0, 0
		for i := range 300 {
			q := r.round(10*time.Millisecond, all)
			if q["n.1"] > 60 {
				t.Fatalf("round %d: queue %d, over queue_size_max 60", i, q["n.1"])
			}
			if longest = max(longest, q["n.1"]); longest == 60 && roundsToMax == 0 {
				roundsToMax = i
			}
		}
		if longest != 60 {
			t.Fatalf("a worker emptying its queue every 10 ms got at most %d queued, want queue_size_max 60", longest)
		}
		t.Logf("queue_size_max reached in round %d (%d ms)", roundsToMax, roundsToMax*10)
		// Slow now: one task every 100 ms. The queue runs down and is
		// topped up again only to queue_size once the rate has fallen.
		var q map[string]int
		for range 100 {
			q = r.round(100*time.Millisecond, func(string, int) int { return 1 })
		}
		if q["n.1"] != 5 {
			t.Errorf("queue after 10 s at 10 tasks a second: %d, want queue_size 5", q["n.1"])
		}
	})
}

// Tasks taken slower than queue_size per horizon leave every queue at
// queue_size, so that long tasks spread evenly; a fast worker beside a
// slow one is the only one given more.
func TestQueueRuleKeepsSlowWorkersAtQueueSize(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		r := newQueueRun(t, s, 20_000, 5, 60, "fast", "slow")
		for i := range 200 {
			// 2 tasks per 50 ms is 40 a second: 4 per 100 ms horizon,
			// under queue_size.
			q := r.round(50*time.Millisecond, func(w string, n int) int {
				if w == "fast" {
					return n
				}
				return 2
			})
			if q["slow"] > 5 {
				t.Fatalf("round %d: the slow worker holds %d, over queue_size 5", i, q["slow"])
			}
			if i == 199 && q["fast"] <= 5 {
				t.Errorf("the fast worker holds %d after 10 s, want more than queue_size", q["fast"])
			}
		}
	})
}

// queue_size_max equal to queue_size keeps the original's fixed queue.
func TestQueueRuleOffAtQueueSizeMax(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		r := newQueueRun(t, s, 3_000, 5, 5, "n.1")
		for i := range 200 {
			if q := r.round(time.Millisecond, all); q["n.1"] != 5 {
				t.Fatalf("round %d: queue %d, want 5", i, q["n.1"])
			}
		}
	})
}
