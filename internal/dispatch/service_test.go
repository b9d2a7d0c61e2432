package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/notify"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const ttl = time.Minute

// register records a running worker that runs job "tasks", assigned to
// job ("" for none), its heartbeat age ago.
func register(t *testing.T, s *store.Store, id, job string, age time.Duration) {
	t.Helper()
	w := store.WorkerInfo{ID: id, Node: "n", Instance: "i-" + id, Jobs: []string{"tasks"}}
	if err := s.RegisterWorker(t.Context(), w, ttl); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	if job != "" {
		if ok, err := s.Assign(t.Context(), id, "", job); err != nil || !ok {
			t.Fatalf("assign %s: %v, %v", id, ok, err)
		}
	}
	enginetest.Exec(t, s, `UPDATE pampa_workers SET heartbeat_at = `+s.Dialect.Ago()+` WHERE id = ?`, s.Dialect.AgoArg(age), id)
}

func newService(s *store.Store, bus *notify.Bus, jobs ...*engine.Job) *Service {
	return New(Options{Store: s, Bus: bus, Jobs: jobs, Log: enginetest.Discard(), WorkerTTL: ttl, ReleaseAfter: time.Hour})
}

func reserve(t *testing.T, svc *Service) Result {
	t.Helper()
	var res Result
	if err := svc.Reserve(t.Context(), &res); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	return res
}

func queues(t *testing.T, s *store.Store, j *engine.Job) map[string]int {
	t.Helper()
	q, err := j.SQL.QueueLengths(t.Context(), s.DB)
	if err != nil {
		t.Fatalf("queue lengths: %v", err)
	}
	return q
}

func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestReserveFillsQueuesOfAliveAssignedWorkers(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 30, 3) // queue_size 5
		register(t, s, "n.1", "tasks", 0)
		register(t, s, "n.2", "tasks", 0)
		register(t, s, "n.3", "", 0)          // free
		register(t, s, "n.4", "tasks", ttl*2) // silent
		enginetest.Reserve(t, s, j, "n.1", 1, 2, 3)
		enginetest.Claim(t, s, j, "n.1", 1) // running: not in its queue
		bus := notify.NewBus()
		wake1, stop1 := bus.Subscribe(notify.WorkerTopic("n.1"))
		defer stop1()
		wake3, stop3 := bus.Subscribe(notify.WorkerTopic("n.3"))
		defer stop3()
		svc := newService(s, bus, j)

		if res := reserve(t, svc); res.Reserved != 3+5 {
			t.Fatalf("reserved %d, want 3 for n.1 and 5 for n.2", res.Reserved)
		}
		q := queues(t, s, j)
		if q["n.1"] != 5 || q["n.2"] != 5 || q["n.3"] != 0 || q["n.4"] != 0 || len(q) != 2 {
			t.Fatalf("queues = %v, want n.1 and n.2 at 5, no one else", q)
		}
		if !signalled(wake1) || signalled(wake3) {
			t.Fatal("want n.1 woken for its new rows, n.3 not")
		}
		if res := reserve(t, svc); res.Reserved != 0 {
			t.Fatalf("second round reserved %d, want 0 (queues full)", res.Reserved)
		}
	})
}

func TestReserveAllowingHook(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 20, 3)
	register(t, s, "n.1", "tasks", 0)
	register(t, s, "n.2", "tasks", 0)
	var asked []string
	j.Hooks.Allowing = func(ctx context.Context, w string) (bool, error) {
		asked = append(asked, w)
		return w != "n.2", nil
	}
	if res := reserve(t, newService(s, nil, j)); res.Reserved != 5 {
		t.Fatalf("reserved %d, want 5 (n.1 only)", res.Reserved)
	}
	if q := queues(t, s, j); q["n.1"] != 5 || q["n.2"] != 0 {
		t.Fatalf("queues = %v, want n.2 refused by the allowing hook", q)
	}
	if len(asked) != 2 {
		t.Fatalf("allowing hook asked for %v, want both workers", asked)
	}
	j.Hooks.Allowing = func(ctx context.Context, w string) (bool, error) { return false, errors.New("quota service down") }
	var res Result
	err := newService(s, nil, j).Reserve(t.Context(), &res)
	if err == nil || !strings.Contains(err.Error(), "job tasks") || !strings.Contains(err.Error(), "allowing hook (worker n.2)") {
		t.Fatalf("Reserve with a failing allowing hook = %v, want it to name the job and worker", err)
	}
}

