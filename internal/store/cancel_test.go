package store

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"
)

// Cancel fails for good every task not done yet — pending, reserved,
// running, failed with tries left — and leaves alone those that succeeded
// or already failed for good. A reservation it cancelled cannot be
// claimed, a running try's result is fenced off, and the running try's
// worker gets a cancel row.
func TestCancel(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 6, 3)
		// 1 pending, 2 reserved, 3 running, 4 succeeded, 5 failed for
		// good, 6 failed with tries left; 99 does not exist.
		running := startTask(t, j, "w1", 3)
		reserveKeys(t, j, "w1", 2) // after the claim, which takes all of w1's
		if !finishTask(t, j, startTask(t, j, "w2", 4), Outcome{Success: true}) {
			t.Fatal("finish of task 4 not applied")
		}
		for range 3 {
			f := startTask(t, j, "w2", 5)
			if !finishTask(t, j, f, Outcome{Success: false, Error: "five"}) {
				t.Fatal("finish of task 5 not applied")
			}
			mustExec(t, s, `UPDATE tasks SET rid = NULL, started = NULL, ended = NULL, ok = NULL WHERE id = 5 AND rtimes < 3`)
		}
		if !finishTask(t, j, startTask(t, j, "w2", 6), Outcome{Success: false, Error: "six"}) {
			t.Fatal("finish of task 6 not applied")
		}
		untouched := map[int64][]sql.NullString{4: snapshot(t, j, 4), 5: snapshot(t, j, 5)}

		keys, err := cancelKeys(ctx, s, j, 1, 2, 3, 4, 5, 6, 99)
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "Cancel", keys, 1, 2, 3, 6)
		for _, id := range keys {
			r := getTask(t, j, id)
			if !r.OK.Valid || r.OK.Bool || !r.Ended || !r.Started || r.RTimes.Int64 != 3 || r.Why.String != CancelReason {
				t.Errorf("task %d after Cancel = %+v, want failed for good with %q", id, r, CancelReason)
			}
		}
		for id, before := range untouched {
			if after := snapshot(t, j, id); !slices.Equal(before, after) {
				t.Errorf("Cancel changed task %d: %v → %v", id, before, after)
			}
		}
		if r := getTask(t, j, 2); r.RID.String != "w1" {
			t.Errorf("cancelled reservation = %+v, want still w1's", r)
		}
		if rows := claimRows(t, j, "w1", 10); len(rows) != 0 {
			t.Errorf("Claim after Cancel took %d rows, want none (task 2 was cancelled)", len(rows))
		}
		if finishTask(t, j, running, Outcome{Success: true}) {
			t.Error("the cancelled running try's Finish applied")
		}
		if ok, err := j.FenceHolds(ctx, s.DB, running); err != nil || ok {
			t.Errorf("FenceHolds of the cancelled try = %v, %v; want false", ok, err)
		}
		c, err := j.Count(ctx, s.DB)
		if err != nil || c.Failed != 5 || c.Succeeded != 1 || c.Pending() != 0 || c.Running != 0 || c.Reserved != 0 {
			t.Errorf("Count after Cancel = %+v (%v), want 5 failed, 1 succeeded", c, err)
		}

		// Only the running try has a cancel row, under its worker.
		want := []CancelledTry{{Job: "job", Task: "3", Worker: "w1"}}
		if got, err := s.Cancels(ctx, "w1"); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Cancels(w1) = %v, %v; want %v", got, err, want)
		}
		if got, err := s.Cancels(ctx, "w2"); err != nil || len(got) != 0 {
			t.Errorf("Cancels(w2) = %v, %v; want none", got, err)
		}
		if again, err := cancelKeys(ctx, s, j, 1, 2, 3); err != nil || len(again) != 0 {
			t.Errorf("Cancel of cancelled tasks = %v, %v; want none", again, err)
		}
		// Retried, the task runs again.
		if back, err := j.Redrive(ctx, s.DB, []any{int64(3)}); err != nil || len(back) != 1 {
			t.Fatalf("Redrive of a cancelled task = %v, %v", back, err)
		}
		if f := startTask(t, j, "w1", 3); !finishTask(t, j, f, Outcome{Success: true}) {
			t.Error("the retried task's Finish not applied")
		}
	})
}

