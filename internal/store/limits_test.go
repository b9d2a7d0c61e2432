package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitedJob is newJob's table with limits, its rows put in groups by
// the payload column: groups maps a group to its keys (a "" group is
// NULL).
func limitedJob(t *testing.T, s *Store, table string, n int, l Limits, groups map[string][]int) *JobSQL {
	t.Helper()
	j := newJob(t, s, table, n, 3)
	for g, keys := range groups {
		for _, k := range keys {
			var v any = g
			if g == "" {
				v = nil
			}
			mustExec(t, s, `UPDATE `+j.t+` SET payload = ? WHERE id = ?`, v, k)
		}
	}
	spec := j.Spec()
	spec.Limits = l
	j = s.Job(spec)
	if err := j.CreateIndexes(t.Context(), table, func(string) {}); err != nil {
		t.Fatal(err)
	}
	return j
}

func reserveLimited(t *testing.T, j *JobSQL, cur *GroupCursor, shares ...Share) Limited {
	t.Helper()
	var out Limited
	err := j.s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = j.ReserveLimited(ctx, tx, "limited", shares, cur)
		return err
	})
	if err != nil {
		t.Fatalf("ReserveLimited(%v): %v", shares, err)
	}
	return out
}

// groupsHeld counts the rows reserved or running by group (payload).
func groupsHeld(t *testing.T, j *JobSQL) map[string]int {
	t.Helper()
	rows, err := j.s.DB.QueryContext(t.Context(), `SELECT COALESCE(payload, ''), COUNT(*) FROM `+j.t+` WHERE rid IS NOT NULL AND ended IS NULL GROUP BY payload`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var g string
		var n int
		if err := rows.Scan(&g, &n); err != nil {
			t.Fatal(err)
		}
		out[g] = n
	}
	return out
}

func TestReserveLimitedMaxRunning(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := limitedJob(t, s, "maxrun", 20, Limits{MaxRunning: 3}, nil)
		cur := &GroupCursor{}
		out := reserveLimited(t, j, cur, Share{"w1", 5}, Share{"w2", 5})
		if handed(out) != 3 || len(out.Keys[0]) != 3 {
			t.Fatalf("first round handed %v, want 3 to w1", out.Keys)
		}
		if out.HeldBack != 7 || out.Reason != "max_running 3 reached" {
			t.Fatalf("held back %d (%q), want 7 free slots (max_running 3 reached)", out.HeldBack, out.Reason)
		}
		// Started rows count as much as reserved ones.
		mustExec(t, s, `UPDATE maxrun SET started = `+s.Dialect.Now()+` WHERE rid = 'w1'`)
		if out := reserveLimited(t, j, cur, Share{"w2", 5}); handed(out) != 0 {
			t.Fatalf("at the limit, handed %v", out.Keys)
		}
		// One ends: one more may go.
		mustExec(t, s, `UPDATE maxrun SET ended = `+s.Dialect.Now()+`, ok = TRUE WHERE id = (SELECT MIN(id) FROM maxrun WHERE rid = 'w1')`)
		if out := reserveLimited(t, j, cur, Share{"w2", 5}); handed(out) != 1 {
			t.Fatalf("after one ended, handed %v, want 1", out.Keys)
		}
		notes, err := s.LimitNotes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n := notes["limited"]; n.HeldBack != 4 || n.Reason != "max_running 3 reached" {
			t.Fatalf("noted %+v, want 4 held back by max_running", n)
		}
		// With nothing pending, nothing is held back.
		mustExec(t, s, `UPDATE maxrun SET rtimes = 3 WHERE rid IS NULL`)
		mustExec(t, s, `UPDATE maxrun SET ended = `+s.Dialect.Now()+`, ok = TRUE WHERE rid IS NOT NULL`)
		if out := reserveLimited(t, j, cur, Share{"w2", 5}); handed(out) != 0 || out.HeldBack != 0 || out.Reason != "" {
			t.Fatalf("empty backlog: %+v", out)
		}
	})
}

func TestReserveLimitedSharesGroupsFairly(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		// A hot group first in key order, two small ones, and rows with
		// no group at all.
		groups := map[string][]int{"a": {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "b": {11, 12}, "c": {13}, "": {14, 15}}
		j := limitedJob(t, s, "fair", 15, Limits{GroupBy: "payload"}, groups)
		cur := &GroupCursor{}
		out := reserveLimited(t, j, cur, Share{"w1", 4}, Share{"w2", 4})
		if got := groupsHeld(t, j); got["a"] != 3 || got["b"] != 2 || got["c"] != 1 || got[""] != 2 {
			t.Fatalf("8 slots over groups a(10) b(2) c(1) null(2): %v, want a 3, b 2, c 1, null 2", got)
		}
		if len(out.Keys[0]) != 4 || len(out.Keys[1]) != 4 {
			t.Fatalf("shares got %d and %d, want 4 each", len(out.Keys[0]), len(out.Keys[1]))
		}
	})
}

func TestReserveLimitedTurnsOverGroups(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		groups := map[string][]int{"a": {1, 2, 3}, "b": {4, 5, 6}, "c": {7, 8, 9}}
		j := limitedJob(t, s, "turns", 9, Limits{GroupBy: "payload"}, groups)
		cur := &GroupCursor{}
		var order []string
		for range 6 {
			out := reserveLimited(t, j, cur, Share{"w1", 1})
			if handed(out) != 1 {
				t.Fatalf("handed %v, want one row", out.Keys)
			}
			var g string
			if err := s.DB.QueryRow(s.q(`SELECT payload FROM turns WHERE id = ?`), out.Keys[0][0]).Scan(&g); err != nil {
				t.Fatal(err)
			}
			order = append(order, g)
		}
		if got := strings.Join(order, ""); got != "abcabc" {
			t.Fatalf("one slot a round served groups %s, want abcabc", got)
		}
	})
}

