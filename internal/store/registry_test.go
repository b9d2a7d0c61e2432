package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/proc"
)

func testWorker(id, instance string) WorkerInfo {
	node := id
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		node = id[:i]
	}
	return WorkerInfo{ID: id, Node: node, Host: "host-" + instance, PID: 4242, Version: "v1.2.3",
		Instance: instance, Jobs: []string{"render", "mail"}}
}

func mustRegister(t *testing.T, s *Store, w WorkerInfo) {
	t.Helper()
	if err := s.RegisterWorker(context.Background(), w, time.Minute); err != nil {
		t.Fatalf("RegisterWorker(%s): %v", w.ID, err)
	}
}

func mustWorker(t *testing.T, s *Store, id string) WorkerInfo {
	t.Helper()
	w, err := s.Worker(context.Background(), id, time.Minute)
	if err != nil {
		t.Fatalf("Worker(%s): %v", id, err)
	}
	return w
}

// ageHeartbeat moves a worker's last heartbeat d into the past.
func ageHeartbeat(t *testing.T, s *Store, id string, d time.Duration) {
	t.Helper()
	if n := mustExec(t, s, `UPDATE pampa_workers SET heartbeat_at = `+s.Dialect.Ago()+` WHERE id = ?`,
		s.Dialect.AgoArg(d), id); n != 1 {
		t.Fatalf("age heartbeat of %s: %d rows", id, n)
	}
}

func TestRegisterWorker(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		w := testWorker("local.1", "inst-a")
		mustRegister(t, s, w)
		got := mustWorker(t, s, "local.1")
		if got.Node != "local" || got.Host != "host-inst-a" || got.PID != 4242 || got.Version != "v1.2.3" ||
			got.Instance != "inst-a" || !slices.Equal(got.Jobs, []string{"render", "mail"}) ||
			got.Job != "" || got.State != StateRunning || !got.Alive || !got.Fresh {
			t.Fatalf("Worker(local.1) = %+v", got)
		}
		if got.LastBeat < -time.Second || got.LastBeat > 5*time.Second || got.Uptime < -time.Second || got.Uptime > 5*time.Second {
			t.Fatalf("heartbeat age %.2fs, uptime %.2fs; want about 0", got.LastBeat.Seconds(), got.Uptime.Seconds())
		}

		// A second process under the same id while the first lives.
		w2 := testWorker("local.1", "inst-b")
		w2.PID, w2.Host = 777, "other-host"
		err := s.RegisterWorker(ctx, w2, time.Minute)
		if !errors.Is(err, ErrWorkerRunning) {
			t.Fatalf("second live registration: error = %v, want ErrWorkerRunning", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "pid 4242") || !strings.Contains(msg, "host-inst-a") || !strings.Contains(msg, "local.1") {
			t.Fatalf("error %q does not name the holder's id, pid and host", msg)
		}
		if got := mustWorker(t, s, "local.1"); got.Instance != "inst-a" || got.PID != 4242 {
			t.Fatalf("refused registration changed the row: %+v", got)
		}
		// A stopping worker still holds its id.
		if err := s.SetWorkerState(ctx, "local.1", "inst-a", StateStopping); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterWorker(ctx, w2, time.Minute); !errors.Is(err, ErrWorkerRunning) {
			t.Fatalf("registration over a stopping worker: error = %v, want ErrWorkerRunning", err)
		}
		// A worker with no jobs listed.
		w3 := testWorker("local.3", "inst-c")
		w3.Jobs = nil
		mustRegister(t, s, w3)
		if got := mustWorker(t, s, "local.3"); len(got.Jobs) != 0 {
			t.Fatalf("Jobs = %q, want none", got.Jobs)
		}
	})
}

