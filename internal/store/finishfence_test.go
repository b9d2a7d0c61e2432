package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
)

// countingQuerier counts the statements run through it.
type countingQuerier struct {
	Querier
	n atomic.Int64
}

func (c *countingQuerier) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	c.n.Add(1)
	return c.Querier.ExecContext(ctx, q, args...)
}

func (c *countingQuerier) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.n.Add(1)
	return c.Querier.QueryContext(ctx, q, args...)
}

func (c *countingQuerier) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.n.Add(1)
	return c.Querier.QueryRowContext(ctx, q, args...)
}

// TestFinishManyFencesBatched is TestFinishManyFences down the batched
// statement, the one workers use: every key is distinct, so the whole batch
// is one UPDATE, and each way a fence can fail (wrong worker, wrong try,
// ended, never started, given back, relaunched, pending, missing) must be
// refused by that statement's own conditions.
func TestFinishManyFencesBatched(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 60, 3)
		loadTypes(t, j)

		good := startMany(t, j, "w1", idRange(1, 30)...)
		refused := []Fence{
			{Key: int64(41), Worker: "w1", Try: startTask(t, j, "w2", 41).Try}, // another worker's
		}
		f42 := startTask(t, j, "w1", 42)
		refused = append(refused, Fence{Key: f42.Key, Worker: "w1", Try: f42.Try + 1}) // a later try
		f43 := startTask(t, j, "w1", 43)
		refused = append(refused, Fence{Key: f43.Key, Worker: "w1", Try: f43.Try - 1}) // an earlier try
		ended := startTask(t, j, "w1", 44)
		if !finishTask(t, j, ended, Outcome{Success: false, Error: "first"}) {
			t.Fatal("Finish of task 44")
		}
		refused = append(refused, ended)
		wantKeys(t, "reserve 45", reserveKeys(t, j, "w1", 45), 45)
		refused = append(refused, Fence{Key: int64(45), Worker: "w1", Try: 0}) // never started
		f46 := startTask(t, j, "w3", 46)
		if ok, err := j.Unstart(ctx, s.DB, f46); err != nil || !ok {
			t.Fatalf("Unstart(46) = %v, %v", ok, err)
		}
		refused = append(refused, Fence{Key: f46.Key, Worker: "w3", Try: f46.Try - 1}) // given back
		old47 := startTask(t, j, "w4", 47)
		if _, relaunched, _, err := j.RecoverWorkers(ctx, s.DB, []string{"w4"}, "gone"); err != nil || len(relaunched) != 1 {
			t.Fatalf("RecoverWorkers = %v, %v", relaunched, err)
		}
		startTask(t, j, "w4", 47)
		refused = append(refused, old47,
			Fence{Key: int64(48), Worker: "w1", Try: 0},   // pending
			Fence{Key: int64(9999), Worker: "w1", Try: 1}, // no such row
		)
		untouched := []int64{41, 42, 43, 44, 45, 46, 47, 48}
		before := map[int64][]sql.NullString{}
		for _, id := range untouched {
			before[id] = snapshot(t, j, id)
		}

		var fs []Fence
		var want []bool
		for i, f := range good {
			fs, want = append(fs, f), append(want, true)
			if i%3 == 1 && len(refused) > 0 {
				fs, want = append(fs, refused[0]), append(want, false)
				refused = refused[1:]
			}
		}
		if len(refused) > 0 {
			t.Fatalf("%d refused fences left out", len(refused))
		}
		outs := make([]Outcome, len(fs))
		for i, f := range fs {
			outs[i] = Outcome{Success: i%2 == 0, Error: "failed", Set: map[string]any{"payload": fmt.Sprintf("set by %v", f.Key)}}
		}
		cq := &countingQuerier{Querier: s.DB}
		applied, err := j.FinishMany(ctx, cq, fs, outs)
		if err != nil {
			t.Fatalf("FinishMany: %v", err)
		}
		if s.Dialect.BatchesFinishes() && cq.n.Load() != 1 {
			t.Fatalf("FinishMany of %d distinct keys ran %d statements, want the one batched statement", len(fs), cq.n.Load())
		}
		for i := range fs {
			if applied[i] != want[i] {
				t.Errorf("fence %+v: applied = %v, want %v", fs[i], applied[i], want[i])
			}
		}
		for _, id := range untouched {
			if after := snapshot(t, j, id); !slices.Equal(before[id], after) {
				t.Errorf("task %d, fenced out, changed: %v → %v", id, before[id], after)
			}
		}
		for _, f := range good {
			if r := getTask(t, j, toInt(t, f.Key)); !r.Ended {
				t.Errorf("task %v, fence held, not ended: %+v", f.Key, r)
			}
		}
	})
}
