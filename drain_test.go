package pampa

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// ranBy records which worker ran each key.
type ranBy struct {
	mu sync.Mutex
	m  map[int64][]string
}

func (r *ranBy) add(key int64, worker string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int64][]string{}
	}
	r.m[key] = append(r.m[key], worker)
}

func (r *ranBy) of(key int64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.m[key]...)
}

// A drained worker finishes the try it runs (recorded as its own), its
// reservations go to another worker, and it gets nothing more — even
// restarted under its id — while it stays registered and heartbeating.
// Undrained, it gets tasks again.
func TestDrainAndUndrain(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		gate := make(chan struct{})
		var ran ranBy
		job := oddJob()
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			ran.add(v, task.WorkerID())
			if v == 1 {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 20, job)
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
		r1, _ := e.startIDs(nil, steadyWorker(), "local.1")
		queued := `SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_start_time IS NULL`
		e.waitFor(30*time.Second, "task 1 to run on local.1 and its queue to fill", func() bool {
			return len(ran.of(1)) == 1 && e.count(queued) > 0
		})

		if err := e.client.Drain(ctx, "local.1"); err != nil {
			t.Fatal(err)
		}
		drainedAt := time.Now()
		e.waitState(10*time.Second, "local.1's reservations to be handed back", job.Name, func() bool { return e.count(queued) == 0 })
		if waited := time.Since(drainedAt); waited > 5*time.Second {
			t.Errorf("reservations handed back %s after the drain, want about a second", waited)
		}
		if w := e.worker("local.1"); !w.Drained || !w.Alive || w.State != "running" {
			t.Errorf("drained local.1 = %+v, want drained, alive and running", w)
		}
		r2, _ := e.startIDs(nil, steadyWorker(), "local.2")
		e.waitState(30*time.Second, "local.2 to run the rest", job.Name, func() bool { return e.report(job.Name).Completed == 19 })
		close(gate) // local.1's running try ends, and is recorded
		rep := e.waitJob(job.Name, 20, 30*time.Second)
		if rep.Completed != 20 {
			t.Fatalf("report = %+v, want all 20 completed", rep)
		}
		for k := int64(1); k <= 20; k++ {
			want := "local.2"
			if k == 1 {
				want = "local.1"
			}
			if got := ran.of(k); len(got) != 1 || got[0] != want {
				t.Errorf("task %d ran on %v, want once on %s", k, got, want)
			}
		}
		if w := e.rowState(1); !strings.HasPrefix(w, "local.1 |") {
			t.Errorf("task 1 = %s, want recorded by local.1", w)
		}
		r1.stop(t)
		r2.stop(t)

		// Restarted, still drained: new tasks wait.
		r1, _ = e.startIDs(nil, steadyWorker(), "local.1")
		e.waitFor(30*time.Second, "local.1 to register again", func() bool { return e.worker("local.1").Alive })
		if w := e.worker("local.1"); !w.Drained {
			t.Fatalf("local.1 restarted = %+v, want still drained", w)
		}
		for v := 21; v <= 25; v++ {
			e.exec(`INSERT INTO numbers (value) VALUES (?)`, v)
		}
		time.Sleep(500 * time.Millisecond) // many dispatcher rounds
		if rep := e.report(job.Name); rep.Pending != 5 || rep.Reserved != 0 {
			t.Fatalf("drained local.1 got tasks: report %+v", rep)
		}

		if err := e.client.Undrain(ctx, "local.1"); err != nil {
			t.Fatal(err)
		}
		e.waitJob(job.Name, 25, 30*time.Second)
		for k := int64(21); k <= 25; k++ {
			if got := ran.of(k); len(got) != 1 || got[0] != "local.1" {
				t.Errorf("task %d ran on %v, want once on the undrained local.1", k, got)
			}
		}
		if w := e.worker("local.1"); w.Drained {
			t.Errorf("undrained local.1 = %+v", w)
		}
		r1.stop(t)
		rd.stop(t)

		for _, op := range []func(context.Context, string) error{e.client.Drain, e.client.Undrain} {
			if err := op(ctx, "local.9"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "local.9") {
				t.Errorf("drain or undrain of an unregistered worker = %v, want ErrNotFound naming it", err)
			}
		}
	})
}

// worker is one worker's registry row.
func (e *testEnv) worker(id string) WorkerStatus {
	e.t.Helper()
	ws, err := e.client.Workers(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == id {
			return w
		}
	}
	e.t.Fatalf("worker %s is not in the registry: %s", id, fmt.Sprint(ws))
	return WorkerStatus{}
}
