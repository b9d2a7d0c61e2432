package store

import (
	"database/sql"
	"slices"
	"testing"
	"time"
)

func TestHandBack(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 3)
		wantKeys(t, "reserve w1", reserveKeys(t, j, "w1", 1, 2, 3), 1, 2, 3)
		wantKeys(t, "reserve w2", reserveKeys(t, j, "w2", 4), 4)
		wantKeys(t, "reserve w3", reserveKeys(t, j, "w3", 5), 5)
		setAgo(t, j, "rtime", time.Hour, 1) // oldest: claimed first
		if rows := claimRows(t, j, "w1", 1); len(rows) != 1 {
			t.Fatalf("claimed %d rows, want 1", len(rows))
		}
		running := snapshot(t, j, 1)

		n, err := j.HandBack(ctx, s.DB, "w1", "w3")
		if err != nil || n != 3 {
			t.Fatalf("HandBack(w1, w3) = %d, %v; want 3", n, err)
		}
		for _, id := range []int64{2, 3, 5} {
			r := getTask(t, j, id)
			if r.RID.Valid || r.HasRTime || r.RTimes.Valid || r.Started {
				t.Fatalf("task %d after HandBack = %+v, want released with no try counted", id, r)
			}
		}
		if after := snapshot(t, j, 1); !slices.Equal(running, after) {
			t.Fatalf("HandBack touched a running task: %v → %v", running, after)
		}
		if r := getTask(t, j, 4); r.RID.String != "w2" {
			t.Fatalf("HandBack released another worker's task: %+v", r)
		}
		if n, err := j.HandBack(ctx, s.DB); err != nil || n != 0 {
			t.Fatalf("HandBack() = %d, %v", n, err)
		}
		// Released rows are pending again.
		wantKeys(t, "reserve after HandBack", reserveN(t, j, "w4", 10), 2, 3, 5, 6)
	})
}

func TestRecoverWorkers(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 2)
		// 1: reserved, unstarted. 2: running, first try. 3: running, last
		// try. 4: running for another worker. 5: succeeded. 6: untouched.
		mustExec(t, s, `UPDATE tasks SET rtimes = 1 WHERE id = 3`)
		startTask(t, j, "w1", 2)
		startTask(t, j, "w1", 3)
		startTask(t, j, "w2", 4)
		f5 := startTask(t, j, "w1", 5)
		if !finishTask(t, j, f5, Outcome{Success: true}) {
			t.Fatal("finish task 5")
		}
		wantKeys(t, "reserve 1", reserveKeys(t, j, "w1", 1), 1)
		keep := map[int64][]sql.NullString{4: snapshot(t, j, 4), 5: snapshot(t, j, 5), 6: snapshot(t, j, 6)}

		released, relaunched, failed, err := j.RecoverWorkers(ctx, s.DB, []string{"w1", "w9"}, "worker w1 died")
		if err != nil {
			t.Fatal(err)
		}
		if released != 1 {
			t.Fatalf("released = %d, want 1", released)
		}
		wantKeys(t, "relaunched", sortedInts(t, relaunched), 2)
		wantKeys(t, "failed", sortedInts(t, failed), 3)

		if r := getTask(t, j, 1); r.RID.Valid || r.HasRTime || r.RTimes.Valid {
			t.Fatalf("task 1 = %+v, want released", r)
		}
		r := getTask(t, j, 2)
		if r.RID.Valid || r.HasRTime || r.Started || r.Ended || r.OK.Valid || r.RTimes.Int64 != 1 {
			t.Fatalf("task 2 = %+v, want pending again with its try kept", r)
		}
		r = getTask(t, j, 3)
		if r.RID.String != "w1" || !r.Started || !r.Ended || !r.OK.Valid || r.OK.Bool ||
			r.Why.String != "worker w1 died" || r.RTimes.Int64 != 2 {
			t.Fatalf("task 3 = %+v, want failed for good by w1 with the reason", r)
		}
		for id, before := range keep {
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Fatalf("task %d changed: %v → %v", id, before, after)
			}
		}
		// Task 2 is pending; task 3 never comes back.
		wantKeys(t, "reserve after recovery", reserveN(t, j, "w3", 10), 1, 2, 6)

		released, relaunched, failed, err = j.RecoverWorkers(ctx, s.DB, nil, "x")
		if err != nil || released != 0 || relaunched != nil || failed != nil {
			t.Fatalf("RecoverWorkers(none) = %d, %v, %v, %v", released, relaunched, failed, err)
		}
	})
}

