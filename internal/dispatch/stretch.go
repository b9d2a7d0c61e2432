package dispatch

import (
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Elastic assignment ("stretch"): which workers serve which job.
//
// The rule, applied by the leading dispatcher each maintenance pass, over
// live workers only (running, heartbeat fresh, not drained); docs/elastic-assignment.md
// walks through an example.
//
//  1. A worker stays assigned to a job only while the job exists, the
//     worker's program can run it and its id matches filter_worker_id.
//  2. A job with no pending task for the dispatcher's ReleaseAfter (10s)
//     releases all its workers; a shorter quiet spell keeps them.
//  3. A job never holds more than max_assigned_workers (0 = no cap); the
//     extra ones, last in id order, are released.
//  4. A job with pending tasks wants ceil(pending / max_pending_tasks)
//     workers, at least one, at most its cap. Jobs with a backlog share
//     the pool: workers are dealt one at a time to the job that holds
//     fewest so far (ties: the job holding more now, then definition
//     order), so every backlogged job gets one before any gets two. A job
//     takes first the workers it already holds, then free ones (each the
//     one fewest other backlogged jobs could use, then in id order), then
//     a worker another job can spare: one it holds beyond its want, or
//     one it can give while keeping at least as many as the taker then
//     has. The giver gives, among the workers the taker can run, the one
//     fewest other backlogged jobs could use, then its last in id order. When the pool has fewer workers than jobs with a
//     backlog, the jobs that hold one keep it, the rest wait for the
//     first worker to come free: no rotation.
//  5. Fairness is among jobs that can use the same worker (filters and
//     programs make workers non-fungible). After the deal, no job short
//     of its want is left while a worker it can run is free, or kept
//     beyond its holder's want, or held by a job with two or more workers
//     than it; where a worker only it can use was dealt to another job
//     that has a worker to use instead, the two are swapped. A job whose
//     backlog shrinks keeps the workers beyond its want that no other job
//     asks for, so it is finished by the workers already on it.
//  6. A job whose backlog is unknown (its hook failed, or it has only
//     just gone quiet) keeps its workers and takes none, but ranks after
//     backlogged jobs: it gives one up to a job with a backlog as long as
//     it keeps as many as that job minus one.
//
// The plan depends only on the loads and the current assignment, and an
// assignment the rule produced is a fixed point of it: passes with nothing
// changed move nothing. Pending counts are bounded (see CountPending), so
// the pass costs the same on a table of a thousand rows or a billion.

// jobLoad is a job's demand as the stretch rule sees it.
type jobLoad struct {
	job     *engine.Job
	pending int // unknownLoad when it could not be counted
}

// unknownLoad marks a job whose backlog could not be counted (its pending
// or selecting hook failed, or it has just gone quiet).
const unknownLoad = -1

// assignment is one change to make in the registry.
type assignment struct {
	worker   string
	from, to string // "" = unassigned
}

// planner holds one pass of the rule. Jobs and workers are indexes into
// loads and the live workers (sorted by id); -1 is "no job".
type planner struct {
	loads      []jobLoad
	ws         []store.WorkerInfo
	can        [][]bool // [job][worker]: may the job take the worker
	contention []int    // per worker: how many backlogged jobs could take it
	cur        []int    // per worker: its job after rules 1–3
	alloc      []int    // per worker: its job in the plan
	want       []int    // per job
	held       []int    // per job: workers held after rules 1–3
	count      []int    // per job: workers dealt so far
	ownLeft    []int    // per job: held workers not yet dealt
}

// planAssignments applies the stretch rule. workers must be sorted by id
// order; the result lists releases before assignments, each in id order.
func planAssignments(loads []jobLoad, workers []store.WorkerInfo) []assignment {
	p := newPlanner(loads, workers)
	for p.deal(); p.repair(); {
		p.deal() // a repair may leave a job short of workers still free
	}
	for w, k := range p.cur { // rule 5: extras no other job asked for
		if p.alloc[w] < 0 && k >= 0 {
			p.alloc[w] = k
		}
	}
	return p.changes()
}

// newPlanner applies rules 1–3 and works out each job's want.
func newPlanner(loads []jobLoad, workers []store.WorkerInfo) *planner {
	p := &planner{loads: loads}
	for _, w := range workers {
		if w.Dispatchable() {
			p.ws = append(p.ws, w)
		}
	}
	nj, nw := len(loads), len(p.ws)
	p.can, p.contention = make([][]bool, nj), make([]int, nw)
	p.cur, p.alloc = make([]int, nw), make([]int, nw)
	p.want, p.held, p.count, p.ownLeft = make([]int, nj), make([]int, nj), make([]int, nj), make([]int, nj)
	byName := map[string]int{}
	for j, l := range loads {
		byName[l.job.Name] = j
		p.can[j] = make([]bool, nw)
		for w := range p.ws {
			p.can[j][w] = l.job.RunsOn(p.ws[w])
			if p.can[j][w] && l.pending > 0 {
				p.contention[w]++
			}
		}
	}
	for w, wi := range p.ws {
		p.cur[w], p.alloc[w] = -1, -1
		j, ok := byName[wi.Job]
		if wi.Job == "" || !ok || !p.can[j][w] || loads[j].pending == 0 {
			continue // rules 1 and 2 (an unknown load keeps its workers)
		}
		if c := loads[j].job.MaxAssignedWorkers; c > 0 && p.held[j] >= c {
			continue // rule 3: workers come in id order, the last go
		}
		p.cur[w] = j
		p.held[j]++
	}
	for j, l := range loads {
		p.ownLeft[j] = p.held[j]
		switch {
		case l.pending > 0:
			p.want[j] = max(1, (l.pending+l.job.MaxPendingTasks-1)/l.job.MaxPendingTasks)
			if c := l.job.MaxAssignedWorkers; c > 0 {
				p.want[j] = min(p.want[j], c)
			}
			if c := p.runningCap(j); c > 0 {
				p.want[j] = min(p.want[j], c)
			}
		case l.pending == unknownLoad:
			p.want[j] = p.held[j]
		}
	}
	return p
}

// runningCap is how many workers a job with max_running can keep busy:
// enough slots for its cap, counting the fewest slots a worker that runs
// it has (0: no cap).
func (p *planner) runningCap(j int) int {
	m := p.loads[j].job.MaxRunning
	if m == 0 {
		return 0
	}
	slots := 0
	for w, wi := range p.ws {
		if p.can[j][w] && (slots == 0 || max(wi.Slots, 1) < slots) {
			slots = max(wi.Slots, 1)
		}
	}
	return (m + max(slots, 1) - 1) / max(slots, 1)
}

// deal hands out workers one at a time (rules 4 and 6).
func (p *planner) deal() {
	done := make([]bool, len(p.loads))
	for {
		j := p.neediest(done)
		if j < 0 {
			return
		}
		w := p.pick(j)
		if w < 0 {
			done[j] = true
			continue
		}
		p.give(w, j)
	}
}

func (p *planner) give(w, j int) {
	if k := p.cur[w]; k >= 0 && p.alloc[w] < 0 {
		p.ownLeft[k]--
	}
	if k := p.alloc[w]; k >= 0 {
		p.count[k]--
	}
	p.alloc[w] = j
	p.count[j]++
}

// neediest is the job that deals next: fewest dealt, backlogged before
// unknown, more held now, earlier in definition order.
func (p *planner) neediest(done []bool) int {
	best := -1
	for j := range p.loads {
		if done[j] || p.count[j] >= p.want[j] {
			continue
		}
		if best < 0 || p.before(j, best) {
			best = j
		}
	}
	return best
}

func (p *planner) before(a, b int) bool {
	if p.count[a] != p.count[b] {
		return p.count[a] < p.count[b]
	}
	if ua, ub := p.loads[a].pending < 0, p.loads[b].pending < 0; ua != ub {
		return ub
	}
	return p.held[a] > p.held[b] // then definition order: a < b
}

// pick chooses the worker job j takes next, or -1: one it holds, then a
// free one (both least contested first, then in id order), then one
// another job can spare.
func (p *planner) pick(j int) int {
	free, own := -1, -1
	for w := range p.ws {
		if p.alloc[w] >= 0 || !p.can[j][w] {
			continue
		}
		switch p.cur[w] {
		case j:
			if own < 0 || p.contention[w] < p.contention[own] {
				own = w
			}
		case -1:
			if free < 0 || p.contention[w] < p.contention[free] {
				free = w
			}
		}
	}
	switch {
	case own >= 0:
		return own
	case p.loads[j].pending <= 0: // an unknown load takes no more
		return -1
	case free >= 0:
		return free
	}
	return p.spare(j)
}

// spare is the worker another job gives up to j, or -1. A job gives up
// first what it holds beyond its want, and otherwise only while it is
// left with at least as many as j then has (a job of unknown load: one
// fewer); the worker it gives is the one fewest other backlogged jobs
// could use, then its last in id order.
func (p *planner) spare(j int) int {
	best, bestExtra, bestPot := -1, 0, 0
	for w := len(p.ws) - 1; w >= 0; w-- {
		k := p.cur[w]
		if k < 0 || k == j || p.alloc[w] >= 0 || !p.can[j][w] {
			continue
		}
		pot := p.count[k] + p.ownLeft[k] // what k would end with
		extra := pot - p.want[k]
		if extra <= 0 && pot <= p.keeps(k, j) {
			continue
		}
		switch {
		case best < 0, extra > bestExtra, extra == bestExtra && pot > bestPot,
			extra == bestExtra && pot == bestPot && p.contention[w] < p.contention[best]:
			best, bestExtra, bestPot = w, extra, pot
		}
	}
	return best
}

// keeps is how many workers job k keeps before it gives one to job j: as
// many as j then has, or, of unknown load, one fewer.
func (p *planner) keeps(k, j int) int {
	if p.loads[k].pending < 0 {
		return p.count[j]
	}
	return p.count[j] + 1
}

// repair finds, for each short backlogged job j, a worker dealt to
// another job k that j can use, and moves it when k can take instead a
// worker still undealt (k keeps its count) or k holds more than it keeps
// (rule 5). It catches what dealing one at a time missed: a job that took
// a worker only another could use, or grew after j ran out of choices.
// It reports whether it moved any.
func (p *planner) repair() bool {
	moved := false
	for j := range p.loads {
		if p.loads[j].pending <= 0 || p.count[j] >= p.want[j] {
			continue
		}
		steal, swap, instead := -1, -1, -1
		for w := len(p.ws) - 1; w >= 0; w-- {
			k := p.alloc[w]
			if k < 0 || k == j || !p.can[j][w] {
				continue
			}
			if e := p.undealtFor(k); e >= 0 && swap < 0 {
				swap, instead = w, e
			}
			if p.count[k] > p.keeps(k, j) && (steal < 0 || p.count[k] > p.count[p.alloc[steal]]) {
				steal = w
			}
		}
		switch {
		case swap >= 0:
			p.give(instead, p.alloc[swap])
			p.give(swap, j)
		case steal >= 0:
			p.give(steal, j)
		default:
			continue
		}
		moved = true
	}
	return moved
}

// undealtFor is a worker not dealt yet that job k may take (pick's order
// without taking from others), or -1.
func (p *planner) undealtFor(k int) int {
	free := -1
	for w := range p.ws {
		if p.alloc[w] >= 0 || !p.can[k][w] {
			continue
		}
		if p.cur[w] == k {
			return w
		}
		if p.cur[w] < 0 && free < 0 && p.loads[k].pending > 0 {
			free = w
		}
	}
	return free
}

// changes lists the plan's moves: releases first, then assignments (a
// worker released and reassigned moves in one step).
func (p *planner) changes() []assignment {
	var releases, assigns []assignment
	for w, wi := range p.ws {
		to := ""
		if j := p.alloc[w]; j >= 0 {
			to = p.loads[j].job.Name
		}
		switch {
		case to == wi.Job:
		case to == "":
			releases = append(releases, assignment{worker: wi.ID, from: wi.Job})
		default:
			assigns = append(assigns, assignment{worker: wi.ID, from: wi.Job, to: to})
		}
	}
	return append(releases, assigns...)
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