func TestRegisterWorkerTakeover(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		gone func(t *testing.T, s *Store)
	}{
		{"HeartbeatLapsed", func(t *testing.T, s *Store) { ageHeartbeat(t, s, "local.1", time.Hour) }},
		{"Stopped", func(t *testing.T, s *Store) {
			if err := s.SetWorkerState(t.Context(), "local.1", "inst-a", StateStopped); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forEachDialect(t, func(t *testing.T, s *Store) {
				ctx := t.Context()
				mustRegister(t, s, testWorker("local.1", "inst-a"))
				if ok, err := s.Assign(ctx, "local.1", "", "render"); err != nil || !ok {
					t.Fatalf("Assign = %v, %v", ok, err)
				}
				ageHeartbeat(t, s, "local.1", 10*time.Minute) // uptime check below
				c.gone(t, s)

				w := testWorker("local.1", "inst-b")
				w.PID, w.Host, w.Version = 999, "new-host", "v2"
				mustRegister(t, s, w)
				got := mustWorker(t, s, "local.1")
				if got.Instance != "inst-b" || got.PID != 999 || got.Host != "new-host" || got.Version != "v2" ||
					got.State != StateRunning || !got.Alive {
					t.Fatalf("after takeover = %+v", got)
				}
				if got.Job != "render" {
					t.Fatalf("assignment after takeover = %q, want render kept", got.Job)
				}
				if got.LastBeat > 5*time.Second || got.Uptime > 5*time.Second {
					t.Fatalf("heartbeat age %.1fs, uptime %.1fs after takeover; want fresh", got.LastBeat.Seconds(), got.Uptime.Seconds())
				}
				// The replaced process is fenced out.
				if _, ok, err := s.Heartbeat(ctx, "local.1", "inst-a"); err != nil || ok {
					t.Fatalf("old instance's Heartbeat = ok %v, err %v; want ok=false", ok, err)
				}
				if job, ok, err := s.Heartbeat(ctx, "local.1", "inst-b"); err != nil || !ok || job != "render" {
					t.Fatalf("new instance's Heartbeat = %q, %v, %v", job, ok, err)
				}
			})
		})
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustRegister(t, s, testWorker("local.1", "inst-a"))
		job, ok, err := s.Heartbeat(ctx, "local.1", "inst-a")
		if err != nil || !ok || job != "" {
			t.Fatalf("Heartbeat unassigned = %q, %v, %v", job, ok, err)
		}
		if ok, err := s.Assign(ctx, "local.1", "", "render"); err != nil || !ok {
			t.Fatalf("Assign = %v, %v", ok, err)
		}
		ageHeartbeat(t, s, "local.1", time.Hour)
		job, ok, err = s.Heartbeat(ctx, "local.1", "inst-a")
		if err != nil || !ok || job != "render" {
			t.Fatalf("Heartbeat = %q, %v, %v; want render, true", job, ok, err)
		}
		if w := mustWorker(t, s, "local.1"); w.LastBeat > 5*time.Second || !w.Alive {
			t.Fatalf("after Heartbeat: age %.1fs, alive %v; want refreshed", w.LastBeat.Seconds(), w.Alive)
		}

		if _, ok, err := s.Heartbeat(ctx, "local.1", "stale-instance"); err != nil || ok {
			t.Fatalf("Heartbeat with a stale instance = ok %v, err %v; want ok=false", ok, err)
		}
		if _, ok, err := s.Heartbeat(ctx, "nobody.1", "inst-a"); err != nil || ok {
			t.Fatalf("Heartbeat of an unknown worker = ok %v, err %v; want ok=false", ok, err)
		}
		// Stopping still heartbeats; stopped and dead do not.
		if err := s.SetWorkerState(ctx, "local.1", "inst-a", StateStopping); err != nil {
			t.Fatal(err)
		}
		if job, ok, err := s.Heartbeat(ctx, "local.1", "inst-a"); err != nil || !ok || job != "render" {
			t.Fatalf("Heartbeat while stopping = %q, %v, %v", job, ok, err)
		}
		ageHeartbeat(t, s, "local.1", time.Hour)
		if ids, err := s.MarkDead(ctx, time.Minute); err != nil || !slices.Equal(ids, []string{"local.1"}) {
			t.Fatalf("MarkDead = %v, %v", ids, err)
		}
		if _, ok, err := s.Heartbeat(ctx, "local.1", "inst-a"); err != nil || ok {
			t.Fatalf("Heartbeat after MarkDead = ok %v, err %v; want ok=false", ok, err)
		}
		mustRegister(t, s, testWorker("local.2", "inst-x"))
		if err := s.SetWorkerState(ctx, "local.2", "inst-x", StateStopped); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Heartbeat(ctx, "local.2", "inst-x"); err != nil || ok {
			t.Fatalf("Heartbeat after stopping = ok %v, err %v; want ok=false", ok, err)
		}
	})
}

