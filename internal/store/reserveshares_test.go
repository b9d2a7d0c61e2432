package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// reserveShares reserves shares and returns how many rows each got, after
// checking that the keys it returned are the ones the table now holds.
func reserveShares(t *testing.T, j *JobSQL, shares ...Share) []int {
	t.Helper()
	before := map[string][]int64{}
	for _, sh := range shares {
		before[sh.Worker] = reservedBy(t, j, sh.Worker)
	}
	var keys [][]any
	err := j.s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		keys, err = j.ReserveShares(ctx, tx, shares)
		return err
	})
	if err != nil {
		t.Fatalf("ReserveShares(%v): %v", shares, err)
	}
	got := make([]int, len(keys))
	for i, sh := range shares {
		got[i] = len(keys[i])
		want := append(before[sh.Worker], sortedInts(t, keys[i])...)
		slices.Sort(want)
		if held := reservedBy(t, j, sh.Worker); !slices.Equal(held, want) {
			t.Fatalf("ReserveShares returned %v for %s, which now holds %v (before: %v)", keys[i], sh.Worker, held, before[sh.Worker])
		}
	}
	return got
}

// reservedBy lists the keys reserved for worker, in key order.
func reservedBy(t *testing.T, j *JobSQL, worker string) []int64 {
	t.Helper()
	rows, err := j.s.DB.QueryContext(t.Context(), j.s.q(`SELECT id FROM `+j.t+` WHERE rid = ? ORDER BY id`), worker)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var keys []int64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestReserveShares(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 20, 3)
		// Row 2 used all its tries; row 4 is already someone's.
		mustExec(t, s, `UPDATE tasks SET rtimes = 3 WHERE id = 2`)
		mustExec(t, s, `UPDATE tasks SET rid = 'w0' WHERE id = 4`)

		got := reserveShares(t, j, Share{"w1", 3}, Share{"w2", 4}, Share{"w3", 2})
		if !slices.Equal(got, []int{3, 4, 2}) {
			t.Fatalf("ReserveShares got %v, want [3 4 2]", got)
		}
		// Contiguous runs of keys, in share order.
		for w, want := range map[string][]int64{"w1": {1, 3, 5}, "w2": {6, 7, 8, 9}, "w3": {10, 11}, "w0": {4}} {
			if keys := reservedBy(t, j, w); !slices.Equal(keys, want) {
				t.Errorf("%s holds %v, want %v", w, keys, want)
			}
		}
		if r := getTask(t, j, 6); !r.HasRTime || r.Started || r.RTimes.Valid {
			t.Errorf("task 6 after ReserveShares = %+v, want rtime set, not started, no try", r)
		}
		if r := getTask(t, j, 2); r.RID.Valid {
			t.Errorf("tried-out task 2 was reserved: %+v", r)
		}

		// 9 rows left (12…20) for shares of 8 and 8: each shrinks in
		// proportion, rather than the first taking 8 and the second 1.
		got = reserveShares(t, j, Share{"w4", 8}, Share{"w5", 8})
		if !slices.Equal(got, []int{5, 4}) {
			t.Fatalf("ReserveShares on a short backlog got %v, want [5 4]", got)
		}
		if keys := reservedBy(t, j, "w4"); !slices.Equal(keys, []int64{12, 13, 14, 15, 16}) {
			t.Errorf("w4 holds %v, want 12…16", keys)
		}

		// Nothing asked, nothing left.
		if got := reserveShares(t, j, Share{"w6", 0}); !slices.Equal(got, []int{0}) {
			t.Errorf("ReserveShares of nothing got %v", got)
		}
		if got := reserveShares(t, j, Share{"w6", 5}, Share{"w7", 5}); !slices.Equal(got, []int{0, 0}) {
			t.Errorf("ReserveShares with nothing pending got %v", got)
		}
	})
}

// TestReserveSharesConcurrently races dispatchers reserving shares: no row
// may be reserved twice, and none may be left behind.
func TestReserveSharesConcurrently(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const rows, goroutines = 300, 4
		j := newJob(t, s, "tasks", rows, 3)
		errs := make([]error, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range goroutines {
			shares := []Share{{fmt.Sprintf("g%da", g), 5}, {fmt.Sprintf("g%db", g), 3}}
			wg.Go(func() {
				<-start
				for {
					var got []int
					err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
						keys, err := j.ReserveShares(ctx, tx, shares)
						if err != nil {
							return err
						}
						got = []int{len(keys[0]), len(keys[1])}
						return nil
					})
					if err != nil {
						errs[g] = err
						return
					}
					if got[0] > 5 || got[1] > 3 {
						errs[g] = fmt.Errorf("shares of 5 and 3 got %v", got)
						return
					}
					if got[0]+got[1] == 0 {
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		for g, err := range errs {
			if err != nil {
				t.Errorf("goroutine %d: %v", g, err)
			}
		}
		var reserved, distinct int
		if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*), COUNT(DISTINCT id) FROM tasks WHERE rid IS NOT NULL`).
			Scan(&reserved, &distinct); err != nil {
			t.Fatal(err)
		}
		if reserved != rows || distinct != rows {
			t.Fatalf("%d rows reserved (%d distinct), want all %d", reserved, distinct, rows)
		}
	})
}
