package store

import (
	"testing"
	"time"
)

// The wait doubles from Base with each try, up to Max; without Max it is
// Base at every try.
func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	exp := Backoff{Base: 10 * time.Second, Max: 10 * time.Minute}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 10 * time.Minute, 10 * time.Minute}
	for i, w := range want {
		if got := exp.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := (Backoff{Base: 7 * time.Second}).Delay(5); got != 7*time.Second {
		t.Errorf("fixed Delay(5) = %s, want 7s", got)
	}
}

// runAtAhead is, for each key, how far ahead of now its run-at is, in
// seconds.
func runAtAhead(t *testing.T, j *JobSQL, keys ...int64) map[int64]float64 {
	t.Helper()
	d := j.s.Dialect
	out := map[int64]float64{}
	for _, k := range keys {
		var s float64
		q := j.s.q(`SELECT -` + d.SecondsSince("run_at") + ` FROM ` + j.t + ` WHERE id = ?`)
		if err := j.s.DB.QueryRow(q, k).Scan(&s); err != nil {
			t.Fatalf("run-at of %d: %v", k, err)
		}
		out[k] = s
	}
	return out
}

// With a run-at column, failed tries with tries left are relaunched at
// once, their run-at their end plus the exponential backoff of their try
// times a jitter within ±20%; a task failed for good stays as it is.
func TestRelaunchFailedWritesRunAt(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := scheduledJob(t, s, "backoff", 40)
		j.spec.MaxTryTimes = 5
		j = s.Job(j.spec)
		tries := map[int64]int64{}
		for id := int64(1); id <= 40; id++ {
			tries[id] = 1 + (id-1)%5 // 1..5; 5 is the last try
			mustExec(t, s, `UPDATE backoff SET rtimes = ? WHERE id = ?`, tries[id]-1, id)
			finishTask(t, j, startTask(t, j, "w1", id), Outcome{Success: false, Error: "boom"})
		}
		// One end for all, so that the run-ats of one try differ by their
		// jitter alone.
		mustExec(t, s, `UPDATE backoff SET ended = `+s.Dialect.Now())
		keys, err := j.RelaunchFailed(ctx, s.DB, Backoff{Base: 10 * time.Second, Max: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 32 {
			t.Fatalf("relaunched %d tasks, want the 32 with tries left", len(keys))
		}
		var ids []int64
		for _, k := range sortedInts(t, keys) {
			if tries[k] == 5 {
				t.Errorf("task %d relaunched after its last try", k)
			}
			ids = append(ids, k)
		}
		spread := map[int64]bool{} // tenths of a second
		// The tries ended just before the relaunch.
		for k, got := range runAtAhead(t, j, ids...) {
			base := (Backoff{Base: 10 * time.Second, Max: time.Minute}).Delay(int(tries[k])).Seconds()
			if got < base*(1-Jitter)-0.5 || got > base*(1+Jitter) {
				t.Errorf("task %d (try %d): run-at %.3f s ahead, want its end plus %.0f s ± 20%%", k, tries[k], got, base)
			}
			spread[int64(got*10)] = true
		}
		if len(spread) < 10 {
			t.Errorf("run-ats of 32 tasks take %d distinct tenths of a second: no jitter?", len(spread))
		}
		c, err := j.Count(ctx, s.DB)
		if err != nil || c.Scheduled != 32 || c.Failed != 8 {
			t.Errorf("counts %+v, %v; want 32 scheduled, 8 failed", c, err)
		}
	})
}

// Without a run-at column an exponential backoff is waited for by the
// relaunch pass, per try, with no jitter.
func TestRelaunchFailedExponential(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "expo", 2, 5)
		mustExec(t, s, `UPDATE expo SET rtimes = 2 WHERE id = 2`)
		for _, id := range []int64{1, 2} {
			finishTask(t, j, startTask(t, j, "w1", id), Outcome{Success: false, Error: "boom"})
		}
		setAgo(t, j, "ended", 30*time.Second, 1, 2) // try 1 waits 10 s, try 3 waits 40 s
		keys, err := j.RelaunchFailed(t.Context(), s.DB, Backoff{Base: 10 * time.Second, Max: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "RelaunchFailed(10s doubling)", sortedInts(t, keys), 1)
	})
}