func TestSetWorkerStateFenced(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustRegister(t, s, testWorker("local.1", "inst-a"))
		if err := s.SetWorkerState(ctx, "local.1", "other", StateStopped); err != nil {
			t.Fatal(err)
		}
		if w := mustWorker(t, s, "local.1"); w.State != StateRunning {
			t.Fatalf("another instance stopped the worker: state %q", w.State)
		}
	})
}

func TestMarkDead(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for _, id := range []string{"a.1", "a.2", "a.3", "a.4", "a.5"} {
			mustRegister(t, s, testWorker(id, "i-"+id))
			if ok, err := s.Assign(ctx, id, "", "render"); err != nil || !ok {
				t.Fatalf("Assign(%s) = %v, %v", id, ok, err)
			}
		}
		// a.1 running, stale. a.2 running, fresh. a.3 stopping, stale.
		// a.4 stopped, stale. a.5 running, heartbeat 30s ago (within 1m).
		ageHeartbeat(t, s, "a.1", time.Hour)
		if err := s.SetWorkerState(ctx, "a.3", "i-a.3", StateStopping); err != nil {
			t.Fatal(err)
		}
		ageHeartbeat(t, s, "a.3", time.Hour)
		if err := s.SetWorkerState(ctx, "a.4", "i-a.4", StateStopped); err != nil {
			t.Fatal(err)
		}
		ageHeartbeat(t, s, "a.4", time.Hour)
		ageHeartbeat(t, s, "a.5", 30*time.Second)

		ids, err := s.MarkDead(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"a.1", "a.3"}) {
			t.Fatalf("MarkDead = %v, want [a.1 a.3]", ids)
		}
		want := map[string]struct{ state, job string }{
			"a.1": {StateDead, ""}, "a.2": {StateRunning, "render"}, "a.3": {StateDead, ""},
			"a.4": {StateStopped, "render"}, "a.5": {StateRunning, "render"},
		}
		for id, w := range want {
			got := mustWorker(t, s, id)
			if got.State != w.state || got.Job != w.job {
				t.Errorf("%s: state %q job %q, want %q %q", id, got.State, got.Job, w.state, w.job)
			}
		}
		if ids, err := s.MarkDead(ctx, time.Minute); err != nil || len(ids) != 0 {
			t.Fatalf("second MarkDead = %v, %v; want none", ids, err)
		}
		// A dead worker's id can be registered again.
		mustRegister(t, s, testWorker("a.1", "i-new"))
		if got := mustWorker(t, s, "a.1"); got.State != StateRunning || got.Job != "" {
			t.Fatalf("re-registered dead worker = %+v", got)
		}
	})
}