func TestReserveOccupiedHook(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 20, 3)
	register(t, s, "n.1", "tasks", 0)
	j.Hooks.Occupied = func(ctx context.Context, w string) (int, error) { return 4, nil }
	if res := reserve(t, newService(s, nil, j)); res.Reserved != 1 {
		t.Fatalf("reserved %d, want 1 (queue_size 5, the hook says 4 occupied)", res.Reserved)
	}
}

func TestReserveSelectingHook(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 20, 3)
	register(t, s, "n.1", "tasks", 0)
	register(t, s, "n.2", "tasks", 0)
	j.Hooks.Selecting = func(ctx context.Context, n int) ([]any, error) {
		return []any{12, 11, 10}, nil // the hook's picks, whether taken or not
	}
	if res := reserve(t, newService(s, nil, j)); res.Reserved != 3 {
		t.Fatalf("reserved %d, want the hook's 3 rows", res.Reserved)
	}
	for _, id := range []int{10, 11, 12} {
		if r := enginetest.Get(t, s, j, id); r.RID.String != "n.1" {
			t.Fatalf("row %d = %+v, want reserved for n.1", id, r)
		}
	}
	if q := queues(t, s, j); q["n.1"] != 3 || len(q) != 1 {
		t.Fatalf("queues = %v, want only the selected rows, all n.1's", q)
	}
}

