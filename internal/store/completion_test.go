package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

// tryRow reserves, starts and finishes one try of key for worker w.
func tryRow(t *testing.T, j *JobSQL, w string, key int, ok bool) {
	t.Helper()
	ctx := t.Context()
	got, err := j.ReserveKeys(ctx, j.s.DB, w, []any{key})
	if err != nil || len(got) != 1 {
		t.Fatalf("reserve %d: %v %v", key, got, err)
	}
	rows, err := j.Claim(ctx, j.s.DB, w, 1)
	if err != nil || len(rows) != 1 {
		t.Fatalf("claim %d: %v %v", key, rows, err)
	}
	v, _ := rows[0].Get("rtimes")
	var try int64
	switch x := v.(type) {
	case int64:
		try = x
	case int32:
		try = int64(x)
	}
	applied, err := j.Finish(ctx, j.s.DB, Fence{Key: int64(key), Worker: w, Try: try}, Outcome{Success: ok, Error: "boom"})
	if err != nil || !applied {
		t.Fatalf("finish %d: applied %v, %v", key, applied, err)
	}
}

func closeRun(t *testing.T, j *JobSQL, job string) *Event {
	t.Helper()
	var e *Event
	err := j.s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		e, err = j.CloseRun(ctx, tx, job)
		return err
	})
	if err != nil {
		t.Fatalf("CloseRun: %v", err)
	}
	return e
}

func openRun(t *testing.T, s *Store, job string) bool {
	t.Helper()
	var opened bool
	err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		opened, err = s.OpenRun(ctx, tx, job)
		return err
	})
	if err != nil {
		t.Fatalf("OpenRun: %v", err)
	}
	return opened
}

func TestDrainRunCountsAndCloses(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "drains", 4, 2)
		spec := j.Spec()
		spec.Drains = true
		j = s.Job(spec)
		if err := j.CreateIndexes(t.Context(), "drains", func(string) {}); err != nil {
			t.Fatal(err)
		}
		if e := closeRun(t, j, "drains"); e != nil {
			t.Fatalf("closed a run never opened: %+v", e)
		}
		if !openRun(t, s, "drains") || openRun(t, s, "drains") {
			t.Fatal("OpenRun: want a run opened once")
		}
		tryRow(t, j, "w1", 1, true)
		tryRow(t, j, "w1", 2, false) // a try left: retrying
		if b, err := j.ProbeBusy(t.Context(), s.DB); err != nil || !b.Pending || b.InFlight || !b.Retrying {
			t.Fatalf("ProbeBusy = %+v, %v; want pending (3, 4) and retrying (2)", b, err)
		}
		if e := closeRun(t, j, "drains"); e != nil {
			t.Fatalf("closed while rows pend: %+v", e)
		}
		tryRow(t, j, "w1", 3, true)
		tryRow(t, j, "w1", 4, true)
		if e := closeRun(t, j, "drains"); e != nil {
			t.Fatalf("closed while row 2 retries: %+v", e)
		}
		// The relaunch of the failed try, then its last try fails too.
		relaunchNow(t, s, j)
		got, _ := j.ReserveKeys(t.Context(), s.DB, "w1", []any{2})
		if len(got) != 1 {
			t.Fatal("reserve 2 again")
		}
		if e := closeRun(t, j, "drains"); e != nil {
			t.Fatalf("closed while row 2 is reserved: %+v", e)
		}
		rows, _ := j.Claim(t.Context(), s.DB, "w1", 1)
		if len(rows) != 1 {
			t.Fatal("claim 2 again")
		}
		if ok, err := j.Finish(t.Context(), s.DB, Fence{Key: int64(2), Worker: "w1", Try: 2}, Outcome{Error: "boom"}); !ok || err != nil {
			t.Fatalf("finish 2: %v %v", ok, err)
		}
		e := closeRun(t, j, "drains")
		if e == nil {
			t.Fatal("no drain once every row ended")
		}
		if e.ID != "drained/drains/1" || e.Kind != EventDrained || e.Run != 1 || e.Succeeded != 3 || e.Failed != 1 || e.State != EventPending {
			t.Errorf("event = %+v, want run 1 with 3 succeeded, 1 failed, pending", e)
		}
		if e.EndedMs < e.StartedMs || time.Since(time.UnixMilli(e.EndedMs)).Abs() > time.Minute {
			t.Errorf("times: started %d, ended %d", e.StartedMs, e.EndedMs)
		}
		if again := closeRun(t, j, "drains"); again != nil {
			t.Errorf("closed twice: %+v", again)
		}
		// A second run counts only what ended in it. (A task of it that
		// ended in the millisecond of the first run's last end would not
		// count: see endedIn. Real runs are never that close.)
		nextMilli(t, s, e.EndedMs)
		mustExec(t, s, `INSERT INTO drains (id, payload) VALUES (5, 'p5')`)
		if !openRun(t, s, "drains") {
			t.Fatal("second run not opened")
		}
		tryRow(t, j, "w1", 5, true)
		e = closeRun(t, j, "drains")
		if e == nil || e.ID != "drained/drains/2" || e.Succeeded != 1 || e.Failed != 0 {
			t.Errorf("second event = %+v, want run 2 with 1 succeeded", e)
		}
	})
}

