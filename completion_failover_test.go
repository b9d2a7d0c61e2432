package pampa

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Fail-over of the completion hooks: two dispatchers on one database,
// each on a client of its own, as two processes would be.

// failoverEnv is the pages job with both completion hooks in Go, 4 sites
// of 8 pages each (ids 1-32, site = id mod 4), its workers running and no
// dispatcher yet. hook runs in each hook before it records the call.
func failoverEnv(t *testing.T, driver string, hook func(id string)) (*testEnv, *Client) {
	t.Helper()
	j := sitePagesJob(func(ctx context.Context, task *Task) error {
		time.Sleep(30 * time.Millisecond)
		return nil
	})
	j.Hooks.OnDrained = func(ctx context.Context, db Querier, e DrainedEvent) error {
		hook(e.ID)
		return recordGo(ctx, db, driver, e.ID, "drained", nil, e.Run, e.Succeeded, e.Failed)
	}
	j.Hooks.OnGroupDone = func(ctx context.Context, db Querier, e GroupDoneEvent) error {
		hook(e.ID)
		return recordGo(ctx, db, driver, e.ID, "group", e.Group, e.Run, e.Succeeded, e.Failed)
	}
	sites := map[int]string{}
	for id := 1; id <= 32; id++ {
		sites[id] = fmt.Sprintf("s%d", id%4)
	}
	e := newSitePagesEnv(t, driver, j, sites)
	e.createFired()
	other, err := Open(context.Background(), e.cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	e.startIDs(nil, steadyWorker(), "local.1", "local.2", "local.3")
	return e, other
}

// dispatch runs a dispatcher of cl until the returned stop is called
// (which waits for Run to return).
func dispatch(t *testing.T, cl *Client, id string, opts *DispatcherOptions) (stop func()) {
	t.Helper()
	o := *opts
	o.ID = id
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cl.NewDispatcher(o).Run(ctx); err != nil {
			t.Errorf("dispatcher %s: %v", id, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func (e *testEnv) leader() string {
	e.t.Helper()
	l, err := e.client.Leader(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Holder
}

// wantEvents checks the hooks' calls: each event once, with these
// counts by group and run ("" for the drain).
func (e *testEnv) wantEvents(want map[string]firedRow) {
	e.t.Helper()
	e.checkOncePerID()
	got := e.fired()
	if len(got) != len(want) {
		e.t.Errorf("%d hook calls, want %d: %+v", len(got), len(want), got)
	}
	for _, r := range got {
		k := fmt.Sprintf("%s %s/%d", r.Kind, r.Group, r.Run)
		if w, ok := want[k]; !ok || w.Succeeded != r.Succeeded || w.Fail != r.Fail {
			e.t.Errorf("%s: %+v, want %+v", k, r, w)
		}
	}
}

// The leader stops in the middle of a run; the standby takes over and
// every event of the run, and of the next one, fires once.
func TestCompletionFailover(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		e, other := failoverEnv(t, driver, func(string) {})
		stopA := dispatch(t, e.client, "A", steadyDispatcher())
		e.waitState(10*time.Second, "A to lead", "scrape", func() bool { return e.leader() == "A" })
		dispatch(t, other, "B", steadyDispatcher())
		e.waitState(10*time.Second, "some pages done", "scrape", func() bool {
			return e.count(`SELECT COUNT(*) FROM pages WHERE ok = TRUE`) >= 8
		})
		stopA()
		if n := e.count(`SELECT COUNT(*) FROM pages WHERE ok = TRUE`); n == 32 {
			t.Fatal("the run ended before the leader stopped")
		}
		e.waitState(10*time.Second, "B to lead", "scrape", func() bool { return e.leader() == "B" })
		e.waitFired(5, "scrape")
		more := map[int]string{}
		for id := 33; id <= 38; id++ {
			more[id] = "s1"
		}
		more[39] = "new"
		e.addPages(more)
		e.waitFired(8, "scrape")
		time.Sleep(10 * steadyDispatcher().MaintenanceEvery)
		e.wantEvents(map[string]firedRow{
			"drained /1": {Succeeded: 32}, "drained /2": {Succeeded: 7},
			"group s0/1": {Succeeded: 8}, "group s1/1": {Succeeded: 8}, "group s2/1": {Succeeded: 8}, "group s3/1": {Succeeded: 8},
			"group s1/2": {Succeeded: 6}, "group new/1": {Succeeded: 1},
		})
	})
}

// The leader detects the events and stops before it fires them: the
// next leader fires each once.
func TestCompletionLeaderStopsBeforeFiring(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		var calls atomic.Int64
		e, other := failoverEnv(t, driver, func(string) { calls.Add(1) })
		hold := steadyDispatcher()
		hold.holdEvents = true
		stopA := dispatch(t, e.client, "A", hold)
		e.waitState(15*time.Second, "5 events detected", "scrape", func() bool {
			return e.count(`SELECT COUNT(*) FROM pampa_events WHERE state = 'pending'`) == 5
		})
		stopA()
		if n := calls.Load(); n != 0 {
			t.Fatalf("%d hooks called before the fail-over", n)
		}
		dispatch(t, other, "B", steadyDispatcher())
		e.waitFired(5, "scrape")
		time.Sleep(10 * steadyDispatcher().MaintenanceEvery)
		e.wantEvents(map[string]firedRow{"drained /1": {Succeeded: 32},
			"group s0/1": {Succeeded: 8}, "group s1/1": {Succeeded: 8}, "group s2/1": {Succeeded: 8}, "group s3/1": {Succeeded: 8}})
		if n := e.count(`SELECT COUNT(*) FROM pampa_events WHERE state = 'fired' AND claimed_by = 'B'`); n != 5 {
			t.Errorf("%d events fired by B, want 5", n)
		}
	})
}

// The leader is stopped while a hook call runs: it waits for the call,
// records it, and the next leader does not call it again.
func TestCompletionLeaderStopsDuringCall(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		entered, release := make(chan string, 10), make(chan struct{})
		var first atomic.Bool
		e, other := failoverEnv(t, driver, func(id string) {
			if first.CompareAndSwap(false, true) {
				entered <- id
				<-release
			}
		})
		stopA := dispatch(t, e.client, "A", steadyDispatcher())
		id := recvWithin(t, entered, 15*time.Second, "a first hook call")
		stopped := make(chan struct{})
		go func() { stopA(); close(stopped) }()
		select {
		case <-stopped:
			t.Fatal("the dispatcher stopped before its hook call returned")
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		recvWithin(t, stopped, 10*time.Second, "A to stop")
		var state, by string
		if err := e.client.DB().QueryRow(e.client.store.Dialect.Rebind(`SELECT state, claimed_by FROM pampa_events WHERE id = ?`), id).Scan(&state, &by); err != nil {
			t.Fatal(err)
		}
		if state != store.EventFired || by != "A" {
			t.Fatalf("event %s after A stopped: %s by %s, want fired by A", id, state, by)
		}
		dispatch(t, other, "B", steadyDispatcher())
		e.waitFired(5, "scrape")
		time.Sleep(10 * steadyDispatcher().MaintenanceEvery)
		e.wantEvents(map[string]firedRow{"drained /1": {Succeeded: 32},
			"group s0/1": {Succeeded: 8}, "group s1/1": {Succeeded: 8}, "group s2/1": {Succeeded: 8}, "group s3/1": {Succeeded: 8}})
	})
}

