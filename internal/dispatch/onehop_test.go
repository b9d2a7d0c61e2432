package dispatch

import (
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
)

// registerSlots records a live worker with its slot count, assigned to
// job "tasks", registered a second before its last heartbeat (settled:
// past its start-up) unless fresh.
func registerSlots(t *testing.T, s *store.Store, id string, slots int, fresh bool) {
	t.Helper()
	w := store.WorkerInfo{ID: id, Node: "n", Instance: "i-" + id, Jobs: []string{"tasks"}, Slots: slots}
	if err := s.RegisterWorker(t.Context(), w, ttl); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	if ok, err := s.Assign(t.Context(), id, "", "tasks"); err != nil || !ok {
		t.Fatalf("assign %s: %v, %v", id, ok, err)
	}
	if !fresh {
		enginetest.Exec(t, s, `UPDATE pampa_workers SET started_at = `+s.Dialect.Ago()+` WHERE id = ?`, s.Dialect.AgoArg(time.Second), id)
	}
}

// startedBy counts the rows started under each worker, by their try.
func startedBy(t *testing.T, s *store.Store, j *engine.Job, ids int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for id := 1; id <= ids; id++ {
		if r := enginetest.Get(t, s, j, id); r.Started && !r.Ended {
			if r.Tries != 1 {
				t.Fatalf("row %d started with try %d, want 1", id, r.Tries)
			}
			out[r.RID.String]++
		}
	}
	return out
}

// The hand-out starts the rows of a settled worker that holds nothing, up
// to its slots, in its own transaction (one hop), and queues none beside
// them (the worker could claim those first); a worker that holds a row,
// registered no slot count, or has not beaten its heartbeat since it
// registered gets its rows only reserved.
func TestReserveStartsForIdleWorkers(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		const rows = 40
		j := enginetest.NewJob(t, s, "tasks", rows, 3) // queue_size 5
		registerSlots(t, s, "idle", 2, false)
		registerSlots(t, s, "busy", 2, false)
		registerSlots(t, s, "old", 0, false)
		registerSlots(t, s, "new", 2, true)
		enginetest.Reserve(t, s, j, "busy", 40)
		enginetest.Claim(t, s, j, "busy", 1) // running: busy holds a row
		svc := newService(s, notify.NewBus(), j)
		reserve(t, svc)
		started := startedBy(t, s, j, rows)
		if started["idle"] != 2 || started["busy"] != 1 || started["old"] != 0 || started["new"] != 0 {
			t.Fatalf("started by worker %v, want idle's 2 slots, busy's own 1, none for old and new", started)
		}
		if q := queues(t, s, j); q["idle"] != 0 || q["busy"] != 5 || q["old"] != 5 || q["new"] != 5 {
			t.Fatalf("queues %v, want none queued for idle, busy, old and new at 5", q)
		}
		// Holding its started rows, idle is topped up as any worker, and
		// gets no more started.
		reserve(t, svc)
		if started, q := startedBy(t, s, j, rows), queues(t, s, j); started["idle"] != 2 || q["idle"] != 5 {
			t.Fatalf("idle holds %d started and %d queued, want its 2 and a queue of 5", started["idle"], q["idle"])
		}
	})
}
