package store

import (
	"slices"
	"testing"
)

// TestUnstartFenced checks invariant 2 for the give-back of a task taken
// ahead: Unstart lands only on the very try it names (the worker's, still
// started, not ended), and otherwise leaves the row as it is.
func TestUnstartFenced(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 3)
		refused := map[string]Fence{}
		f1 := startTask(t, j, "w1", 1)
		refused["another worker"] = Fence{Key: f1.Key, Worker: "w2", Try: f1.Try}
		refused["an earlier try"] = Fence{Key: f1.Key, Worker: "w1", Try: f1.Try - 1}
		refused["a later try"] = Fence{Key: f1.Key, Worker: "w1", Try: f1.Try + 1}
		f2 := startTask(t, j, "w1", 2)
		if !finishTask(t, j, f2, Outcome{Success: true}) {
			t.Fatal("Finish of task 2 not applied")
		}
		refused["an ended try"] = f2
		wantKeys(t, "reserve 3", reserveKeys(t, j, "w1", 3), 3)
		refused["a row never started"] = Fence{Key: int64(3), Worker: "w1", Try: 0}
		f4 := startTask(t, j, "w4", 4)
		if _, relaunched, _, err := j.RecoverWorkers(ctx, s.DB, []string{"w4"}, "gone"); err != nil || len(relaunched) != 1 {
			t.Fatalf("RecoverWorkers = %v, %v", relaunched, err)
		}
		startTask(t, j, "w5", 4)
		refused["a try relaunched and started elsewhere"] = f4

		for what, f := range refused {
			id := f.Key.(int64)
			before := snapshot(t, j, id)
			ok, err := j.Unstart(ctx, s.DB, f)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				t.Errorf("Unstart of %s (%+v) applied, want refused", what, f)
			}
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Errorf("Unstart of %s changed task %d: %v → %v", what, id, before, after)
			}
		}

		// The current try: unstarted, its try not counted, still reserved.
		if ok, err := j.Unstart(ctx, s.DB, f1); err != nil || !ok {
			t.Fatalf("Unstart of the current try = %v, %v; want applied", ok, err)
		}
		r := getTask(t, j, 1)
		if r.Started || r.RID.String != "w1" || r.RTimes.Int64 != f1.Try-1 {
			t.Fatalf("task 1 after Unstart = %+v; want reserved for w1, unstarted, %d tries", r, f1.Try-1)
		}
	})
}
