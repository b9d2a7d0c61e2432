package dispatch

import (
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// planJob is a validated job for the stretch rule's table tests.
func planJob(t *testing.T, name string, maxPending, maxAssigned int, filter string) *engine.Job {
	t.Helper()
	re := regexp.MustCompile(filter)
	return &engine.Job{Name: name, MaxPendingTasks: maxPending, MaxAssignedWorkers: maxAssigned,
		QueueSize: 5, AcceptsWorker: re.MatchString}
}

// live is a running worker whose program can run jobs, assigned to job.
func live(id, job string, jobs ...string) store.WorkerInfo {
	return store.WorkerInfo{ID: id, Job: job, Jobs: jobs, Alive: true, Fresh: true, State: store.StateRunning}
}

func drained(w store.WorkerInfo) store.WorkerInfo {
	w.Drained = true
	return w
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
		// Rule 4: every backlogged job gets a worker before any gets two.
		{
			name:  "OneEachBeforeTwo",
			loads: []jobLoad{{job: b, pending: 20}, {job: a, pending: 20}},
			workers: []store.WorkerInfo{live("n.1", "", "a", "b"), live("n.2", "", "a", "b"),
				live("n.3", "", "a", "b")},
			want: []assignment{{worker: "n.1", to: "b"}, {worker: "n.2", to: "a"}, {worker: "n.3", to: "b"}},
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
		// A drained worker takes no part: it is neither given a job nor
		// counted as its job's, and keeps its assignment for when it is
		// undrained.
		{
			name:    "DrainedWorkerNotPlanned",
			loads:   []jobLoad{{job: a, pending: 20}, {job: b, pending: 5}},
			workers: []store.WorkerInfo{drained(live("n.1", "a", "a", "b")), drained(live("n.2", "", "a", "b")), live("n.3", "", "a", "b")},
			want:    []assignment{{worker: "n.3", to: "a"}},
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
			checkPlan(t, c.loads, c.workers, c.want)
		})
	}
}

// checkPlan plans one pass over workers and compares with want. Every plan
// must be applicable as a sequence of compare-and-set steps (each worker
// once, from where it is), and a fixed point: planning again over the
// applied plan changes nothing.
func checkPlan(t *testing.T, loads []jobLoad, ws []store.WorkerInfo, want []assignment) {
	t.Helper()
	// The dispatcher passes the registry sorted by id (n.2 < n.10).
	workers := slices.Clone(ws)
	store.SortWorkers(workers)
	got := planAssignments(loads, workers)
	if !slices.Equal(got, want) {
		t.Errorf("plan = %v\nwant   %v", fmtPlan(got), fmtPlan(want))
	}
	seen := map[string]bool{}
	for _, as := range got {
		if seen[as.worker] {
			t.Errorf("worker %s changed twice in one plan", as.worker)
		}
		seen[as.worker] = true
		for _, w := range workers {
			if w.ID == as.worker && w.Job != as.from {
				t.Errorf("worker %s: plan moves it from %q, it is on %q", w.ID, as.from, w.Job)
			}
		}
	}
	if again := planAssignments(loads, applyPlan(workers, got)); len(again) != 0 {
		t.Errorf("planning again after %v moves %v", fmtPlan(got), fmtPlan(again))
	}
}

// applyPlan returns the workers with the plan's assignments made.
func applyPlan(ws []store.WorkerInfo, plan []assignment) []store.WorkerInfo {
	out := slices.Clone(ws)
	for _, a := range plan {
		for i := range out {
			if out[i].ID == a.worker && out[i].Job == a.from {
				out[i].Job = a.to
			}
		}
	}
	return out
}

// on lists workers n.1…n.count, all on job and able to run jobs.
func on(count int, job string, jobs ...string) []store.WorkerInfo {
	out := make([]store.WorkerInfo, count)
	for i := range out {
		out[i] = live(fmt.Sprintf("n.%d", i+1), job, jobs...)
	}
	return out
}