func TestDrainBacklogLeavesOutTasksScheduledForLater(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "later", 2, 3)
		ty := s.Dialect.Types()
		mustExec(t, s, `ALTER TABLE later ADD COLUMN run_at `+ty.Time)
		spec := j.Spec()
		spec.RunAt = "run_at"
		j = s.Job(spec)
		mustExec(t, s, `UPDATE later SET run_at = `+s.Dialect.Ago()+` WHERE id = 1`, s.Dialect.AgoArg(-time.Hour))
		tryRow(t, j, "w", 2, true)
		if b, err := j.ProbeBusy(t.Context(), s.DB); err != nil || b.Any() {
			t.Fatalf("ProbeBusy = %+v, %v; a task first scheduled for later is no backlog", b, err)
		}
		// A retry waiting for its backoff (tried, scheduled) is.
		mustExec(t, s, `UPDATE later SET rtimes = 1 WHERE id = 1`)
		if b, err := j.ProbeBusy(t.Context(), s.DB); err != nil || !b.Pending {
			t.Fatalf("ProbeBusy = %+v, %v; want the retry pending", b, err)
		}
	})
}

func TestGroupRunsCloseWhenEveryTaskEnded(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		groups := map[string][]int{"a": {1, 2}, "b": {3}, "": {4}}
		j := limitedJob(t, s, "grouped", 4, Limits{GroupBy: "payload"}, groups)
		spec := j.Spec()
		spec.GroupsDone = true
		j = s.Job(spec)
		if err := j.CreateIndexes(t.Context(), "grouped", func(string) {}); err != nil {
			t.Fatal(err)
		}
		cur := &GroupCursor{}
		out := reserveLimited(t, j, cur, Share{Worker: "w", N: 10})
		if handed(out) != 4 {
			t.Fatalf("handed %d, want 4", handed(out))
		}
		open, err := s.OpenGroups(t.Context(), "limited", "", 10)
		if err != nil || len(open) != 3 || open[0] != "null" || open[1] != "s:a" || open[2] != "s:b" {
			t.Fatalf("OpenGroups = %v, %v; want null, s:a, s:b", open, err)
		}
		if done, err := j.GroupsLookDone(t.Context(), s.DB, open); err != nil || len(done) != 0 {
			t.Fatalf("GroupsLookDone = %v, %v; all are reserved", done, err)
		}
		rows, err := j.Claim(t.Context(), s.DB, "w", 4)
		if err != nil || len(rows) != 4 {
			t.Fatalf("claim: %v %v", rows, err)
		}
		finish := func(key int, ok, final bool) {
			t.Helper()
			if applied, err := j.Finish(t.Context(), s.DB, Fence{Key: int64(key), Worker: "w", Try: 1}, Outcome{Success: ok, Error: "x", Final: final}); !applied || err != nil {
				t.Fatalf("finish %d: %v %v", key, applied, err)
			}
		}
		finish(1, true, false)
		finish(2, false, false) // retrying
		finish(3, false, true)  // failed for good
		finish(4, true, false)
		done, err := j.GroupsLookDone(t.Context(), s.DB, open)
		if err != nil || len(done) != 2 || done[0] != "null" || done[1] != "s:b" {
			t.Fatalf("GroupsLookDone = %v, %v; want null and s:b (a retries)", done, err)
		}
		closeGroup := func(key string) *Event {
			t.Helper()
			var e *Event
			err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
				var err error
				e, err = j.CloseGroup(ctx, tx, "limited", key)
				return err
			})
			if err != nil {
				t.Fatalf("CloseGroup(%s): %v", key, err)
			}
			return e
		}
		if e := closeGroup("s:a"); e != nil {
			t.Fatalf("closed group a while it retries: %+v", e)
		}
		e := closeGroup("s:b")
		if e == nil || e.ID != "group_done/limited/1/s:b" || e.Group != "s:b" || e.Succeeded != 0 || e.Failed != 1 {
			t.Fatalf("group b event = %+v, want 0 succeeded, 1 failed", e)
		}
		if e := closeGroup("null"); e == nil || e.Succeeded != 1 || e.Failed != 0 {
			t.Fatalf("NULL group event = %+v, want 1 succeeded", e)
		}
		if e := closeGroup("s:b"); e != nil {
			t.Fatalf("group b closed twice: %+v", e)
		}
		// Group a: its retry is handed out again (no new run: it is a
		// candidate still), then succeeds.
		relaunchNow(t, s, j)
		if out := reserveLimited(t, j, cur, Share{Worker: "w", N: 10}); handed(out) != 1 {
			t.Fatalf("handed %d, want row 2", handed(out))
		}
		if rows, err := j.Claim(t.Context(), s.DB, "w", 1); err != nil || len(rows) != 1 {
			t.Fatalf("claim 2: %v", err)
		}
		if applied, err := j.Finish(t.Context(), s.DB, Fence{Key: int64(2), Worker: "w", Try: 2}, Outcome{Success: true}); !applied || err != nil {
			t.Fatalf("finish 2: %v %v", applied, err)
		}
		if e := closeGroup("s:a"); e == nil || e.Run != 1 || e.Succeeded != 2 || e.Failed != 0 {
			t.Fatalf("group a event = %+v, want run 1, 2 succeeded", e)
		}
		if open, _ := s.OpenGroups(t.Context(), "limited", "", 10); len(open) != 0 {
			t.Fatalf("candidates left: %v", open)
		}
		// New rows in group b: a new run, counted apart.
		nextMilli(t, s, e.EndedMs)
		mustExec(t, s, `INSERT INTO grouped (id, payload) VALUES (5, 'b')`)
		if out := reserveLimited(t, j, cur, Share{Worker: "w", N: 10}); handed(out) != 1 {
			t.Fatalf("handed %d, want row 5", handed(out))
		}
		if rows, err := j.Claim(t.Context(), s.DB, "w", 1); err != nil || len(rows) != 1 {
			t.Fatalf("claim 5: %v", err)
		}
		finish(5, true, false)
		if e := closeGroup("s:b"); e == nil || e.ID != "group_done/limited/2/s:b" || e.Succeeded != 1 || e.Failed != 0 {
			t.Fatalf("group b second event = %+v, want run 2 with 1 succeeded", e)
		}
	})
}

