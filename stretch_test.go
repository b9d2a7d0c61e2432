package pampa

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// planJob is a validated job for the stretch rule's table tests.
func planJob(t *testing.T, name string, maxPending, maxAssigned int, filter string) *Job {
	t.Helper()
	j := oddJob()
	j.Name, j.MaxPendingTasks, j.MaxAssignedWorkers, j.FilterWorkerID = name, maxPending, maxAssigned, filter
	j = j.WithDefaults()
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	return &j
}

// live is a running worker whose program can run jobs, assigned to job.
func live(id, job string, jobs ...string) store.WorkerInfo {
	return store.WorkerInfo{ID: id, Job: job, Jobs: jobs, Alive: true, Fresh: true, State: store.StateRunning}
}

func dead(id, job string, jobs ...string) store.WorkerInfo {
	return store.WorkerInfo{ID: id, Job: job, Jobs: jobs, State: store.StateDead}
}

func TestPlanAssignments(t *testing.T) {
	t.Parallel()
	a := planJob(t, "a", 10, 0, ".*")
	b := planJob(t, "b", 10, 0, ".*")
	capped := planJob(t, "a", 10, 2, ".*")
	firsts := planJob(t, "a", 10, 0, `\.1$`)
	for _, c := range []struct {
		name    string
		loads   []jobLoad
		workers []store.WorkerInfo
		want    []assignment
	}{
		// Rule 1.
		{
			name:    "JobGoneReleases",
			loads:   []jobLoad{{job: b, pending: 50}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b")},
			want:    []assignment{{worker: "n.1", from: "a", to: "b"}},
		},
		{
			name:    "JobGoneNoOtherWorkReleases",
			loads:   []jobLoad{{job: b, pending: 0}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b")},
			want:    []assignment{{worker: "n.1", from: "a"}},
		},
		{
			name:    "ProgramCannotRunJobReleases",
			loads:   []jobLoad{{job: a, pending: 50}},
			workers: []store.WorkerInfo{live("n.1", "a", "b")},
			want:    []assignment{{worker: "n.1", from: "a"}},
		},
		{
			name:    "FilterNoLongerMatchesReleases",
			loads:   []jobLoad{{job: firsts, pending: 50}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "a", "a")},
			want:    []assignment{{worker: "n.2", from: "a"}},
		},
		// Rule 2.
		{
			name:    "ZeroPendingReleasesAll",
			loads:   []jobLoad{{job: a, pending: 0}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "a", "a"), live("n.3", "", "a")},
			want:    []assignment{{worker: "n.1", from: "a"}, {worker: "n.2", from: "a"}},
		},
		// Rule 3.
		{
			name:  "CapReleasesLastInIDOrder",
			loads: []jobLoad{{job: capped, pending: 1000}},
			workers: []store.WorkerInfo{live("n.10", "a", "a"), live("n.2", "a", "a"),
				live("n.1", "a", "a"), live("n.3", "a", "a")},
			want: []assignment{{worker: "n.3", from: "a"}, {worker: "n.10", from: "a"}},
		},
		{
			name:    "CapLimitsNewAssignments",
			loads:   []jobLoad{{job: capped, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "", "a"), live("n.2", "", "a"), live("n.3", "", "a")},
			want:    []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "a"}},
		},
		// Rule 4.
		{
			name:  "WantIsCeilOfPendingOverMaxPending",
			loads: []jobLoad{{job: a, pending: 21}},
			workers: []store.WorkerInfo{live("n.1", "", "a"), live("n.2", "", "a"), live("n.3", "", "a"),
				live("n.4", "", "a"), live("n.5", "", "a")},
			want: []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "a"}, {worker: "n.3", to: "a"}},
		},
		{
			name:    "ExactMultiple",
			loads:   []jobLoad{{job: a, pending: 20}},
			workers: []store.WorkerInfo{live("n.1", "", "a"), live("n.2", "", "a"), live("n.3", "", "a")},
			want:    []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "a"}},
		},
		{
			name:    "OnePendingWantsOne",
			loads:   []jobLoad{{job: a, pending: 1}},
			workers: []store.WorkerInfo{live("n.1", "", "a"), live("n.2", "", "a")},
			want:    []assignment{{worker: "n.1", to: "a"}},
		},
		{
			name:    "TopsUpWhatItHolds",
			loads:   []jobLoad{{job: a, pending: 25}},
			workers: []store.WorkerInfo{live("n.1", "", "a"), live("n.2", "a", "a"), live("n.3", "", "a"), live("n.4", "", "a")},
			want:    []assignment{{worker: "n.1", to: "a"}, {worker: "n.3", to: "a"}},
		},
		{
			name:    "KeepsWorkersWhileTasksPending",
			loads:   []jobLoad{{job: a, pending: 3}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "a", "a"), live("n.3", "a", "a")},
			want:    nil,
		},
		{
			name:    "FilterRespected",
			loads:   []jobLoad{{job: firsts, pending: 100}},
			workers: []store.WorkerInfo{live("m.1", "", "a"), live("m.2", "", "a"), live("n.1", "", "a"), live("n.2", "", "a")},
			want:    []assignment{{worker: "m.1", to: "a"}, {worker: "n.1", to: "a"}},
		},
		{
			name:    "WorkerJobListRespected",
			loads:   []jobLoad{{job: a, pending: 100}},
			workers: []store.WorkerInfo{live("n.1", "", "b"), live("n.2", "", "a", "b"), live("n.3", "")},
			want:    []assignment{{worker: "n.2", to: "a"}},
		},
		{
			name:    "BusyWorkersNotTaken",
			loads:   []jobLoad{{job: a, pending: 100}, {job: b, pending: 100}},
			workers: []store.WorkerInfo{live("n.1", "b", "a", "b"), live("n.2", "", "a", "b")},
			want:    []assignment{{worker: "n.2", to: "a"}},
		},
		// Rule 5.
		{
			name:  "EarlierJobFirst",
			loads: []jobLoad{{job: b, pending: 20}, {job: a, pending: 20}},
			workers: []store.WorkerInfo{live("n.1", "", "a", "b"), live("n.2", "", "a", "b"),
				live("n.3", "", "a", "b")},
			want: []assignment{{worker: "n.1", to: "b"}, {worker: "n.2", to: "b"}, {worker: "n.3", to: "a"}},
		},
		// Dead workers.
		{
			name:    "DeadWorkersIgnored",
			loads:   []jobLoad{{job: a, pending: 20}, {job: b, pending: 0}},
			workers: []store.WorkerInfo{dead("n.1", "", "a"), dead("n.2", "a", "a"), dead("n.3", "b", "b"), live("n.4", "", "a")},
			want:    []assignment{{worker: "n.4", to: "a"}},
		},
		{
			name:  "StoppedWorkerNotAlive",
			loads: []jobLoad{{job: a, pending: 20}},
			workers: []store.WorkerInfo{{ID: "n.1", Jobs: []string{"a"}, State: store.StateStopped},
				{ID: "n.2", Jobs: []string{"a"}, State: store.StateStopping, Fresh: true}},
			want: nil,
		},
		// A worker released from one job and given to another in one pass
		// moves in a single step.
		{
			name:    "MovesInOneStep",
			loads:   []jobLoad{{job: a, pending: 0}, {job: b, pending: 15}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b"), live("n.2", "a", "a", "b"), live("n.3", "a", "a", "b")},
			want: []assignment{{worker: "n.3", from: "a"},
				{worker: "n.1", from: "a", to: "b"}, {worker: "n.2", from: "a", to: "b"}},
		},
		{
			name:    "CapReleaseFeedsLaterJob",
			loads:   []jobLoad{{job: capped, pending: 100}, {job: b, pending: 5}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b"), live("n.2", "a", "a", "b"), live("n.3", "a", "a", "b")},
			want:    []assignment{{worker: "n.3", from: "a", to: "b"}},
		},
		// A job whose backlog is unknown (its hook failed, or it has only
		// just gone quiet) keeps its workers and takes no more.
		{
			name:    "UnknownLoadKeepsWorkers",
			loads:   []jobLoad{{job: a, pending: unknownLoad}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "", "a")},
			want:    nil,
		},
		{
			name:    "UnknownLoadStillFollowsRule1",
			loads:   []jobLoad{{job: firsts, pending: unknownLoad}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "a", "a")},
			want:    []assignment{{worker: "n.2", from: "a"}},
		},
		{
			name:    "NoWorkers",
			loads:   []jobLoad{{job: a, pending: 100}},
			workers: nil,
			want:    nil,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// The dispatcher passes the registry sorted by id (n.2 < n.10).
			workers := slices.Clone(c.workers)
			store.SortWorkers(workers)
			got := planAssignments(c.loads, workers)
			if !slices.Equal(got, c.want) {
				t.Errorf("plan = %v\nwant   %v", fmtPlan(got), fmtPlan(c.want))
			}
			// Every plan is applicable as a sequence of compare-and-set
			// steps: each worker appears once, starting from where it is.
			seen := map[string]bool{}
			for _, as := range got {
				if seen[as.worker] {
					t.Errorf("worker %s changed twice in one plan", as.worker)
				}
				seen[as.worker] = true
				for _, w := range c.workers {
					if w.ID == as.worker && w.Job != as.from {
						t.Errorf("worker %s: plan moves it from %q, it is on %q", w.ID, as.from, w.Job)
					}
				}
			}
		})
	}
}

