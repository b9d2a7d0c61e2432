package pampa

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Two jobs share the workers, and the second takes them all once the
// first has nothing pending; the assignments live in pampa_workers, so
// they survive closing the client and a new dispatcher.
func TestStretchMovesWorkersAndPersists(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 30
		var logA, logB execLog
		gateA := make(chan struct{})
		jobA := withProcess(logA.wrap(func(ctx context.Context, task *Task) error {
			<-gateA
			return isOdd(ctx, task)
		}))
		jobA.Name, jobA.MaxPendingTasks, jobA.MaxAssignedWorkers = "job_a", 5, 0
		// job_b's rows are not dispatched until the test allows it, so its
		// workers stay assigned to it with its whole backlog pending.
		var allowB atomic.Bool
		jobB := submitOddJob(logB.wrap(nil))
		jobB.Name, jobB.FilterWorkerID, jobB.MaxPendingTasks, jobB.MaxAssignedWorkers = "job_b", ".*", 5, 0
		jobB.Hooks = Hooks{Allowing: func(context.Context, Querier, string) (bool, error) { return allowB.Load(), nil }}
		e := newEnv(t, driver, rows, jobA, jobB)
		wopts := steadyWorker()
		assigned := func(c *Client) map[string]string {
			t.Helper()
			ws, err := c.store.Workers(context.Background(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, w := range ws {
				out[w.ID] = w.Job
			}
			return out
		}
		// Both workers register before the dispatcher's first pass.
		r, _ := e.startIDs(nil, wopts, "local.1", "local.2")
		e.waitFor(30*time.Second, "both workers to register", func() bool { return len(assigned(e.client)) == 2 })
		rd, _ := e.startIDs(steadyDispatcher(), wopts)
		// Both want 6 workers: they share the two.
		e.waitFor(30*time.Second, "one worker on each job", func() bool {
			a := assigned(e.client)
			return a["local.1"] == "job_a" && a["local.2"] == "job_b"
		})
		close(gateA)
		e.waitJob("job_a", rows, 60*time.Second)
		e.waitFor(30*time.Second, "both workers to move to job_b", func() bool {
			a := assigned(e.client)
			return a["local.1"] == "job_b" && a["local.2"] == "job_b"
		})
		if rep := e.report("job_b"); rep.Pending != rows {
			t.Fatalf("job_b = %+v before it was allowed to run", rep)
		}
		// job_a's whole run was on its share of the pool.
		for _, rec := range logA.snapshot() {
			if rec.worker != "local.1" {
				t.Errorf("job_a ran on %s", rec.worker)
			}
		}
		rd.stop(t)
		r.stop(t)
		if err := e.client.Close(); err != nil {
			t.Fatal(err)
		}

		c2, err := Open(context.Background(), e.cluster)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c2.Close() })
		if a := assigned(c2); a["local.1"] != "job_b" || a["local.2"] != "job_b" {
			t.Fatalf("after reopening, assignments = %v, want both on job_b", a)
		}
		// A new dispatcher, before the workers are back, keeps them.
		d := c2.NewDispatcher(*steadyDispatcher())
		for range 3 {
			if _, err := d.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if a := assigned(c2); a["local.1"] != "job_b" || a["local.2"] != "job_b" {
			t.Fatalf("a new dispatcher changed the assignments: %v", a)
		}
		d.Resign()
		e2 := &testEnv{t: t, cluster: e.cluster, client: c2}
		allowB.Store(true)
		r2, ws := e2.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		if rep := e2.waitJob("job_b", rows, 60*time.Second); rep.Failed != 0 {
			t.Errorf("job_b: %+v, want every task succeeded", rep)
		}
		// Once job_b has nothing pending, its workers are released.
		e2.waitFor(30*time.Second, "the workers to be released", func() bool {
			a := assigned(c2)
			return a["local.1"] == "" && a["local.2"] == ""
		})
		r2.stop(t)
		if ws["local.1"].Stats().Succeeded.Load() == 0 || ws["local.2"].Stats().Succeeded.Load() == 0 {
			t.Errorf("after the restart, job_b ran on local.1 %d times and local.2 %d times; want both",
				ws["local.1"].Stats().Succeeded.Load(), ws["local.2"].Stats().Succeeded.Load())
		}
	})
}

// Rule 2 over time: a job with nothing pending keeps its workers through a
// quiet spell shorter than ReleaseAfter, then releases them.
func TestStretchReleaseAfterQuietSpell(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, 5)
		ctx := context.Background()
		now := e.client.store.Dialect.Now()
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 1,
			odd_checking_reservation_time = ` + now + `, odd_checking_start_time = ` + now + `,
			odd_checking_end_time = ` + now + `, odd_checking_success = TRUE`)
		if err := e.client.store.RegisterWorker(ctx, store.WorkerInfo{ID: "local.1", Node: "local", Instance: "x",
			Jobs: []string{"search_odd_numbers"}}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.client.store.Assign(ctx, "local.1", "", "search_odd_numbers"); err != nil || !ok {
			t.Fatalf("assign: %v %v", ok, err)
		}
		const quiet = 400 * time.Millisecond
		opts := *steadyDispatcher()
		opts.ReleaseAfter, opts.MaintenanceEvery = quiet, time.Millisecond
		d := e.client.NewDispatcher(opts)
		job := func() string {
			w, err := e.client.store.Worker(ctx, "local.1", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return w.Job
		}
		start := time.Now()
		if _, err := d.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if j := job(); j != "search_odd_numbers" {
			t.Fatalf("released at once (job %q); a quiet spell should keep the worker", j)
		}
		e.waitFor(10*time.Second, "the worker to be released", func() bool {
			if _, err := d.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			return job() == ""
		})
		if held := time.Since(start); held < quiet {
			t.Errorf("released after %s, before the %s quiet spell was over", held, quiet)
		}
	})
}

// Two jobs that both allow the whole pool make progress at once: while
// every task of job_a that starts is held up, job_b runs to its end on the
// worker it got, instead of waiting for job_a's backlog to go.
func TestStretchTwoJobsProgressTogether(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 20
		gate := make(chan struct{})
		var startedA atomic.Int64
		jobA := withProcess(func(ctx context.Context, task *Task) error {
			startedA.Add(1)
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			return isOdd(ctx, task)
		})
		jobA.Name, jobA.MaxPendingTasks, jobA.MaxAssignedWorkers = "job_a", 5, 0
		jobB := submitOddJob(isOdd)
		jobB.Name, jobB.FilterWorkerID, jobB.MaxPendingTasks, jobB.MaxAssignedWorkers = "job_b", ".*", 5, 0
		jobB.Hooks = Hooks{}
		e := newEnv(t, driver, rows, jobA, jobB)
		var once atomic.Bool
		open := func() {
			if once.CompareAndSwap(false, true) {
				close(gate)
			}
		}
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		t.Cleanup(open) // runs before the workers are stopped
		if rep := e.waitJob("job_b", rows, 60*time.Second); rep.Failed != 0 {
			t.Errorf("job_b = %+v, want every task succeeded", rep)
		}
		if rep := e.report("job_a"); startedA.Load() == 0 || rep.Completed != 0 {
			t.Fatalf("job_a: %d tasks started, report %+v; want some held up in flight", startedA.Load(), rep)
		}
		open()
		if rep := e.waitJob("job_a", rows, 60*time.Second); rep.Failed != 0 {
			t.Errorf("job_a = %+v, want every task succeeded", rep)
		}
		r.stop(t)
	})
}