func TestEventClaimsAndFires(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "ev", 1, 1)
		openRun(t, s, "ev")
		tryRow(t, j, "w", 1, true)
		e := closeRun(t, j, "ev")
		if e == nil {
			t.Fatal("no event")
		}
		due, err := s.DueEvents(t.Context(), []string{"ev"}, 10)
		if err != nil || len(due) != 1 || due[0].ID != e.ID {
			t.Fatalf("DueEvents = %v, %v", due, err)
		}
		if ok, err := s.ClaimEvent(t.Context(), e.ID, 0, "d1", time.Hour); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if ok, _ := s.ClaimEvent(t.Context(), e.ID, 0, "d2", time.Hour); ok {
			t.Fatal("a second claim of the same listing won")
		}
		if due, _ := s.DueEvents(t.Context(), []string{"ev"}, 10); len(due) != 0 {
			t.Fatalf("a claimed event is due: %v", due)
		}
		// A failure puts it back, due after its backoff.
		if ok, err := s.MarkFailed(t.Context(), e.ID, 1, "d1", false, "hook broke", 0, false); !ok || err != nil {
			t.Fatalf("MarkFailed: %v %v", ok, err)
		}
		due, _ = s.DueEvents(t.Context(), []string{"ev"}, 10)
		if len(due) != 1 || due[0].Attempts != 1 || due[0].LastError != "hook broke" || due[0].State != EventPending {
			t.Fatalf("after a failure: %+v", due)
		}
		// A claim that expired is taken over; the late report of its
		// first holder changes nothing.
		if ok, _ := s.ClaimEvent(t.Context(), e.ID, 1, "d1", -time.Second); !ok {
			t.Fatal("claim 2")
		}
		if ok, _ := s.ClaimEvent(t.Context(), e.ID, 2, "d2", time.Hour); !ok {
			t.Fatal("the expired claim was not taken over")
		}
		if ok, _ := s.MarkFired(t.Context(), e.ID, 2, "d1"); ok {
			t.Fatal("the first holder marked an event it lost")
		}
		if ok, err := s.MarkFired(t.Context(), e.ID, 3, "d2"); !ok || err != nil {
			t.Fatalf("MarkFired: %v %v", ok, err)
		}
		evs, _ := s.Events(t.Context(), "ev")
		if len(evs) != 1 || evs[0].State != EventFired || evs[0].Attempts != 3 || evs[0].LastError != "" {
			t.Fatalf("events = %+v, want one fired after 3 attempts", evs)
		}
		if n, err := s.PruneEvents(t.Context(), time.Hour); n != 0 || err != nil {
			t.Fatalf("pruned a fresh event: %d %v", n, err)
		}
		if n, err := s.PruneEvents(t.Context(), -time.Minute); n != 1 || err != nil {
			t.Fatalf("PruneEvents = %d, %v; want 1", n, err)
		}
	})
}

