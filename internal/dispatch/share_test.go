package dispatch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pampa-go/pampa/internal/store"
)

// simulate applies the stretch plan pass after pass until it moves
// nothing, and returns the workers then and the passes that moved some.
func simulate(t *testing.T, loads []jobLoad, ws []store.WorkerInfo) ([]store.WorkerInfo, int) {
	t.Helper()
	ws = slices.Clone(ws)
	store.SortWorkers(ws)
	for passes := 0; passes < 10; passes++ {
		plan := planAssignments(loads, ws)
		if len(plan) == 0 {
			return ws, passes
		}
		ws = applyPlan(ws, plan)
	}
	t.Fatalf("the plan still moves workers after 10 passes: %v", ws)
	return nil, 0
}

func holding(ws []store.WorkerInfo) map[string]int {
	n := map[string]int{}
	for _, w := range ws {
		if w.Alive && w.Job != "" {
			n[w.Job]++
		}
	}
	return n
}

// Backlogs come and go; after each change the plan settles in one pass,
// and the pool is shared among the jobs with a backlog.
func TestStretchSimulation(t *testing.T) {
	t.Parallel()
	a := planJob(t, "a", 10, 0, ".*")
	b := planJob(t, "b", 10, 0, ".*")
	c := planJob(t, "c", 10, 0, ".*")
	ws := on(6, "", "a", "b", "c")
	steps := []struct {
		name                string
		pa, pb, pc          int
		wantA, wantB, wantC int
	}{
		{"OnlyAHasWork", 1000, 0, 0, 6, 0, 0},
		{"BArrives", 1000, 1000, 0, 3, 3, 0},
		{"CArrives", 1000, 1000, 1000, 2, 2, 2},
		{"BShrinksToOneWorker", 1000, 5, 1000, 3, 1, 2},
		// Quiet, b keeps its worker: c, short, holds more than b would.
		{"BQuiet", 1000, unknownLoad, 1000, 3, 1, 2},
		// No one wants b's worker: a and c finish on what they hold.
		{"BDoneOthersShrink", 5, 0, 5, 3, 0, 2},
		{"CDoneAOnly", 1000, 0, 0, 6, 0, 0},
	}
	for _, st := range steps {
		loads := []jobLoad{{job: a, pending: st.pa}, {job: b, pending: st.pb}, {job: c, pending: st.pc}}
		var passes int
		ws, passes = simulate(t, loads, ws)
		if passes > 1 {
			t.Errorf("%s: took %d passes to settle, want 1", st.name, passes)
		}
		n := holding(ws)
		if n["a"] != st.wantA || n["b"] != st.wantB || n["c"] != st.wantC {
			t.Errorf("%s: a %d, b %d, c %d workers; want %d, %d, %d", st.name, n["a"], n["b"], n["c"], st.wantA, st.wantB, st.wantC)
		}
	}
}

// Random pools, filters, caps and loads: one pass reaches a fixed point,
// and it is fair by rule 5.
func TestStretchFairOnRandomPools(t *testing.T) {
	t.Parallel()
	filters := []string{".*", `^m\.`, `^n\.`, `\.1$`}
	for seed := range 3000 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		var loads []jobLoad
		names := []string{"a", "b", "c", "d"}[:2+r.IntN(3)]
		for _, name := range names {
			pending := []int{unknownLoad, 0, 1 + r.IntN(10), 1 + r.IntN(100), 1000}[r.IntN(5)]
			loads = append(loads, jobLoad{job: planJob(t, name, 10, r.IntN(4), filters[r.IntN(len(filters))]), pending: pending})
		}
		var ws []store.WorkerInfo
		for i := range 2 + r.IntN(10) {
			id := fmt.Sprintf("%s.%d", []string{"m", "n"}[r.IntN(2)], 1+i)
			var jobs []string
			for _, name := range names {
				if r.IntN(5) > 0 {
					jobs = append(jobs, name)
				}
			}
			job := ""
			if k := r.IntN(len(names) + 1); k < len(names) {
				job = names[k]
			}
			ws = append(ws, live(id, job, jobs...))
		}
		final, passes := simulate(t, loads, ws)
		if passes > 1 {
			t.Errorf("seed %d: %d passes to settle", seed, passes)
		}
		checkFair(t, seed, loads, ws, final)
	}
}

