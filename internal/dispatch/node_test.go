package dispatch

import (
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
)

// TestReserveForNode: a node dispatcher's entry is reserved for like a
// worker, with a queue for each of its members; its members, which take
// their rows from it, get none of their own.
func TestReserveForNode(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 100, 3) // queue_size 5
		node := store.WorkerInfo{ID: "n.0", Node: "n", Instance: "i-node", Jobs: []string{"tasks"}, Slots: 4, Members: 4}
		if err := s.RegisterWorker(t.Context(), node, ttl); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"n.1", "n.2", "n.3", "n.4"} {
			m := store.WorkerInfo{ID: id, Node: "n", Instance: "i-" + id, Jobs: []string{"tasks"}, Slots: 1, Via: "n.0"}
			if err := s.RegisterWorker(t.Context(), m, ttl); err != nil {
				t.Fatal(err)
			}
		}
		register(t, s, "p.1", "tasks", 0)
		// Settled (beaten since they registered) and idle: the hand-out
		// starts a plain worker's first rows itself, never a node's.
		enginetest.Exec(t, s, `UPDATE pampa_workers SET started_at = `+s.Dialect.Ago(), s.Dialect.AgoArg(time.Second))
		svc := newService(s, nil, j)
		var res Result
		workers, err := s.Workers(t.Context(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Stretch(t.Context(), workers, &res); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"n.1", "n.2"} {
			if w, _ := s.Worker(t.Context(), id, ttl); w.Job != "" {
				t.Fatalf("the stretch step assigned %s, a node dispatcher's worker, to %q", id, w.Job)
			}
		}
		if w, _ := s.Worker(t.Context(), "n.0", ttl); w.Job != "tasks" {
			t.Fatalf("the node dispatcher's entry is assigned %q, want tasks", w.Job)
		}
		reserve(t, svc)
		q := queues(t, s, j)
		if q["n.0"] != 4*5 || len(q) > 2 || q["p.1"] > 5 {
			t.Fatalf("queues after a round: %v; want n.0: 20 (4 members × queue_size 5), p.1 at most 5, none for the members", q)
		}
		if n := enginetest.Exec(t, s, `UPDATE `+j.SQL.Spec().Table.Quoted()+` SET payload = payload WHERE rid = 'n.0' AND started IS NOT NULL`); n != 0 {
			t.Fatalf("%d rows reserved for the node dispatcher were started by the hand-out: nobody would run them", n)
		}
	})
}