// A dispatcher that hangs in a hook call (or died in it) loses its claim
// after twice HookTimeout: the next leader calls the hook again, with the
// same event id. Go hooks and commands are at least once; this is the
// case that makes them so.
func TestCompletionExpiredClaimCallsAgain(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		release := make(chan struct{})
		var ids sync.Map // event id → calls
		e, other := failoverEnv(t, driver, func(id string) {
			n, _ := ids.LoadOrStore(id, new(atomic.Int64))
			if n.(*atomic.Int64).Add(1) == 1 && id == "drained/scrape/1" {
				<-release // hangs, past its deadline
			}
		})
		defer close(release)
		a := steadyDispatcher()
		a.HookTimeout = 300 * time.Millisecond
		stopA := dispatch(t, e.client, "A", a)
		e.waitState(15*time.Second, "A to claim the drain", "scrape", func() bool {
			return e.count(`SELECT COUNT(*) FROM pampa_events WHERE id = 'drained/scrape/1' AND state = 'firing'`) == 1
		})
		go stopA() // blocks in the hung call: A renews its lease no more
		dispatch(t, other, "B", steadyDispatcher())
		e.waitState(15*time.Second, "B to call the hook again", "scrape", func() bool {
			return e.count(`SELECT COUNT(*) FROM pampa_events WHERE id = 'drained/scrape/1' AND state = 'fired' AND claimed_by = 'B'`) == 1
		})
		n, _ := ids.Load("drained/scrape/1")
		if calls := n.(*atomic.Int64).Load(); calls != 2 {
			t.Errorf("drain hook called %d times, want 2 (A's hung call, then B's)", calls)
		}
		if got := e.count(`SELECT attempts FROM pampa_events WHERE id = 'drained/scrape/1'`); got != 2 {
			t.Errorf("attempts = %d, want 2", got)
		}
	})
}