// checkFair asserts rules 1, 3, 5 and 6 of the stretch rule on the
// workers after planning (before: as they were).
func checkFair(t *testing.T, seed int, loads []jobLoad, before, after []store.WorkerInfo) {
	t.Helper()
	n := holding(after)
	byName := map[string]jobLoad{}
	for _, l := range loads {
		byName[l.job.Name] = l
		if c := l.job.MaxAssignedWorkers; c > 0 && n[l.job.Name] > c {
			t.Errorf("seed %d: %s holds %d workers, over its cap %d", seed, l.job.Name, n[l.job.Name], c)
		}
	}
	was := map[string]string{}
	for _, w := range before {
		was[w.ID] = w.Job
	}
	for _, w := range after {
		if w.Job == "" {
			continue
		}
		if l, ok := byName[w.Job]; !ok || !l.job.RunsOn(w) || l.pending == 0 {
			t.Errorf("seed %d: %s left on %s (%+v)", seed, w.ID, w.Job, l)
		} else if l.pending < 0 && was[w.ID] != w.Job {
			t.Errorf("seed %d: %s given to %s, whose load is unknown", seed, w.ID, w.Job)
		}
	}
	for _, l := range loads {
		j := l.job.Name
		if l.pending <= 0 {
			continue
		}
		want := max(1, (l.pending+9)/10)
		if c := l.job.MaxAssignedWorkers; c > 0 {
			want = min(want, c)
		}
		if n[j] >= want {
			continue
		}
		for _, w := range after {
			if w.Job == j || !l.job.RunsOn(w) {
				continue
			}
			k := byName[w.Job]
			switch {
			case w.Job == "":
				t.Errorf("seed %d: %s short (%d of %d) while %s is free", seed, j, n[j], want, w.ID)
			case n[w.Job] >= n[j]+2:
				t.Errorf("seed %d: %s short with %d while %s holds %d, %s among them", seed, j, n[j], w.Job, n[w.Job], w.ID)
			case k.pending > 0 && n[w.Job] > max(1, (k.pending+9)/10):
				t.Errorf("seed %d: %s short while %s keeps %s beyond its want", seed, j, w.Job, w.ID)
			}
		}
	}
}

// The worked example of docs/elastic-assignment.md, pass by pass.
func TestStretchDocExample(t *testing.T) {
	t.Parallel()
	render := planJob(t, "render", 10, 0, ".*")
	mail := planJob(t, "mail", 10, 2, ".*")
	thumbs := planJob(t, "thumbs", 10, 0, `^gpu\.`)
	ids := []string{"cpu.1", "cpu.2", "cpu.3", "gpu.1", "gpu.2"}
	var ws []store.WorkerInfo
	for _, id := range ids {
		ws = append(ws, live(id, "", "render", "mail", "thumbs"))
	}
	for i, p := range []struct {
		render, mail, thumbs int
		want                 string // jobs of cpu.1 … gpu.2
	}{
		{1000, 0, 0, "render render render render render"},
		{1000, 500, 300, "render render mail mail thumbs"},
		{1000, 5, 300, "render render mail thumbs thumbs"},
		{1000, 5, unknownLoad, "render render mail thumbs thumbs"},
		{1000, 0, 0, "render render render render render"},
	} {
		loads := []jobLoad{{job: render, pending: p.render}, {job: mail, pending: p.mail}, {job: thumbs, pending: p.thumbs}}
		ws = applyPlan(ws, planAssignments(loads, ws))
		var got []string
		for _, w := range ws {
			got = append(got, w.Job)
		}
		if s := fmt.Sprint(got); s != "["+p.want+"]" {
			t.Errorf("pass %d: %v = %s, want [%s]", i+1, ids, s, p.want)
		}
	}
}