// A cancel row is deleted once its worker acted on it, or by
// PruneCancels once it is old.
func TestForgetAndPruneCancels(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 3, 3)
		for id := int64(1); id <= 3; id++ {
			startTask(t, j, "w1", id)
		}
		if keys, err := cancelKeys(ctx, s, j, 1, 2, 3); err != nil || len(keys) != 3 {
			t.Fatalf("Cancel = %v, %v", keys, err)
		}
		if err := s.ForgetCancels(ctx, []CancelledTry{{Job: "job", Task: "1", Worker: "w1"}}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, s, `UPDATE pampa_cancels SET cancelled_at = `+s.Dialect.Ago()+` WHERE task = '2'`, s.Dialect.AgoArg(time.Hour))
		if n, err := s.PruneCancels(ctx, time.Minute); err != nil || n != 1 {
			t.Fatalf("PruneCancels = %d, %v; want the hour-old row", n, err)
		}
		want := []CancelledTry{{Job: "job", Task: "3", Worker: "w1"}}
		if got, err := s.Cancels(ctx, "w1"); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Cancels after forget and prune = %v, %v; want %v", got, err, want)
		}
	})
}

// A try that finishes as it is cancelled: whichever transaction commits
// first wins, and the other changes nothing.
func TestCancelRacesFinish(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 2, 3)

		// The finish holds the row when the cancel comes: it is recorded,
		// and the cancel leaves the row alone.
		f := startTask(t, j, "w1", 1)
		keys := holdWhile(t, s, func(tx *sql.Tx) {
			if ok, err := j.Finish(ctx, tx, f, Outcome{Success: true}); err != nil || !ok {
				t.Fatalf("Finish = %v, %v", ok, err)
			}
		}, func() []int64 {
			keys, err := cancelKeys(ctx, s, j, 1)
			if err != nil {
				t.Error(err)
			}
			return keys
		})
		if r := getTask(t, j, 1); len(keys) != 0 || !r.OK.Bool {
			t.Errorf("Cancel after a Finish = %v, task %+v; want nothing cancelled, the try succeeded", keys, r)
		}
		if got, _ := s.Cancels(ctx, "w1"); len(got) != 0 {
			t.Errorf("cancel rows after a lost Cancel: %v", got)
		}

		// The cancel holds the row when the finish comes: the finish is
		// not applied.
		f = startTask(t, j, "w1", 2)
		var applied bool
		holdWhile(t, s, func(tx *sql.Tx) {
			if keys, err := j.Cancel(ctx, tx, "job", []any{int64(2)}); err != nil || len(keys) != 1 {
				t.Fatalf("Cancel = %v, %v", keys, err)
			}
		}, func() []int64 {
			err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
				var err error
				applied, err = j.Finish(ctx, tx, f, Outcome{Success: true})
				return err
			})
			if err != nil {
				t.Error(err)
			}
			return nil
		})
		if r := getTask(t, j, 2); applied || r.OK.Bool || r.Why.String != CancelReason {
			t.Errorf("Finish after a Cancel applied %v, task %+v; want dropped, the task cancelled", applied, r)
		}
	})
}

// holdWhile runs first in a transaction left open while second starts in
// another goroutine, then commits it, and returns what second returned.
func holdWhile(t *testing.T, s *Store, first func(tx *sql.Tx), second func() []int64) []int64 {
	t.Helper()
	tx, err := s.DB.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	first(tx)
	done := make(chan []int64, 1)
	go func() { done <- second() }()
	time.Sleep(100 * time.Millisecond) // let second reach the row
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		return got
	case <-time.After(30 * time.Second):
		t.Fatal("the second transaction did not end")
	}
	return nil
}

// cancelKeys cancels tasks of the job "job" in a transaction of their own.
func cancelKeys(ctx context.Context, s *Store, j *JobSQL, ids ...int64) ([]int64, error) {
	var keys []any
	err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		keys, err = j.Cancel(ctx, tx, "job", int64s(ids))
		return err
	})
	out := make([]int64, len(keys))
	for i, k := range keys {
		out[i], _ = k.(int64)
	}
	slices.Sort(out)
	return out, err
}