// Jobs with a backlog share the pool (rules 4–6).
func TestPlanAssignmentsShare(t *testing.T) {
	t.Parallel()
	a := planJob(t, "a", 10, 0, ".*")
	b := planJob(t, "b", 10, 0, ".*")
	c := planJob(t, "c", 10, 0, ".*")
	capA := planJob(t, "a", 10, 3, ".*")
	capA1 := planJob(t, "a", 10, 1, ".*")
	onlyX := planJob(t, "b", 10, 0, `^x\.`)
	onlyN := planJob(t, "b", 10, 0, `^n\.`)
	for _, tc := range []struct {
		name    string
		loads   []jobLoad
		workers []store.WorkerInfo
		want    []assignment
	}{
		{
			// Both allow the whole pool; the first holds it all.
			name:    "TwoJobsTheFirstGivesHalfBack",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}},
			workers: on(4, "a", "a", "b"),
			want:    []assignment{{worker: "n.3", from: "a", to: "b"}, {worker: "n.4", from: "a", to: "b"}},
		},
		{
			name:    "TwoJobsFromAFreePool",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}},
			workers: on(4, "", "a", "b"),
			want: []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "b"},
				{worker: "n.3", to: "a"}, {worker: "n.4", to: "b"}},
		},
		{
			// An odd worker stays where it is: 2 and 1 is as fair as 1 and 2.
			name:    "OddWorkerStaysPut",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b"), live("n.2", "b", "a", "b"), live("n.3", "b", "a", "b")},
			want:    nil,
		},
		{
			name:    "ThreeJobs",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}, {job: c, pending: 1000}},
			workers: on(6, "a", "a", "b", "c"),
			want: []assignment{{worker: "n.3", from: "a", to: "c"}, {worker: "n.4", from: "a", to: "b"},
				{worker: "n.5", from: "a", to: "c"}, {worker: "n.6", from: "a", to: "b"}},
		},
		{
			// a wants one worker now; what it holds beyond goes to b.
			name:    "UnevenBacklogs",
			loads:   []jobLoad{{job: a, pending: 10}, {job: b, pending: 1000}},
			workers: on(4, "a", "a", "b"),
			want: []assignment{{worker: "n.2", from: "a", to: "b"}, {worker: "n.3", from: "a", to: "b"},
				{worker: "n.4", from: "a", to: "b"}},
		},
		{
			// b wants two: a, short of work, keeps its third.
			name:    "ShrinkingBacklogKeepsWhatNoOneWants",
			loads:   []jobLoad{{job: a, pending: 10}, {job: b, pending: 20}},
			workers: on(4, "a", "a", "b"),
			want:    []assignment{{worker: "n.3", from: "a", to: "b"}, {worker: "n.4", from: "a", to: "b"}},
		},
		{
			name:    "CapLeavesTheRestToOthers",
			loads:   []jobLoad{{job: capA1, pending: 1000}, {job: b, pending: 1000}},
			workers: on(4, "", "a", "b"),
			want: []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "b"},
				{worker: "n.3", to: "b"}, {worker: "n.4", to: "b"}},
		},
		{
			name:  "CappedJobStillShares",
			loads: []jobLoad{{job: capA, pending: 1000}, {job: b, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b"), live("n.2", "a", "a", "b"),
				live("n.3", "a", "a", "b"), live("n.4", "", "a", "b")},
			want: []assignment{{worker: "n.3", from: "a", to: "b"}, {worker: "n.4", to: "b"}},
		},
		{
			// b runs on n.* only: a keeps the m.* workers b cannot use.
			name:  "FilterMakesWorkersNonFungible",
			loads: []jobLoad{{job: a, pending: 1000}, {job: onlyN, pending: 1000}},
			workers: []store.WorkerInfo{live("m.1", "a", "a", "b"), live("m.2", "a", "a", "b"),
				live("n.1", "a", "a", "b"), live("n.2", "a", "a", "b")},
			want: []assignment{{worker: "n.1", from: "a", to: "b"}, {worker: "n.2", from: "a", to: "b"}},
		},
		{
			// x.1 is the only worker b can use: a gives that one, not y.1.
			name:    "GivesTheWorkerTheOtherCanUse",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: onlyX, pending: 1000}},
			workers: []store.WorkerInfo{live("x.1", "a", "a", "b"), live("y.1", "a", "a", "b")},
			want:    []assignment{{worker: "x.1", from: "a", to: "b"}},
		},
		{
			// A worker whose program cannot run b is not b's to take.
			name:    "ProgramListMakesWorkersNonFungible",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "a", "a"), live("n.2", "a", "a"), live("n.3", "a", "a", "b")},
			want:    []assignment{{worker: "n.3", from: "a", to: "b"}},
		},
		{
			name:    "UnknownLoadYieldsToABacklog",
			loads:   []jobLoad{{job: a, pending: unknownLoad}, {job: b, pending: 1000}},
			workers: on(4, "a", "a", "b"),
			want:    []assignment{{worker: "n.3", from: "a", to: "b"}, {worker: "n.4", from: "a", to: "b"}},
		},
		{
			// Fewer workers than jobs: at one each, the job of unknown
			// load is the one to go without.
			name:    "UnknownLoadGoesFirstWhenShort",
			loads:   []jobLoad{{job: a, pending: unknownLoad}, {job: b, pending: 1000}, {job: c, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b", "c"), live("n.2", "b", "a", "b", "c")},
			want:    []assignment{{worker: "n.1", from: "a", to: "c"}},
		},
		{
			name:    "UnknownLoadTakesNoFreeWorker",
			loads:   []jobLoad{{job: a, pending: unknownLoad}, {job: b, pending: 10}},
			workers: []store.WorkerInfo{live("n.1", "a", "a", "b"), live("n.2", "", "a", "b"), live("n.3", "", "a")},
			want:    []assignment{{worker: "n.2", to: "b"}},
		},
		{
			// Fewer workers than jobs with a backlog: one each, the first
			// jobs in definition order; c waits for a worker to come free.
			name:    "FewerWorkersThanJobs",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}, {job: c, pending: 1000}},
			workers: on(2, "", "a", "b", "c"),
			want:    []assignment{{worker: "n.1", to: "a"}, {worker: "n.2", to: "b"}},
		},
		{
			name:    "FewerWorkersThanJobsNoneHoldsTwo",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}, {job: c, pending: 1000}},
			workers: on(2, "a", "a", "b", "c"),
			want:    []assignment{{worker: "n.2", from: "a", to: "b"}},
		},
		{
			// Those that hold a worker keep it: no rotation, no flapping.
			name:    "FewerWorkersThanJobsHoldersKeep",
			loads:   []jobLoad{{job: a, pending: 1000}, {job: b, pending: 1000}, {job: c, pending: 1000}},
			workers: []store.WorkerInfo{live("n.1", "c", "a", "b", "c"), live("n.2", "b", "a", "b", "c")},
			want:    nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkPlan(t, tc.loads, tc.workers, tc.want)
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

// A job with max_running asks for no more workers than its cap keeps
// busy (by the fewest slots of a worker that runs it); the others go to
// the jobs that want them.
func TestPlanAssignmentsMaxRunning(t *testing.T) {
	t.Parallel()
	lim := planJob(t, "lim", 10, 0, ".*")
	lim.MaxRunning = 3
	b := planJob(t, "b", 10, 0, ".*")
	var workers []store.WorkerInfo
	for i := 1; i <= 6; i++ {
		w := live(fmt.Sprintf("n.%d", i), "", "lim", "b")
		w.Slots = 2
		workers = append(workers, w)
	}
	count := map[string]int{}
	for _, a := range planAssignments([]jobLoad{{job: lim, pending: 1000}, {job: b, pending: 1000}}, workers) {
		count[a.to]++
	}
	if count["lim"] != 2 || count["b"] != 4 {
		t.Fatalf("assigned %v, want 2 workers (2 slots each) to lim (max_running 3) and 4 to b", count)
	}
}