func TestRecoverExpired(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 5, 3)
		// 1: running an hour. 2: running a moment. 3: last try, running an
		// hour. 4: reserved an hour ago, never started. 5: finished long ago.
		mustExec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 3`)
		startTask(t, j, "w1", 1)
		f2 := startTask(t, j, "w1", 2)
		startTask(t, j, "w2", 3)
		f5 := startTask(t, j, "w2", 5)
		finishTask(t, j, f5, Outcome{Success: false, Error: "x"})
		wantKeys(t, "reserve 4", reserveKeys(t, j, "w3", 4), 4)
		setAgo(t, j, "started", time.Hour, 1, 3, 5)
		setAgo(t, j, "rtime", time.Hour, 1, 2, 3, 4, 5)
		keep := map[int64][]sql.NullString{2: snapshot(t, j, 2), 4: snapshot(t, j, 4), 5: snapshot(t, j, 5)}

		relaunched, failed, err := j.RecoverExpired(ctx, s.DB, 10*time.Minute, "ran past its deadline")
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "relaunched", sortedInts(t, relaunched), 1)
		wantKeys(t, "failed", sortedInts(t, failed), 3)
		if r := getTask(t, j, 1); r.RID.Valid || r.Started || r.RTimes.Int64 != 1 {
			t.Fatalf("task 1 = %+v, want pending with its try kept", r)
		}
		if r := getTask(t, j, 3); r.RID.String != "w2" || !r.Ended || r.OK.Bool || r.Why.String != "ran past its deadline" || r.RTimes.Int64 != 3 {
			t.Fatalf("task 3 = %+v, want failed for good", r)
		}
		for id, before := range keep {
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Fatalf("task %d changed: %v → %v", id, before, after)
			}
		}

		// A short limit, waited for on the database clock.
		finishTask(t, j, f2, Outcome{Success: true})
		startTask(t, j, "w1", 1)
		if relaunched, failed, err := j.RecoverExpired(ctx, s.DB, time.Minute, "expired"); err != nil || relaunched != nil || failed != nil {
			t.Fatalf("RecoverExpired(1m) right after the start = %v, %v, %v", relaunched, failed, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			relaunched, failed, err = j.RecoverExpired(ctx, s.DB, 200*time.Millisecond, "expired")
			if err != nil {
				t.Fatal(err)
			}
			if len(relaunched)+len(failed) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("task 1 never expired with a 200ms limit")
			}
			time.Sleep(20 * time.Millisecond)
		}
		wantKeys(t, "relaunched after 200ms", sortedInts(t, relaunched), 1)
		wantKeys(t, "failed after 200ms", sortedInts(t, failed))
		if r := getTask(t, j, 1); r.RID.Valid || r.Started || r.RTimes.Int64 != 2 {
			t.Fatalf("task 1 = %+v, want pending after two tries", r)
		}
	})
}

func TestRelaunchFailed(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 5, 3)
		// 1: failed just now. 2: failed long ago, tries used up. 3: failed
		// long ago. 4: succeeded long ago. 5: running.
		mustExec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 2`)
		for _, id := range []int64{1, 2, 3} {
			finishTask(t, j, startTask(t, j, "w1", id), Outcome{Success: false, Error: "boom"})
		}
		finishTask(t, j, startTask(t, j, "w1", 4), Outcome{Success: true})
		startTask(t, j, "w1", 5)
		setAgo(t, j, "ended", time.Hour, 2, 3, 4)
		keep := map[int64][]sql.NullString{2: snapshot(t, j, 2), 4: snapshot(t, j, 4), 5: snapshot(t, j, 5)}

		keys, err := j.RelaunchFailed(ctx, s.DB, Backoff{Base: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchFailed(10m)", sortedInts(t, keys), 3)
		r := getTask(t, j, 3)
		if r.RID.Valid || r.HasRTime || r.Started || r.Ended || r.OK.Valid || r.RTimes.Int64 != 1 {
			t.Fatalf("task 3 = %+v, want pending with its try kept", r)
		}
		if r := getTask(t, j, 1); !r.Ended || r.OK.Bool {
			t.Fatalf("task 1 relaunched before its backoff: %+v", r)
		}
		setAgo(t, j, "ended", 20*time.Minute, 1)
		keys, err = j.RelaunchFailed(ctx, s.DB, Backoff{Base: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchFailed after the backoff", sortedInts(t, keys), 1)
		for id, before := range keep {
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Fatalf("task %d changed: %v → %v", id, before, after)
			}
		}
	})
}

