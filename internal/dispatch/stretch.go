package dispatch

import (
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Elastic assignment ("stretch"): which workers serve which job.
//
// The rule, applied by the leading dispatcher each maintenance pass, over
// live workers only (running, heartbeat fresh):
//
//  1. A worker stays assigned to a job only while the job exists, the
//     worker's program can run it and its id matches filter_worker_id.
//  2. A job with no pending task for the dispatcher's ReleaseAfter (10s)
//     releases all its workers; a shorter quiet spell keeps them.
//  3. A job never holds more than max_assigned_workers (0 = no cap); the
//     extra ones, last in id order, are released.
//  4. A job with pending tasks wants ceil(pending / max_pending_tasks)
//     workers, at least one, at most its cap. While it holds fewer, it
//     takes free workers (unassigned, able to run it, matching its filter)
//     in id order. It does not give workers back while tasks are pending,
//     so a shrinking backlog is finished by the workers already on it.
//  5. Jobs are served in definition order: an earlier job takes free
//     workers first.
//
// Pending counts are bounded (see CountPending), so the pass costs the same
// on a table of a thousand rows or a billion.

// jobLoad is a job's demand as the stretch rule sees it.
type jobLoad struct {
	job     *engine.Job
	pending int // unknownLoad when it could not be counted
}

// unknownLoad marks a job whose backlog could not be counted (its pending
// or selecting hook failed): its workers stay, and it gets no more.
const unknownLoad = -1

// assignment is one change to make in the registry.
type assignment struct {
	worker   string
	from, to string // "" = unassigned
}

// planAssignments applies the stretch rule. workers must be sorted by id
// order; the result lists releases before assignments.
func planAssignments(loads []jobLoad, workers []store.WorkerInfo) []assignment {
	byJob := map[string]*jobLoad{}
	for i := range loads {
		byJob[loads[i].job.Name] = &loads[i]
	}
	current := map[string]string{} // worker → job after the plan
	var releases, assigns []assignment
	release := func(w store.WorkerInfo) {
		releases = append(releases, assignment{worker: w.ID, from: w.Job})
		current[w.ID] = ""
	}
	held := map[string][]store.WorkerInfo{}
	for _, w := range workers {
		if !w.Alive {
			continue
		}
		current[w.ID] = w.Job
		if w.Job == "" {
			continue
		}
		l, ok := byJob[w.Job]
		if !ok || !l.job.RunsOn(w) || l.pending == 0 { // an unknown load keeps its workers
			release(w) // rules 1 and 2
			continue
		}
		held[w.Job] = append(held[w.Job], w)
	}
	for _, l := range loads { // rule 3
		hs := held[l.job.Name]
		if c := l.job.MaxAssignedWorkers; c > 0 && len(hs) > c {
			for _, w := range hs[c:] {
				release(w)
			}
			held[l.job.Name] = hs[:c]
		}
	}
	for _, l := range loads { // rules 4 and 5
		if l.pending <= 0 {
			continue
		}
		want := max(1, (l.pending+l.job.MaxPendingTasks-1)/l.job.MaxPendingTasks)
		if c := l.job.MaxAssignedWorkers; c > 0 {
			want = min(want, c)
		}
		have := len(held[l.job.Name])
		for _, w := range workers {
			if have >= want {
				break
			}
			if !w.Alive || current[w.ID] != "" || !l.job.RunsOn(w) {
				continue
			}
			assigns = append(assigns, assignment{worker: w.ID, from: w.Job, to: l.job.Name})
			current[w.ID] = l.job.Name
			have++
		}
	}
	// A worker released and reassigned in one pass moves in one step.
	out := make([]assignment, 0, len(releases)+len(assigns))
	moved := map[string]bool{}
	for _, a := range assigns {
		moved[a.worker] = true
	}
	for _, r := range releases {
		if !moved[r.worker] {
			out = append(out, r)
		}
	}
	return append(out, assigns...)
}

// pendingLimit is how far the stretch pass counts a job's backlog: enough
// to tell how many workers it wants, no further.
func pendingLimit(j *engine.Job, liveWorkers int) int {
	n := liveWorkers
	if j.MaxAssignedWorkers > 0 {
		n = min(n, j.MaxAssignedWorkers)
	}
	return j.MaxPendingTasks*max(n, 1) + 1
}
