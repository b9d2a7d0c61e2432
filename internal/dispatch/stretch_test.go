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