func TestRelaunchKeys(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 5, 3)
		// 1: succeeded on its second try. 2: failed once. 3: reserved.
		// 4: running. 5: never reserved.
		mustExec(t, s, `UPDATE tasks SET rtimes = 1 WHERE id = 1`)
		finishTask(t, j, startTask(t, j, "w1", 1), Outcome{Success: true})
		finishTask(t, j, startTask(t, j, "w1", 2), Outcome{Success: false, Error: "boom"})
		wantKeys(t, "reserve 3", reserveKeys(t, j, "w1", 3), 3)
		startTask(t, j, "w1", 4)
		keep := map[int64][]sql.NullString{3: snapshot(t, j, 3), 4: snapshot(t, j, 4)}

		keys, err := j.RelaunchKeys(ctx, s.DB, []any{int64(1), int64(2), int64(3), int64(4), int64(5), int64(99)})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchKeys", sortedInts(t, keys), 1, 2, 5)
		if r := getTask(t, j, 1); r.RID.Valid || r.Started || r.Ended || r.OK.Valid || !r.RTimes.Valid || r.RTimes.Int64 != 0 {
			t.Fatalf("task 1 = %+v, want pending with a new cycle of tries (0)", r)
		}
		if r := getTask(t, j, 2); r.RID.Valid || r.Ended || r.OK.Valid || r.RTimes.Int64 != 1 {
			t.Fatalf("task 2 = %+v, want pending with its try kept", r)
		}
		for id, before := range keep {
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Fatalf("RelaunchKeys touched in-flight task %d: %v → %v", id, before, after)
			}
		}
		wantKeys(t, "reserve after RelaunchKeys", reserveN(t, j, "w2", 10), 1, 2, 5)
		if keys, err := j.RelaunchKeys(ctx, s.DB, nil); err != nil || keys != nil {
			t.Fatalf("RelaunchKeys(none) = %v, %v", keys, err)
		}
	})
}

// TestRelaunchKeysFailedFinal re-drives a task that failed for good, as a
// relaunching query selecting finished rows does. The task must come out
// either relaunched and runnable, or untouched and still failed for good:
// never reset to a state no dispatcher will reserve (invariant 4).
func TestRelaunchKeysFailedFinal(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 1, 2)
		mustExec(t, s, `UPDATE tasks SET rtimes = 1 WHERE id = 1`)
		finishTask(t, j, startTask(t, j, "w1", 1), Outcome{Success: false, Error: "boom"})
		if c, err := j.Count(ctx, s.DB); err != nil || c.Failed != 1 {
			t.Fatalf("Count before = %+v, %v; want 1 failed for good", c, err)
		}
		before := snapshot(t, j, 1)

		keys, err := j.RelaunchKeys(ctx, s.DB, []any{int64(1)})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			if after := snapshot(t, j, 1); !slices.Equal(before, after) {
				t.Fatalf("RelaunchKeys reported nothing but changed the row: %v → %v", before, after)
			}
			return
		}
		got := reserveN(t, j, "w2", 10)
		if !slices.Equal(got, []int64{1}) {
			t.Fatalf("RelaunchKeys relaunched failed-for-good task 1 (now %+v), but no Reserve will take it: "+
				"it is neither pending nor failed, stranded for good", getTask(t, j, 1))
		}
	})
}
