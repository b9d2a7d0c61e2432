package pampa

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startNode runs a node dispatcher of node "local" with n workers.
func (e *testEnv) startNode(opts NodeOptions) (*running, *NodeDispatcher) {
	e.t.Helper()
	d, err := e.client.NewNodeDispatcher("local", opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel}
	r.goRun(ctx, d.ID(), d.Run)
	e.t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r, d
}

func nodeOptions(workers, concurrency int) NodeOptions {
	o := NodeOptions{WorkerOptions: steadyWorker(), Workers: workers}
	o.Concurrency = concurrency
	return o
}

// The node dispatcher runs every task through its workers: each row
// records the worker that ran it, once, and the registry holds the node
// dispatcher (as one entry with its workers' slots) and each worker.
func TestNodeDispatcherRunsEveryTask(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		var log execLog
		job := oddJob()
		job.Process = log.wrap(isOdd)
		e := newEnv(t, driver, 600, job)
		rn, d := e.startNode(nodeOptions(4, 2))
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
		rep := e.waitJob("search_odd_numbers", 600, 60*time.Second)
		if rep.Completed != 600 || rep.Failed != 0 {
			t.Fatalf("report = %+v, want 600 completed", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id NOT IN ('local.1', 'local.2', 'local.3', 'local.4')
			OR odd_checking_reservation_times <> 1 OR odd_checking_success <> TRUE`); n != 0 {
			t.Fatalf("%d rows not recorded as run once by a worker of the node\n%s", n, e.dump("search_odd_numbers"))
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = TRUE`); n != 300 {
			t.Errorf("odd numbers = %d, want 300", n)
		}
		log.checkNoOverlap(t)
		ran := map[string]int{}
		for _, r := range log.snapshot() {
			ran[r.worker]++
		}
		if len(ran) != 4 {
			t.Errorf("tasks ran by %v, want all 4 workers of the node", ran)
		}
		ws, err := e.client.Workers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, w := range ws {
			switch {
			case w.ID == "local.0":
				seen++
				if !w.IsNode() || w.Members != 4 || w.Slots != 8 || !w.Alive {
					t.Errorf("node dispatcher's entry: %+v", w)
				}
			case w.Via == "local.0":
				seen++
				if w.Slots != 2 || !w.Alive || w.Job != "search_odd_numbers" && w.Job != "" {
					t.Errorf("worker entry: %+v", w)
				}
			}
		}
		if seen != 5 {
			t.Errorf("registry has %d entries of the node, want 5: %+v", seen, ws)
		}
		if got := d.Stats().Succeeded.Load(); got != 600 {
			t.Errorf("Stats().Succeeded = %d, want 600", got)
		}
		rd.stop(t)
		rn.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id LIKE 'local.%' AND state <> 'stopped'`); n != 0 {
			t.Errorf("%d registry rows of the node not stopped after Run returned", n)
		}
	})
}

// A worker whose goroutine dies (a starter hook panics) has its tasks
// relaunched at once, not after a heartbeat lapses, and is started
// again: every task ends succeeded, none ran twice at once.
func TestNodeDispatcherWorkerDies(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		var log execLog
		var panics atomic.Int64
		job := oddJob()
		job.Process = log.wrap(func(ctx context.Context, task *Task) error {
			time.Sleep(5 * time.Millisecond)
			return isOdd(ctx, task)
		})
		job.Hooks.Starter = func(ctx context.Context, q Querier, task *Task) error {
			if v, _ := task.Int64("value"); v == 7 && task.Try() == 1 {
				panics.Add(1)
				panic("starter hook blew up")
			}
			return nil
		}
		e := newEnv(t, driver, 120, job)
		opts := nodeOptions(3, 1)
		rn, d := e.startNode(opts)
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
		e.waitJob("search_odd_numbers", 120, 60*time.Second)
		rd.stop(t)
		rn.stop(t)
		if panics.Load() != 1 {
			t.Fatalf("the starter hook panicked %d times, want once", panics.Load())
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success <> TRUE OR odd_checking_success IS NULL`); n != 0 {
			t.Fatalf("%d tasks not succeeded\n%s", n, e.dump("search_odd_numbers"))
		}
		if n := e.count(`SELECT odd_checking_reservation_times FROM numbers WHERE value = 7`); n != 2 {
			t.Errorf("task 7 took %d tries, want 2 (relaunched after its worker died)", n)
		}
		log.checkNoOverlap(t)
		if d.Stats().Succeeded.Load() != 120 {
			t.Errorf("Stats().Succeeded = %d, want 120", d.Stats().Succeeded.Load())
		}
	})
}