func TestAssign(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustRegister(t, s, testWorker("local.1", "inst-a"))
		steps := []struct {
			from, to string
			ok       bool
			job      string
		}{
			{"", "render", true, "render"},
			{"", "mail", false, "render"},    // someone assigned it meanwhile
			{"mail", "", false, "render"},    // wrong from
			{"render", "mail", true, "mail"}, // move
			{"mail", "", true, ""},           // unassign
			{"", "", true, ""},               // no-op on an unassigned worker
			{"render", "mail", false, ""},    // stale from
		}
		for i, st := range steps {
			ok, err := s.Assign(ctx, "local.1", st.from, st.to)
			if err != nil {
				t.Fatal(err)
			}
			if ok != st.ok {
				t.Fatalf("step %d: Assign(%q → %q) = %v, want %v", i, st.from, st.to, ok, st.ok)
			}
			if got := mustWorker(t, s, "local.1").Job; got != st.job {
				t.Fatalf("step %d: job = %q, want %q", i, got, st.job)
			}
		}
		if ok, err := s.Assign(ctx, "nobody.1", "", "render"); err != nil || ok {
			t.Fatalf("Assign of an unknown worker = %v, %v", ok, err)
		}
	})
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for _, id := range []string{"local.10", "local.2", "beta.1", "local.1", "alpha.3"} {
			mustRegister(t, s, testWorker(id, "i-"+id))
		}
		if err := s.SetWorkerState(ctx, "local.2", "i-local.2", StateStopping); err != nil {
			t.Fatal(err)
		}
		if err := s.SetWorkerState(ctx, "alpha.3", "i-alpha.3", StateStopped); err != nil {
			t.Fatal(err)
		}
		ageHeartbeat(t, s, "beta.1", time.Hour)

		ws, err := s.Workers(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		if want := []string{"alpha.3", "beta.1", "local.1", "local.2", "local.10"}; !slices.Equal(ids, want) {
			t.Fatalf("Workers order = %v, want %v", ids, want)
		}
		want := map[string]struct{ alive, fresh bool }{
			"alpha.3":  {false, false}, // stopped
			"beta.1":   {false, false}, // heartbeat lapsed
			"local.1":  {true, true},
			"local.2":  {false, true}, // stopping: no new tasks, not an orphan
			"local.10": {true, true},
		}
		for _, w := range ws {
			if e := want[w.ID]; w.Alive != e.alive || w.Fresh != e.fresh {
				t.Errorf("%s (%s): Alive %v Fresh %v, want %v %v", w.ID, w.State, w.Alive, w.Fresh, e.alive, e.fresh)
			}
			if w.ID == "beta.1" && (w.LastBeat < 3500*time.Second || w.LastBeat > 3700*time.Second) {
				t.Errorf("beta.1 heartbeat age = %.1fs, want about 3600", w.LastBeat.Seconds())
			}
		}
		// With a TTL longer than the lapse, beta.1 is alive again.
		ws, err = s.Workers(ctx, 2*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.ID == "beta.1" && !w.Alive {
				t.Errorf("beta.1 not alive with a 2h TTL")
			}
		}
		if _, err := s.Worker(ctx, "nobody.1", time.Minute); err == nil {
			t.Fatal("Worker(unknown) succeeded")
		}
	})
}

func TestSortWorkers(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want []string }{
		{[]string{"local.10", "local.9", "local.1"}, []string{"local.1", "local.9", "local.10"}},
		{[]string{"b.1", "a.2", "a.10", "a.1"}, []string{"a.1", "a.2", "a.10", "b.1"}},
		{[]string{"x.y.12", "x.y.3", "x.2"}, []string{"x.2", "x.y.3", "x.y.12"}},
		{[]string{"n.b", "n.a", "n.1"}, []string{"n.1", "n.a", "n.b"}},
		{nil, nil},
	}
	for _, c := range cases {
		ws := make([]WorkerInfo, len(c.in))
		for i, id := range c.in {
			ws[i].ID = id
		}
		SortWorkers(ws)
		var got []string
		for _, w := range ws {
			got = append(got, w.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("SortWorkers(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestRegisterWorkerRace starts several processes under one worker id at
// once: exactly one may hold it.
func TestRegisterWorkerRace(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const n = 6
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.RegisterWorker(t.Context(), testWorker("local.1", fmt.Sprintf("inst-%d", i)), time.Minute)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("inst-%d and inst-%d both registered as local.1", winner, i)
				}
				winner = i
			case !errors.Is(err, ErrWorkerRunning):
				t.Fatalf("inst-%d: %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no process registered")
		}
		if got := mustWorker(t, s, "local.1"); got.Instance != fmt.Sprintf("inst-%d", winner) {
			t.Fatalf("registry holds %s, but inst-%d won", got.Instance, winner)
		}
	})
}

// sleeper starts a child process and returns its pid and process token;
// kill ends and reaps it.
func sleeper(t *testing.T) (pid int, token string, kill func()) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	token, err := proc.Token(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, token, kill
}

