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
// reservations go to the other worker, and it gets nothing more — even
// restarted under its id — while it stays registered and heartbeating.
// Undrained, it gets tasks again.
func TestDrainAndUndrain(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		gate := make(chan struct{})
		var ran ranBy
		job := oddJob()
		// Queues fixed at queue_size: with the queue rule, the fast
		// worker's queue grows, and when rows are scarce a hand-out splits
		// them by what each queue lacks, which can leave the blocked
		// worker none to hold.
		job.QueueSizeMax = job.QueueSize
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
		e := newEnv(t, driver, 30, job)
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
		rw, _ := e.startIDs(nil, steadyWorker(), "local.1", "local.2")
		// The worker running task 1 is drained; the other one runs all the
		// rest, then waits while the first still has a queue.
		e.waitState(30*time.Second, "task 1 to run, the rest done but one worker's queue", job.Name, func() bool {
			rep := e.report(job.Name)
			return len(ran.of(1)) == 1 && rep.Pending == 0 && rep.Running == 1 && rep.Reserved > 0 && rep.Completed+rep.Reserved == 29
		})
		drained := ran.of(1)[0]
		other := map[string]string{"local.1": "local.2", "local.2": "local.1"}[drained]
		queued, err := queryInts(ctx, e.client.DB(), rebindFor(t, driver,
			`SELECT value FROM numbers WHERE odd_checking_reservation_id = ? AND odd_checking_start_time IS NULL`), drained)
		if err != nil || len(queued) == 0 {
			t.Fatalf("%s's queue = %v, %v; want some tasks", drained, queued, err)
		}

		if err := e.client.Drain(ctx, drained); err != nil {
			t.Fatal(err)
		}
		drainedAt := time.Now()
		e.waitState(30*time.Second, "the queue handed back and run by the other worker", job.Name, func() bool {
			return e.report(job.Name).Completed == 29
		})
		if waited := time.Since(drainedAt); waited > 10*time.Second {
			t.Errorf("the queue was handed on %s after the drain, want about a second", waited)
		}
		for _, k := range queued {
			if got := ran.of(k.(int64)); len(got) != 1 || got[0] != other {
				t.Errorf("queued task %d ran on %v, want once on %s", k, got, other)
			}
		}
		if w := e.worker(drained); !w.Drained || !w.Alive || w.State != "running" {
			t.Errorf("drained %s = %+v, want drained, alive and running", drained, w)
		}
		close(gate) // the drained worker's running try ends, and is recorded
		if rep := e.waitJob(job.Name, 30, 30*time.Second); rep.Completed != 30 {
			t.Fatalf("report = %+v, want all 30 completed", rep)
		}
		if got := ran.of(1); len(got) != 1 || !strings.HasPrefix(e.rowState(1), drained+" |") {
			t.Errorf("task 1 ran on %v, row %s; want once, recorded by %s", got, e.rowState(1), drained)
		}
		rw.stop(t)

		// Restarted, still drained: new tasks wait.
		rw, _ = e.startIDs(nil, steadyWorker(), drained)
		e.waitFor(30*time.Second, drained+" to register again", func() bool { return e.worker(drained).Alive })
		if w := e.worker(drained); !w.Drained {
			t.Fatalf("%s restarted = %+v, want still drained", drained, w)
		}
		for v := 31; v <= 35; v++ {
			e.exec(`INSERT INTO numbers (value) VALUES (?)`, v)
		}
		time.Sleep(500 * time.Millisecond) // many dispatcher rounds
		if rep := e.report(job.Name); rep.Pending != 5 || rep.Reserved != 0 {
			t.Fatalf("the drained worker got tasks: report %+v", rep)
		}

		if err := e.client.Undrain(ctx, drained); err != nil {
			t.Fatal(err)
		}
		e.waitJob(job.Name, 35, 30*time.Second)
		for k := int64(31); k <= 35; k++ {
			if got := ran.of(k); len(got) != 1 || got[0] != drained {
				t.Errorf("task %d ran on %v, want once on the undrained %s", k, got, drained)
			}
		}
		if w := e.worker(drained); w.Drained {
			t.Errorf("undrained %s = %+v", drained, w)
		}
		rw.stop(t)
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