func fmtPlan(p []assignment) string {
	s := "["
	for i, a := range p {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s:%q→%q", a.worker, a.from, a.to)
	}
	return s + "]"
}

func TestPendingLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		maxPending, maxAssigned, live, want int
	}{
		{10, 0, 0, 11},
		{10, 0, 4, 41},
		{10, 2, 4, 21},
		{100, 5, 3, 301},
	} {
		j := planJob(t, "a", c.maxPending, c.maxAssigned, ".*")
		if got := pendingLimit(j, c.live); got != c.want {
			t.Errorf("pendingLimit(max_pending %d, max_assigned %d, %d live) = %d, want %d",
				c.maxPending, c.maxAssigned, c.live, got, c.want)
		}
	}
}

// Two jobs: the workers move from the first to the second once it has
// nothing pending; the assignments live in pampa_workers, so they survive
// closing the client and a new dispatcher.
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
		// job_a wants 6 workers: it takes both, and job_b waits.
		e.waitFor(30*time.Second, "both workers on job_a", func() bool {
			a := assigned(e.client)
			return a["local.1"] == "job_a" && a["local.2"] == "job_a"
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
		// Workers of job_a's whole run were the same two.
		for _, rec := range logA.snapshot() {
			if rec.worker != "local.1" && rec.worker != "local.2" {
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