// TestRegistryTakeOverEndedProcess: a worker restarted on the same host
// takes its id back at once when the old process has ended, and only then.
func TestRegistryTakeOverEndedProcess(t *testing.T) {
	t.Parallel()
	restarted := func() WorkerInfo {
		w := testWorker("local.1", "inst-new")
		w.Host, w.PID, w.ProcToken = "box", os.Getpid(), proc.Self()
		return w
	}
	cases := []struct {
		name     string
		holder   func(t *testing.T) WorkerInfo
		takeOver bool
	}{
		{"DeadPIDSameHost", func(t *testing.T) WorkerInfo {
			pid, tok, kill := sleeper(t)
			kill()
			return WorkerInfo{Host: "box", PID: pid, ProcToken: tok}
		}, true},
		{"LivePIDSameHost", func(t *testing.T) WorkerInfo {
			pid, tok, _ := sleeper(t)
			return WorkerInfo{Host: "box", PID: pid, ProcToken: tok}
		}, false},
		{"ReusedPIDSameHost", func(t *testing.T) WorkerInfo {
			// The pid is alive, but the process behind it started at
			// another time than the one that registered.
			pid, tok, _ := sleeper(t)
			return WorkerInfo{Host: "box", PID: pid, ProcToken: tok + "7"}
		}, true},
		{"DeadPIDOtherHost", func(t *testing.T) WorkerInfo {
			pid, tok, kill := sleeper(t)
			kill()
			return WorkerInfo{Host: "elsewhere", PID: pid, ProcToken: tok}
		}, false},
		{"ThisProcessHoldsIt", func(t *testing.T) WorkerInfo {
			return WorkerInfo{Host: "box", PID: os.Getpid(), ProcToken: proc.Self()}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forEachDialect(t, func(t *testing.T, s *Store) {
				ctx := t.Context()
				h := c.holder(t)
				old := testWorker("local.1", "inst-old")
				old.Host, old.PID, old.ProcToken = h.Host, h.PID, h.ProcToken
				mustRegister(t, s, old)
				if got := mustWorker(t, s, "local.1"); got.ProcToken != h.ProcToken {
					t.Fatalf("proc token = %q, want %q", got.ProcToken, h.ProcToken)
				}
				if ok, err := s.Assign(ctx, "local.1", "", "render"); err != nil || !ok {
					t.Fatalf("Assign = %v, %v", ok, err)
				}
				err := s.RegisterWorker(ctx, restarted(), time.Minute)
				got := mustWorker(t, s, "local.1")
				if !c.takeOver {
					if !errors.Is(err, ErrWorkerRunning) {
						t.Fatalf("RegisterWorker over pid %d on %q = %v, want ErrWorkerRunning", h.PID, h.Host, err)
					}
					if got.Instance != "inst-old" {
						t.Fatalf("refused registration changed the row: %+v", got)
					}
					return
				}
				if err != nil {
					t.Fatalf("RegisterWorker over ended pid %d on %q: %v", h.PID, h.Host, err)
				}
				if got.Instance != "inst-new" || got.PID != os.Getpid() || got.ProcToken != proc.Self() ||
					!got.Alive || got.Job != "render" {
					t.Fatalf("after takeover = %+v, want the new process, alive, still on render", got)
				}
				if _, ok, err := s.Heartbeat(ctx, "local.1", "inst-old"); err != nil || ok {
					t.Fatalf("old instance's Heartbeat = ok %v, err %v; want fenced out", ok, err)
				}
			})
		})
	}
}

// A holder on another host keeps its id until its heartbeat lapses, even
// when a process of the same pid has ended here.
func TestRegistryOtherHostWaitsForTTL(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		pid, tok, kill := sleeper(t)
		kill()
		old := testWorker("local.1", "inst-old")
		old.Host, old.PID, old.ProcToken = "elsewhere", pid, tok
		mustRegister(t, s, old)
		w := testWorker("local.1", "inst-new")
		w.Host, w.PID, w.ProcToken = "box", os.Getpid(), proc.Self()
		if err := s.RegisterWorker(t.Context(), w, time.Minute); !errors.Is(err, ErrWorkerRunning) {
			t.Fatalf("RegisterWorker over a fresh holder on another host = %v, want ErrWorkerRunning", err)
		}
		ageHeartbeat(t, s, "local.1", 2*time.Minute)
		mustRegister(t, s, w)
		if got := mustWorker(t, s, "local.1"); got.Instance != "inst-new" {
			t.Fatalf("after the TTL = %+v, want the new process", got)
		}
	})
}