// Two services racing on one database never reserve a row twice: every
// row reserved is counted by exactly one of them. There are fewer rows
// than the workers' queues want, so the two fight over each of them.
func TestReserveNeverTwiceAcrossRacingServices(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	s1, s2 := enginetest.OpenURL(t, "postgres", url), enginetest.OpenURL(t, "postgres", url)
	const rows, workers = 30, 10
	j1 := enginetest.NewJob(t, s1, "tasks", rows, 3)
	j2 := &engine.Job{Name: "tasks", SQL: s2.Job(j1.SQL.Spec()), QueueSize: 5, MaxJobDuration: time.Minute}
	for i := 1; i <= workers; i++ {
		register(t, s1, fmt.Sprintf("n.%d", i), "tasks", 0)
	}
	svcs := []*Service{newService(s1, nil, j1), newService(s2, nil, j2)}
	for round := range 5 {
		enginetest.Exec(t, s1, `UPDATE tasks SET rid = NULL, rtime = NULL`)
		var wg sync.WaitGroup
		start := make(chan struct{})
		got := make([]int, len(svcs))
		errs := make([]error, len(svcs))
		for i, svc := range svcs {
			wg.Go(func() {
				<-start
				var res Result
				errs[i] = svc.Reserve(context.Background(), &res)
				got[i] = res.Reserved
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: Reserve: %v", round, err)
		}
		total := 0
		for _, n := range queues(t, s1, j1) {
			total += n
		}
		if got[0]+got[1] != total || total != rows {
			t.Fatalf("round %d: services reserved %d + %d, rows reserved %d of %d: a row was reserved twice or lost",
				round, got[0], got[1], total, rows)
		}
	}
}

func stretch(t *testing.T, svc *Service, s *store.Store) Result {
	t.Helper()
	ws, err := s.Workers(t.Context(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := svc.Stretch(t.Context(), ws, &res); err != nil {
		t.Fatalf("Stretch: %v", err)
	}
	return res
}

func assignments(t *testing.T, s *store.Store) map[string]string {
	t.Helper()
	ws, err := s.Workers(t.Context(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, w := range ws {
		out[w.ID] = w.Job
	}
	return out
}

func TestStretchAssignsFreeWorkersToBacklog(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 25, 3) // max_pending_tasks 10: wants 3 workers
		for _, id := range []string{"n.1", "n.2", "n.10", "n.3"} {
			register(t, s, id, "", 0)
		}
		register(t, s, "n.4", "", ttl*2) // silent: never assigned
		svc := newService(s, nil, j)
		if res := stretch(t, svc, s); res.Assigned != 3 {
			t.Fatalf("assigned %d, want 3", res.Assigned)
		}
		want := map[string]string{"n.1": "tasks", "n.2": "tasks", "n.3": "tasks", "n.4": "", "n.10": ""}
		if got := assignments(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("registry assignments = %v, want %v", got, want)
		}
		if res := stretch(t, svc, s); res.Assigned != 0 {
			t.Fatalf("second pass changed %d assignments, want none", res.Assigned)
		}
	})
}

func TestStretchReleasesWorkersOfQuietJobAfterReleaseAfter(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 2, 3)
	register(t, s, "n.1", "tasks", 0)
	enginetest.Exec(t, s, `UPDATE tasks SET ok = TRUE, started = CURRENT_TIMESTAMP, ended = CURRENT_TIMESTAMP, rtimes = 1`)
	svc := New(Options{Store: s, Jobs: []*engine.Job{j}, Log: enginetest.Discard(), WorkerTTL: ttl, ReleaseAfter: 50 * time.Millisecond})
	quiet := time.Now()
	if res := stretch(t, svc, s); res.Assigned != 0 || assignments(t, s)["n.1"] != "tasks" {
		t.Fatal("a job just gone quiet released its worker at once")
	}
	enginetest.Eventually(t, 5*time.Second, "the quiet job's worker to be released", func() bool {
		return stretch(t, svc, s).Assigned == 1
	})
	if since := time.Since(quiet); since < 50*time.Millisecond {
		t.Fatalf("released %s after the job went quiet, before ReleaseAfter", since)
	}
	if got := assignments(t, s)["n.1"]; got != "" {
		t.Fatalf("n.1 assigned to %q, want released", got)
	}
}

func TestStretchKeepsWorkersWhenBacklogUnknown(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 50, 3)
	register(t, s, "n.1", "tasks", 0)
	register(t, s, "n.2", "", 0)
	j.Hooks.Pending = func(context.Context) (int64, error) { return 0, errors.New("count failed") }
	svc := New(Options{Store: s, Jobs: []*engine.Job{j}, Log: enginetest.Discard(), WorkerTTL: ttl})
	ws, _ := s.Workers(t.Context(), ttl)
	var res Result
	err := svc.Stretch(t.Context(), ws, &res)
	if err == nil || !strings.Contains(err.Error(), "job tasks: count pending") {
		t.Fatalf("Stretch = %v, want the pending hook's error naming the job", err)
	}
	if got := assignments(t, s); got["n.1"] != "tasks" || got["n.2"] != "" || res.Assigned != 0 {
		t.Fatalf("assignments = %v (changed %d), want n.1 kept and n.2 left free", got, res.Assigned)
	}
}

// On PostgreSQL the reservation's own transaction wakes the workers of
// other processes: the dispatcher's bus here sends nothing itself.
func TestReserveWakesOtherProcessesInItsTransaction(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	s := enginetest.OpenURL(t, "postgres", url)
	j := enginetest.NewJob(t, s, "tasks", 10, 3)
	register(t, s, "n.1", "tasks", 0)
	// The worker's process: a bus that listens.
	remote := notify.NewBus()
	l := notify.NewListener(url, remote, enginetest.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go l.Run(ctx)
	remote.Connect(func(string) {}, l.Listen)
	wake, unsub := remote.Subscribe(notify.WorkerTopic("n.1"))
	defer unsub()
	waitWake := func(what string) {
		t.Helper()
		select {
		case <-wake:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake-up: %s", what)
		}
	}
	waitWake("the listener's first look")
	if res := reserve(t, newService(s, notify.NewBus(), j)); res.Reserved != 5 {
		t.Fatalf("reserved %d, want 5", res.Reserved)
	}
	waitWake("the reservation's")
}
