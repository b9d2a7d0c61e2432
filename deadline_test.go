package pampa

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// The original's max job duration: a task not finished within it is
// restarted. A try that returns after its deadline has failed, whatever it
// returns, and the columns it set are not written — at the edges too: a
// return at the very moment the deadline passes, and one inside the
// overrun grace. A return just before the deadline is a success.
func TestTryReturningAfterItsDeadlineFails(t *testing.T) {
	t.Parallel()
	const maxDuration = 600 * time.Millisecond
	forEachDriver(t, func(t *testing.T, driver string) {
		job := oddJob()
		job.MaxJobDuration = maxDuration
		job.MaxTryTimes = 1
		job.QueueSize = 4
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			task.Set("is_odd", true)
			switch v {
			case 1: // just before the deadline
				deadline, _ := ctx.Deadline()
				time.Sleep(time.Until(deadline) - 150*time.Millisecond)
			case 2: // the moment it passes
				<-ctx.Done()
			case 3: // inside the overrun grace
				<-ctx.Done()
				time.Sleep(100 * time.Millisecond)
			case 4: // an error of its own, late
				<-ctx.Done()
				time.Sleep(50 * time.Millisecond)
				return errors.New("boom")
			}
			return nil
		}
		e := newEnv(t, driver, 4, job)
		dopts := fastDispatcher()
		dopts.ExpiryGrace = time.Minute // the worker judges, not the dispatcher's expiry
		wopts := fastWorker()
		wopts.Concurrency = 4
		wopts.OverrunGrace = 2 * time.Second
		r, ws := e.startIDs(&dopts, wopts, "local.1")
		rep := e.waitDone(job.Name, 4, 30*time.Second)
		r.stop(t)
		if rep.Completed != 1 || rep.Failed != 3 {
			t.Errorf("report = %+v, want 1 completed (the try that returned in time), 3 failed", rep)
		}
		if st := e.rowState(1); !strings.HasSuffix(st, "| true | NULL | true") && !strings.HasSuffix(st, "| 1 | NULL | 1") {
			t.Errorf("task 1 returned before its deadline: row %s, want success with is_odd set", st)
		}
		for _, v := range []int64{2, 3, 4} {
			st := e.rowState(v)
			if !strings.Contains(st, "max_job_duration") || !strings.HasSuffix(st, "| NULL") {
				t.Errorf("task %d returned after its deadline: row %s, want failed (max_job_duration) with is_odd not written", v, st)
			}
		}
		if got := ws["local.1"].Stats().Failed.Load(); got != 3 {
			t.Errorf("worker counted %d failed tries, want 3", got)
		}
	})
}

// A late try counts as a try: the task is retried while tries are left,
// and only the on-time try's columns are written.
func TestLateTryIsRetried(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := oddJob()
		job.MaxJobDuration = 300 * time.Millisecond
		job.MaxTryTimes = 2
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			if task.Try() == 1 {
				<-ctx.Done()
				task.Set("is_odd", v%2 == 0) // wrong, and late: must not land
				return nil
			}
			task.Set("is_odd", v%2 != 0)
			return nil
		}
		e := newEnv(t, driver, 3, job)
		dopts := fastDispatcher()
		dopts.ExpiryGrace = time.Minute
		wopts := fastWorker()
		wopts.Concurrency = 3
		wopts.OverrunGrace = 2 * time.Second
		r, _ := e.startIDs(&dopts, wopts, "local.1")
		rep := e.waitDone(job.Name, 3, 30*time.Second)
		r.stop(t)
		if rep.Completed != 3 {
			t.Fatalf("report = %+v, want 3 completed on their second try", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_times = 2`); n != 3 {
			t.Errorf("%d tasks took two tries, want 3 (the late first try failed)", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != 3 {
			t.Errorf("%d rows hold the on-time try's is_odd, want 3", n)
		}
	})
}