// Several processes restarted at once under the id of an ended holder:
// exactly one takes it over, and the others find it alive.
func TestRegistryTakeOverRace(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		pid, tok, kill := sleeper(t)
		kill()
		old := testWorker("local.1", "inst-old")
		old.Host, old.PID, old.ProcToken = "box", pid, tok
		mustRegister(t, s, old)
		const n = 6
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				w := testWorker("local.1", fmt.Sprintf("inst-%d", i))
				w.Host, w.PID, w.ProcToken = "box", os.Getpid(), proc.Self()
				errs[i] = s.RegisterWorker(t.Context(), w, time.Minute)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("inst-%d and inst-%d both took over local.1", winner, i)
				}
				winner = i
			case !errors.Is(err, ErrWorkerRunning):
				t.Fatalf("inst-%d: %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no process took over the ended holder's id")
		}
		if got := mustWorker(t, s, "local.1"); got.Instance != fmt.Sprintf("inst-%d", winner) {
			t.Fatalf("registry holds %s, but inst-%d won", got.Instance, winner)
		}
	})
}

// LockLive reports the workers still running or stopping, and holds their
// registry rows until its transaction ends: a process registering under
// one of the ids meanwhile waits, so that what the transaction hands on
// for a gone worker is never what a new process of that id just claimed.
func TestLockLiveHoldsRegistration(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.RegisterWorker(ctx, testWorker("local.1", "old"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterWorker(ctx, testWorker("local.2", "other"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.SetWorkerState(ctx, "local.1", "old", StateDead); err != nil {
			t.Fatal(err)
		}
		registered := make(chan error, 1)
		err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			live, err := s.LockLive(ctx, tx, []string{"local.1", "local.2", "local.9"})
			if err != nil {
				return err
			}
			if _, ok := live["local.1"]; ok || len(live["local.2"]) == 0 || len(live) != 1 {
				t.Errorf("LockLive = %v, want only local.2 (local.1 dead, local.9 unknown)", live)
			}
			go func() {
				registered <- s.RegisterWorker(context.Background(), testWorker("local.1", "new"), time.Minute)
			}()
			select {
			case err := <-registered:
				t.Errorf("local.1 registered (%v) while its row was locked", err)
			case <-time.After(300 * time.Millisecond):
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-registered:
			if err != nil {
				t.Fatalf("register after the lock: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("local.1 could not register once the lock was released")
		}
	})
}

// A drained worker stays alive and fresh but is not dispatchable; the
// mark outlives a restart under the same id, and lifting it makes the
// worker dispatchable again. An id never registered is reported.
func TestSetDrained(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustRegister(t, s, testWorker("local.1", "inst-a"))
		mustRegister(t, s, testWorker("local.2", "inst-b"))
		if w := mustWorker(t, s, "local.1"); w.Drained || !w.Dispatchable() {
			t.Fatalf("a new worker = %+v, want dispatchable, not drained", w)
		}
		for range 2 { // draining twice changes nothing
			if ok, err := s.SetDrained(ctx, "local.1", true); err != nil || !ok {
				t.Fatalf("SetDrained(local.1) = %v, %v", ok, err)
			}
		}
		if w := mustWorker(t, s, "local.1"); !w.Drained || w.Dispatchable() || !w.Alive || !w.Fresh {
			t.Fatalf("drained worker = %+v, want drained, alive and fresh, not dispatchable", w)
		}
		if w := mustWorker(t, s, "local.2"); w.Drained {
			t.Fatalf("the other worker = %+v, want not drained", w)
		}
		if err := s.SetWorkerState(ctx, "local.1", "inst-a", StateStopped); err != nil {
			t.Fatal(err)
		}
		mustRegister(t, s, testWorker("local.1", "inst-c"))
		if w := mustWorker(t, s, "local.1"); !w.Drained || w.Instance != "inst-c" {
			t.Fatalf("drained worker registered again = %+v, want still drained", w)
		}
		if ok, err := s.SetDrained(ctx, "local.1", false); err != nil || !ok {
			t.Fatalf("SetDrained(local.1, false) = %v, %v", ok, err)
		}
		if w := mustWorker(t, s, "local.1"); w.Drained || !w.Dispatchable() {
			t.Fatalf("undrained worker = %+v, want dispatchable", w)
		}
		if ok, err := s.SetDrained(ctx, "local.9", true); err != nil || ok {
			t.Fatalf("SetDrained of an unknown id = %v, %v; want false", ok, err)
		}
	})
}
