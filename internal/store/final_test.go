package store

import (
	"testing"
	"time"
)

// A final outcome fails its task for good in the statement that records
// it: the try count is raised to MaxTryTimes (never lowered), so that no
// relaunch takes the row again. Row by row (Finish) and batched
// (FinishMany), beside outcomes that are not final and must keep their
// count; a success marked final is a plain success.
func TestFinishFinal(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 9, 3)
		loadTypes(t, j)

		// Row by row: task 1 fails for good on its first try.
		if !finishTask(t, j, startTask(t, j, "w1", 1), Outcome{Error: "bad input", Final: true}) {
			t.Fatal("final Finish not applied")
		}
		// Batched: 2, 3 and 4 fail for good (4 setting a column), 5
		// fails with tries left, 6 succeeds though marked final.
		fs := startMany(t, j, "w2", 2, 3, 4, 5, 6)
		outs := []Outcome{
			{Error: "bad 2", Final: true},
			{Error: "bad 3", Final: true},
			{Error: "bad 4", Final: true, Set: map[string]any{"payload": "why 4"}},
			{Error: "try again"},
			{Success: true, Final: true},
		}
		for i, ok := range finishMany(t, j, fs, outs) {
			if !ok {
				t.Fatalf("outcome of task %v not applied", fs[i].Key)
			}
		}
		want := map[int64]struct {
			tries int64
			ok    bool
			why   string
		}{1: {3, false, "bad input"}, 2: {3, false, "bad 2"}, 3: {3, false, "bad 3"}, 4: {3, false, "bad 4"}, 5: {1, false, "try again"}, 6: {1, true, ""}}
		for id, w := range want {
			r := getTask(t, j, id)
			if r.RTimes.Int64 != w.tries || r.OK.Bool != w.ok || r.Why.String != w.why {
				t.Errorf("task %d = %+v, want %d tries, ok %v, error %q", id, r, w.tries, w.ok, w.why)
			}
		}
		if r := getTask(t, j, 4); r.Payload.String != "why 4" {
			t.Errorf("task 4's set column = %q, want it written with the final failure", r.Payload.String)
		}
		setAgo(t, j, "ended", time.Hour, 1, 2, 3, 4, 5)
		relaunched, err := j.RelaunchFailed(t.Context(), s.DB, Backoff{Base: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchFailed after final failures", sortedInts(t, relaunched), 5)
		failed, err := j.Failed(t.Context(), s.DB, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) != 4 {
			t.Errorf("Failed lists %d tasks, want the 4 failed for good: %+v", len(failed), failed)
		}

		// A count above MaxTryTimes (lowered since) is kept: task 7 ran
		// twice under a limit of 3, then fails for good under a limit of 1.
		f := startTask(t, j, "w3", 7)
		finishTask(t, j, f, Outcome{Error: "first"})
		setAgo(t, j, "ended", time.Hour, 7)
		if _, err := j.RelaunchFailed(t.Context(), s.DB, Backoff{Base: time.Minute}); err != nil {
			t.Fatal(err)
		}
		f = startTask(t, j, "w3", 7)
		strict := s.Job(JobSpec{Table: j.spec.Table, PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime",
			ReservationTimes: "rtimes", StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 1})
		if !finishTask(t, strict, f, Outcome{Error: "second", Final: true}) {
			t.Fatal("final Finish of try 2 not applied")
		}
		if r := getTask(t, j, 7); r.RTimes.Int64 != 2 {
			t.Errorf("task 7 tries = %d after a final failure under a lower limit, want 2 (never lowered)", r.RTimes.Int64)
		}
	})
}
