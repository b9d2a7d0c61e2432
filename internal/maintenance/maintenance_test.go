package maintenance

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const ttl = time.Minute

// register records a running worker whose program runs jobs, its
// heartbeat age ago.
func register(t *testing.T, s *store.Store, id string, age time.Duration, jobs ...string) {
	t.Helper()
	w := store.WorkerInfo{ID: id, Node: "n", Instance: "i-" + id, Jobs: jobs}
	if err := s.RegisterWorker(t.Context(), w, ttl); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	if _, err := s.Assign(t.Context(), id, "", jobs[0]); err != nil {
		t.Fatalf("assign %s: %v", id, err)
	}
	enginetest.Exec(t, s, `UPDATE pampa_workers SET heartbeat_at = `+s.Dialect.Ago()+` WHERE id = ?`, s.Dialect.AgoArg(age), id)
}

// running starts rows ids for worker; tries sets their try count after.
func running(t *testing.T, s *store.Store, j *engine.Job, worker string, tries int, ids ...int) {
	t.Helper()
	enginetest.Reserve(t, s, j, worker, ids...)
	enginetest.Claim(t, s, j, worker, len(ids))
	for _, id := range ids {
		enginetest.Exec(t, s, `UPDATE `+j.Name+` SET rtimes = ? WHERE id = ?`, tries, id)
	}
}

func runOnce(t *testing.T, svc *Service) (Result, []store.WorkerInfo) {
	t.Helper()
	var res Result
	ws, err := svc.RunOnce(t.Context(), &res)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return res, ws
}

func newService(s *store.Store, jobs ...*engine.Job) *Service {
	return New(Options{Store: s, Jobs: jobs, Log: enginetest.Discard(), WorkerTTL: ttl, ExpiryGrace: 10 * time.Second})
}

func pending(t *testing.T, s *store.Store, j *engine.Job, id int, tries int64) {
	t.Helper()
	if r := enginetest.Get(t, s, j, id); r.RID.Valid || r.Reserved || r.Started || r.Ended || r.Tries != tries {
		t.Fatalf("row %d = %+v, want pending with try count %d", id, r, tries)
	}
}

func TestSilentWorkerIsDeclaredDeadAndItsTasksHandedOn(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 6, 2)
		register(t, s, "n.1", 0, "tasks")
		register(t, s, "n.2", time.Hour, "tasks") // silent
		running(t, s, j, "n.2", 1, 2)             // running, a try left
		running(t, s, j, "n.2", 2, 3)             // running its last try
		enginetest.Reserve(t, s, j, "n.2", 1)     // unstarted
		running(t, s, j, "n.1", 1, 4)
		enginetest.Reserve(t, s, j, "n.1", 5)

		res, ws := runOnce(t, newService(s, j))
		if want := (Result{DeadMarked: 1, Released: 1, Relaunched: 1, Failed: 1}); res != want {
			t.Fatalf("result = %+v, want %+v", res, want)
		}
		if len(ws) != 2 || ws[1].ID != "n.2" || ws[1].State != store.StateDead || ws[1].Job != "" || ws[0].State != store.StateRunning {
			t.Fatalf("registry = %+v, want n.1 running and n.2 dead, unassigned", ws)
		}
		pending(t, s, j, 1, 0)
		pending(t, s, j, 2, 1)
		r3 := enginetest.Get(t, s, j, 3)
		if !r3.Ended || !r3.OK.Valid || r3.OK.Bool || r3.Why.String != "worker died or left while running the task" {
			t.Fatalf("row 3 = %+v, want failed for good", r3)
		}
		if r := enginetest.Get(t, s, j, 4); r.RID.String != "n.1" || !r.Started {
			t.Fatalf("row 4 = %+v, want n.1's try left alone", r)
		}
		if r := enginetest.Get(t, s, j, 5); r.RID.String != "n.1" || r.Started {
			t.Fatalf("row 5 = %+v, want n.1's reservation left alone", r)
		}
		// A second pass finds nothing more to do.
		if res, _ := runOnce(t, newService(s, j)); res != (Result{}) {
			t.Fatalf("second pass = %+v, want nothing", res)
		}
	})
}

func TestWorkerNoLongerRunningTheJobLosesItsTasks(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 2, 3)
	register(t, s, "n.1", 0, "other") // alive, but its program runs another job
	running(t, s, j, "n.1", 1, 1)
	enginetest.Reserve(t, s, j, "n.1", 2)
	res, _ := runOnce(t, newService(s, j))
	if want := (Result{Released: 1, Relaunched: 1}); res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	pending(t, s, j, 1, 1)
	pending(t, s, j, 2, 0)
}