func TestEventFiredInTransactionOnce(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "evtx", 1, 1)
		mustExec(t, s, `CREATE TABLE seen (id `+s.Dialect.Types().Text+`)`)
		openRun(t, s, "evtx")
		tryRow(t, j, "w", 1, true)
		e := closeRun(t, j, "evtx")
		write := func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO seen (id) VALUES (?)`), e.ID)
			return err
		}
		broken := func(ctx context.Context, tx *sql.Tx) error {
			if err := write(ctx, tx); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `SELECT * FROM no_such_table`)
			return err
		}
		claimed, err := s.FireInTx(t.Context(), e.ID, 0, "d", broken)
		if !claimed || err == nil {
			t.Fatalf("FireInTx(broken) = %v, %v", claimed, err)
		}
		if ok, err := s.MarkFailed(t.Context(), e.ID, 1, "d", true, err.Error(), 0, false); !ok || err != nil {
			t.Fatalf("MarkFailed: %v %v", ok, err)
		}
		if n := countRows(t, s, `SELECT COUNT(*) FROM seen`); n != 0 {
			t.Fatalf("the failed hook's write stayed: %d", n)
		}
		if claimed, err := s.FireInTx(t.Context(), e.ID, 1, "d", write); !claimed || err != nil {
			t.Fatalf("FireInTx = %v, %v", claimed, err)
		}
		if claimed, _ := s.FireInTx(t.Context(), e.ID, 2, "d", write); claimed {
			t.Fatal("fired twice")
		}
		if n := countRows(t, s, `SELECT COUNT(*) FROM seen`); n != 1 {
			t.Fatalf("hook writes = %d, want 1", n)
		}
		evs, _ := s.Events(t.Context(), "evtx")
		if len(evs) != 1 || evs[0].State != EventFired || evs[0].Attempts != 2 {
			t.Fatalf("events = %+v, want fired after 2 attempts", evs)
		}
	})
}

func countRows(t *testing.T, s *Store, query string) int64 {
	t.Helper()
	var n int64
	if err := s.DB.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// nextMilli waits until the database's clock is past the Unix
// millisecond ms.
// relaunchNow relaunches the failed tries without a backoff. Such a try
// is due once its end is in the past, which on SQLite's millisecond clock
// is not yet so in the millisecond it ended: wait for the next one first.
func relaunchNow(t *testing.T, s *Store, j *JobSQL) {
	t.Helper()
	var now int64
	if err := s.DB.QueryRowContext(t.Context(), "SELECT "+s.Dialect.UnixMillis(s.Dialect.Now())).Scan(&now); err != nil {
		t.Fatal(err)
	}
	nextMilli(t, s, now)
	if _, err := j.RelaunchFailed(t.Context(), s.DB, Backoff{}); err != nil {
		t.Fatal(err)
	}
}

func nextMilli(t *testing.T, s *Store, ms int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var now int64
		if err := s.DB.QueryRowContext(t.Context(), "SELECT "+s.Dialect.UnixMillis(s.Dialect.Now())).Scan(&now); err != nil {
			t.Fatal(err)
		}
		if now > ms {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database clock stays at %d", now)
		}
		time.Sleep(time.Millisecond)
	}
}

// The completion indexes come with the hooks that read them, not before.
func TestCompletionIndexes(t *testing.T) {
	t.Parallel()
	s := openStore(t, "sqlite")
	spec := JobSpec{Table: ParseIdent("t"), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
		StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3, Limits: Limits{GroupBy: "site"}}
	names := func(spec JobSpec) map[string]bool {
		out := map[string]bool{}
		for _, ix := range s.Job(spec).Indexes("j") {
			out[strings.TrimPrefix(ix.Name, indexBase("j")+"_")] = true
		}
		return out
	}
	plain := names(spec)
	for _, n := range []string{"succeeded", "groups_inflight", "groups_failed", "groups_succeeded"} {
		if plain[n] {
			t.Errorf("index %s without a completion hook", n)
		}
	}
	spec.Drains, spec.GroupsDone = true, true
	all := names(spec)
	for _, n := range []string{"succeeded", "groups_inflight", "groups_failed", "groups_succeeded", "groups", "pending"} {
		if !all[n] {
			t.Errorf("index %s missing with both hooks: %v", n, all)
		}
	}
}