// Stopping the node dispatcher stops its workers: gracefully, the tries
// running end and are recorded and the rows not started are handed back;
// killed, nothing more is written, and the next node dispatcher of the
// node relaunches what the killed one left running as it registers.
func TestNodeDispatcherStops(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		started := make(chan int64, 100)
		var slow atomic.Bool
		slow.Store(true)
		job := oddJob()
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			select {
			case started <- v:
			default:
			}
			if slow.Load() {
				select {
				case <-time.After(300 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 40, job)
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())

		// Graceful: the running tries finish and are recorded.
		rn, _ := e.startNode(nodeOptions(2, 1))
		recvWithin(t, started, 30*time.Second, "a task to start")
		rn.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_start_time IS NOT NULL AND odd_checking_end_time IS NULL`); n != 0 {
			t.Fatalf("%d tasks left running after a graceful stop\n%s", n, e.dump("search_odd_numbers"))
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.0'`); n != 0 {
			t.Fatalf("%d rows still reserved for the stopped node dispatcher", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id IN ('local.0', 'local.1', 'local.2') AND state = 'stopped'`); n != 3 {
			t.Fatalf("%d of 3 registry rows of the node stopped", n)
		}
		done := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE`)
		if done == 0 {
			t.Fatal("no task recorded: the running tries' outcomes were lost in the graceful stop")
		}

		// Killed: running tries are left started under the workers' ids.
		rk, d := e.startNode(nodeOptions(2, 1))
		for len(started) > 0 {
			<-started
		}
		recvWithin(t, started, 30*time.Second, "a task to start")
		d.Kill()
		rk.wg.Wait() // Run returns at once, leaving its running rows to be relaunched
		e.waitFor(30*time.Second, "the killed node's tries to be left running", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_start_time IS NOT NULL AND odd_checking_end_time IS NULL`) > 0
		})
		// A new node dispatcher relaunches them at once (the heartbeat
		// TTL here is 30s) and finishes the job.
		slow.Store(false)
		rn3, _ := e.startNode(nodeOptions(2, 1))
		e.waitJob("search_odd_numbers", 40, 20*time.Second)
		rn3.stop(t)
		rd.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE`); n != 40 {
			t.Fatalf("%d of 40 tasks succeeded\n%s", n, e.dump("search_odd_numbers"))
		}
	})
}

// An operator's cancel reaches a try run by a node dispatcher's worker
// (read for all the node's workers in one statement), and a drained
// worker of the node gets no new task while its neighbours go on.
func TestNodeDispatcherCancelAndDrain(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		var ran ranBy
		held := make(chan string, 1)
		var drainedAt atomic.Int64 // unix ns; tasks started by the drained worker after it
		var drainedID atomic.Value
		drainedID.Store("")
		var lateRuns atomic.Int64
		job := oddJob()
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			ran.add(v, task.WorkerID())
			if w := drainedID.Load().(string); w == task.WorkerID() && time.Now().UnixNano() > drainedAt.Load()+int64(500*time.Millisecond) {
				lateRuns.Add(1)
			}
			if v == 3 {
				held <- task.WorkerID()
				<-ctx.Done() // runs until cancelled
				return context.Cause(ctx)
			}
			time.Sleep(20 * time.Millisecond)
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 400, job)
		rn, _ := e.startNode(nodeOptions(3, 1))
		rd, _ := e.startIDs(steadyDispatcher(), steadyWorker())
		w := recvWithin(t, held, 30*time.Second, "task 3 to run")
		if _, err := e.client.Cancel(ctx, "search_odd_numbers", int64(3)); err != nil {
			t.Fatal(err)
		}
		e.waitFor(20*time.Second, "task 3's try to end after its cancel", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE value = 3 AND odd_checking_end_time IS NOT NULL`) == 1
		})
		// Drain the worker that ran task 3: after a beat or two it gets
		// nothing more, and the others finish the job.
		drainedID.Store(w)
		drainedAt.Store(time.Now().UnixNano())
		if err := e.client.Drain(ctx, w); err != nil {
			t.Fatal(err)
		}
		e.waitJob("search_odd_numbers", 400, 60*time.Second)
		rd.stop(t)
		rn.stop(t)
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 3 AND odd_checking_success = FALSE`); n != 1 {
			t.Errorf("task 3 not failed after its cancel\n%s", e.dump("search_odd_numbers"))
		}
		if runs := ran.of(3); len(runs) != 1 {
			t.Errorf("task 3 ran %d times (%v), want once: a cancelled task is not run again", len(runs), runs)
		}
		if n := lateRuns.Load(); n != 0 {
			t.Errorf("the drained worker %s started %d tasks more than half a second after its drain", w, n)
		}
	})
}

// Bad options are refused with the node, the field and the value.
func TestNewNodeDispatcherErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, DriverSQLite, 1)
	for _, tc := range []struct {
		node string
		opts NodeOptions
		want string
	}{
		{"elsewhere", NodeOptions{}, `node "elsewhere": no such node is defined`},
		{"local", NodeOptions{Workers: 9}, `node dispatcher local: workers = 9: node "local" has max_workers = 8`},
		{"local", NodeOptions{Workers: -1}, `workers = -1`},
		{"local", NodeOptions{WorkerOptions: WorkerOptions{Concurrency: -2}}, `node dispatcher local: concurrency = -2: must be at least 1`},
	} {
		_, err := e.client.NewNodeDispatcher(tc.node, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewNodeDispatcher(%q, %+v): error %v, want one mentioning %q", tc.node, tc.opts, err, tc.want)
		}
	}
	// A node whose workers can run no job: the worker and the reason.
	bare := &Cluster{Database: databaseFor(t, DriverSQLite)}
	if err := bare.AddNode(Node{Name: "local", MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	j := oddJob()
	j.Process = nil
	if err := bare.AddJob(j); err != nil {
		t.Fatal(err)
	}
	createNumbers(t, bare.Database, 1)
	if _, err := Setup(context.Background(), bare, SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), bare)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.NewNodeDispatcher("local", NodeOptions{}); err == nil || !strings.Contains(err.Error(), "worker local.1: no job it can run: search_odd_numbers (no processing function registered)") {
		t.Errorf("a node of workers with no job: error %v", err)
	}
}