func TestExpiredTryIsRelaunchedOrFailed(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 3, 2) // max duration 1m, grace 10s
		register(t, s, "n.1", 0, "tasks")
		running(t, s, j, "n.1", 1, 1, 3)
		running(t, s, j, "n.1", 2, 2)
		enginetest.SetAgo(t, s, j, "started", 2*time.Minute, 1, 2)
		enginetest.SetAgo(t, s, j, "started", 65*time.Second, 3) // past the max, within the grace

		res, _ := runOnce(t, newService(s, j))
		if want := (Result{Relaunched: 1, Failed: 1}); res != want {
			t.Fatalf("result = %+v, want %+v", res, want)
		}
		pending(t, s, j, 1, 1)
		r2 := enginetest.Get(t, s, j, 2)
		if !r2.Ended || r2.OK.Bool || !strings.HasPrefix(r2.Why.String, "expired: still running 1m10s after it started") {
			t.Fatalf("row 2 = %+v, want failed for good as expired", r2)
		}
		if r := enginetest.Get(t, s, j, 3); r.RID.String != "n.1" || !r.Started || r.Ended {
			t.Fatalf("row 3 = %+v, want still running (within the expiry grace)", r)
		}
	})
}

func TestFailedTryIsRelaunchedAfterBackoff(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 3, 2)
		j.RetryBackoff = store.Backoff{Base: 5 * time.Second}
		register(t, s, "n.1", 0, "tasks")
		running(t, s, j, "n.1", 1, 1, 2)
		running(t, s, j, "n.1", 2, 3)
		for _, a := range []struct {
			id  int
			try int64
		}{{1, 1}, {2, 1}, {3, 2}} {
			ok, err := j.SQL.Finish(t.Context(), s.DB, store.Fence{Key: a.id, Worker: "n.1", Try: a.try},
				store.Outcome{Error: "boom"})
			if err != nil || !ok {
				t.Fatalf("finish row %d: %v, %v", a.id, ok, err)
			}
		}
		enginetest.SetAgo(t, s, j, "ended", 10*time.Second, 1, 3)
		enginetest.SetAgo(t, s, j, "ended", time.Second, 2)

		res, _ := runOnce(t, newService(s, j))
		if want := (Result{Relaunched: 1}); res != want {
			t.Fatalf("result = %+v, want %+v", res, want)
		}
		pending(t, s, j, 1, 1)
		if r := enginetest.Get(t, s, j, 2); !r.Ended || r.OK.Bool {
			t.Fatalf("row 2 = %+v, want still failed (within its backoff)", r)
		}
		if r := enginetest.Get(t, s, j, 3); !r.Ended || r.OK.Bool || r.Tries != 2 {
			t.Fatalf("row 3 = %+v, want failed for good (tries used up)", r)
		}
	})
}

func TestRelaunchingHookAndRelauncher(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 3, 2)
	register(t, s, "n.1", 0, "tasks")
	running(t, s, j, "n.1", 1, 1, 2)
	for _, id := range []int{1, 2} {
		if _, err := j.SQL.Finish(t.Context(), s.DB, store.Fence{Key: id, Worker: "n.1", Try: 1}, store.Outcome{Success: true}); err != nil {
			t.Fatal(err)
		}
	}
	var asked int
	j.Hooks.Relaunching = func(ctx context.Context, n int) ([]any, error) {
		asked = n
		return []any{1}, nil
	}
	var relaunched []any
	j.Hooks.Relauncher = func(ctx context.Context, tx store.Querier, key any) error {
		relaunched = append(relaunched, key)
		return nil
	}
	res, _ := runOnce(t, newService(s, j))
	if want := (Result{Relaunched: 1}); res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	if asked != 100 {
		t.Fatalf("relaunching hook asked for %d rows, want max(queue_size×10, 100) = 100", asked)
	}
	pending(t, s, j, 1, 0) // a succeeded row starts a new cycle of tries
	if r := enginetest.Get(t, s, j, 2); !r.OK.Bool {
		t.Fatalf("row 2 = %+v, want left succeeded", r)
	}
	if len(relaunched) != 1 {
		t.Fatalf("relauncher hook ran for %v, want the one relaunched key", relaunched)
	}
}

func TestOneJobsFailureDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	broken := enginetest.NewJob(t, s, "broken", 1, 2)
	fine := enginetest.NewJob(t, s, "fine", 1, 2)
	broken.Hooks.Relaunching = func(context.Context, int) ([]any, error) { return nil, errors.New("hook down") }
	register(t, s, "n.1", time.Hour, "broken", "fine")
	running(t, s, fine, "n.1", 1, 1)
	var res Result
	ws, err := New(Options{Store: s, Jobs: []*engine.Job{broken, fine}, Log: enginetest.Discard(), WorkerTTL: ttl}).RunOnce(t.Context(), &res)
	if err == nil || !strings.Contains(err.Error(), "job broken") || !strings.Contains(err.Error(), "hook down") {
		t.Fatalf("RunOnce = %v, want the broken job's error", err)
	}
	if len(ws) != 1 {
		t.Fatalf("workers = %v, want the registry returned despite the error", ws)
	}
	pending(t, s, fine, 1, 1)
	if res.Relaunched != 1 || res.DeadMarked != 1 {
		t.Fatalf("result = %+v, want the fine job's row relaunched", res)
	}
	if !slices.Equal(ws[0].Jobs, []string{"broken", "fine"}) {
		t.Fatalf("worker jobs = %v", ws[0].Jobs)
	}
}

func TestRunOnceReportsUnreachableDatabase(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 1, 2)
	_ = s.DB.Close()
	var res Result
	if ws, err := newService(s, j).RunOnce(t.Context(), &res); err == nil || ws != nil ||
		!strings.Contains(err.Error(), "mark dead workers") {
		t.Fatalf("RunOnce on a closed database = %v, %v; want a 'mark dead workers' error", ws, err)
	}
}

// A worker declared dead that registers again before its rows are
// handed on keeps them: the pass judged it gone from a registry listing
// taken before it came back, and handing on now would relaunch a row its
// new process may already run (two runs at once, on two workers). The
// relaunch transaction reads the registry again, locking the rows, so a
// registration waits for it or is seen by it.
func TestWorkerBackBeforeHandOnKeepsItsRows(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 4, 3)
		other := enginetest.NewJob(t, s, "other", 2, 3)
		register(t, s, "n.1", time.Hour, "tasks", "other")
		running(t, s, j, "n.1", 1, 1)
		enginetest.Reserve(t, s, j, "n.1", 2)
		running(t, s, other, "n.1", 1, 1)
		svc := newService(s, j, other)
		if _, err := s.MarkDead(t.Context(), ttl); err != nil {
			t.Fatal(err)
		}
		// The pass's listing: n.1 dead, holding nothing.
		holds := map[string]map[string]bool{}
		// n.1 comes back, now running only "tasks".
		back := store.WorkerInfo{ID: "n.1", Node: "n", Instance: "i-new", Jobs: []string{"tasks"}}
		if err := s.RegisterWorker(t.Context(), back, ttl); err != nil {
			t.Fatal(err)
		}
		var res Result
		for _, job := range []*engine.Job{j, other} {
			if err := svc.relaunch(t.Context(), job, holds, &res); err != nil {
				t.Fatalf("relaunch %s: %v", job.Name, err)
			}
		}
		if r := enginetest.Get(t, s, j, 1); r.RID.String != "n.1" || !r.Started {
			t.Errorf("row 1 of tasks = %+v, want still running on n.1, which is back", r)
		}
		if r := enginetest.Get(t, s, j, 2); r.RID.String != "n.1" {
			t.Errorf("row 2 of tasks = %+v, want still reserved for n.1", r)
		}
		// Its program no longer runs "other": that row is handed on.
		if r := enginetest.Get(t, s, other, 1); r.RID.Valid || r.Started {
			t.Errorf("row 1 of other = %+v, want relaunched (n.1 no longer runs the job)", r)
		}
		if res.Relaunched != 1 || res.Released != 0 {
			t.Errorf("result = %+v, want only other's row relaunched", res)
		}
	})
}

// The pass deletes the cancel rows no worker took up within two TTLs,
// and keeps the recent ones.
func TestOldCancelRowsAreDeleted(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		j := enginetest.NewJob(t, s, "tasks", 2, 2)
		register(t, s, "n.1", 0, "tasks")
		running(t, s, j, "n.1", 1, 1, 2)
		err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := j.SQL.Cancel(ctx, tx, j.Name, []any{int64(1), int64(2)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		enginetest.Exec(t, s, `UPDATE pampa_cancels SET cancelled_at = `+s.Dialect.Ago()+` WHERE task = '1'`, s.Dialect.AgoArg(2*ttl+time.Minute))
		runOnce(t, newService(s, j))
		want := []store.CancelledTry{{Job: j.Name, Task: "2", Worker: "n.1"}}
		if got, err := s.Cancels(t.Context(), "n.1"); err != nil || !slices.Equal(got, want) {
			t.Fatalf("cancel rows after the pass = %v, %v; want %v", got, err, want)
		}
	})
}