func TestReserveLimitedMaxRunningPerGroup(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		groups := map[string][]int{"a": {1, 2, 3, 4, 5, 6}, "b": {7, 8, 9}, "c": {10}}
		j := limitedJob(t, s, "pergroup", 10, Limits{GroupBy: "payload", MaxRunningPerGroup: 2}, groups)
		cur := &GroupCursor{}
		out := reserveLimited(t, j, cur, Share{"w1", 10})
		if got := groupsHeld(t, j); got["a"] != 2 || got["b"] != 2 || got["c"] != 1 {
			t.Fatalf("held %v, want a 2, b 2, c 1", got)
		}
		if out.HeldBack != 5 || out.Reason != "2 groups at max_running_per_group" {
			t.Fatalf("held back %d (%q), want 5 (2 groups at max_running_per_group)", out.HeldBack, out.Reason)
		}
		if out := reserveLimited(t, j, cur, Share{"w2", 10}); handed(out) != 0 {
			t.Fatalf("every group at its limit, handed %v", out.Keys)
		}
		mustExec(t, s, `UPDATE pergroup SET ended = `+s.Dialect.Now()+`, ok = TRUE WHERE id = 1`)
		reserveLimited(t, j, cur, Share{"w2", 10})
		if got := groupsHeld(t, j); got["a"] != 2 || got["b"] != 2 {
			t.Fatalf("after a row of a ended: %v, want a back at 2", got)
		}
	})
}

func TestReserveLimitedRate(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := limitedJob(t, s, "rated", 50, Limits{Rate: Rate{N: 20, Per: 2 * time.Second}}, nil)
		cur := &GroupCursor{}
		// After a quiet spell, a tenth of N goes at once.
		if out := reserveLimited(t, j, cur, Share{"w1", 50}); handed(out) != 2 {
			t.Fatalf("first round handed %d, want 2", handed(out))
		}
		out := reserveLimited(t, j, cur, Share{"w1", 50})
		if handed(out) != 0 || out.Wake <= 0 || out.Wake > 100*time.Millisecond || !strings.HasPrefix(out.Reason, "rate_limit 20/2s") {
			t.Fatalf("at once again: handed %d, wake %v, reason %q; want none, a wake within the 100ms pace", handed(out), out.Wake, out.Reason)
		}
		time.Sleep(out.Wake + 10*time.Millisecond)
		if out := reserveLimited(t, j, cur, Share{"w1", 50}); handed(out) != 1 {
			t.Fatalf("a pace later handed %d, want 1", handed(out))
		}
	})
}

func TestReserveLimitedRatePerGroup(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		groups := map[string][]int{"a": {1, 2, 3}, "b": {4, 5, 6}}
		j := limitedJob(t, s, "ratedg", 6, Limits{GroupBy: "payload", RatePerGroup: Rate{N: 1, Per: time.Hour}}, groups)
		cur := &GroupCursor{}
		out := reserveLimited(t, j, cur, Share{"w1", 6})
		if got := groupsHeld(t, j); got["a"] != 1 || got["b"] != 1 {
			t.Fatalf("1/1h per group: %v, want one each", got)
		}
		// They end; the hour is not over: nothing more.
		mustExec(t, s, `UPDATE ratedg SET ended = `+s.Dialect.Now()+`, ok = TRUE WHERE rid IS NOT NULL`)
		out = reserveLimited(t, j, cur, Share{"w1", 6})
		if handed(out) != 0 || out.Reason != "2 groups at rate_limit_per_group" || out.Wake < 59*time.Minute {
			t.Fatalf("within the hour: handed %d, reason %q, wake %v", handed(out), out.Reason, out.Wake)
		}
	})
}

// checkHeld says whether the rows in flight by group exceed the caps.
func checkHeld(held map[string]int, maxAll, maxGroup int) error {
	total := 0
	for g, n := range held {
		total += n
		if n > maxGroup {
			return fmt.Errorf("group %s holds %d, over max_running_per_group %d", g, n, maxGroup)
		}
	}
	if total > maxAll {
		return fmt.Errorf("%d in flight, over max_running %d", total, maxAll)
	}
	return nil
}

// TestReserveLimitedConcurrently races dispatchers with their own
// connections: the limit counts what the others reserved.
func TestReserveLimitedConcurrently(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		groups := map[string][]int{}
		for i := 1; i <= 200; i++ {
			g := fmt.Sprint("g", i%4)
			groups[g] = append(groups[g], i)
		}
		j := limitedJob(t, s, "raced", 200, Limits{MaxRunning: 7, GroupBy: "payload", MaxRunningPerGroup: 2}, groups)
		var wg sync.WaitGroup
		errs := make(chan error, 4) // one per racer: each stops at its first error
		for d := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cur := &GroupCursor{}
				for r := range 15 {
					err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
						_, err := j.ReserveLimited(ctx, tx, "limited", []Share{{fmt.Sprintf("d%d-%d", d, r), 5}}, cur)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
					// Finish some, as workers would.
					if _, err := s.Exec(t.Context(), `UPDATE raced SET ended = `+s.Dialect.Now()+`, ok = TRUE WHERE rid = ?`, fmt.Sprintf("d%d-%d", d, r-1)); err != nil {
						errs <- err
						return
					}
					if err := checkHeld(groupsHeld(t, j), 7, 2); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
