package pampa

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/enginetest"
)

// Cancel stops tasks pending, reserved and running: each becomes failed
// for good with the cancel text. The running try's context ends with
// ErrCancelled at its worker's next heartbeat, and what it returns is
// dropped quietly; the reservation is never started. Tasks that
// succeeded are left alone; Retry re-drives the cancelled ones.
func TestCancelPendingReservedRunning(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		var started sync.Map // key → true, for every try started
		causes := make(chan error, 1)
		var blocked atomic.Bool
		job := oddJob()
		job.MaxTryTimes = 3
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			started.Store(v, true)
			if v == 1 && blocked.CompareAndSwap(false, true) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil // a success, which must not overwrite the cancel
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 10, job)
		if done, err := e.client.Cancel(ctx, job.Name, int64(10)); err != nil || fmt.Sprint(done) != "[10]" {
			t.Fatalf("Cancel of a pending task = %v, %v; want [10]", done, err)
		}

		logs := &enginetest.Logs{}
		wopts := steadyWorker()
		wopts.Logger = logs.Logger()
		r, ws := e.startIDs(steadyDispatcher(), wopts, "local.1")
		e.waitFor(30*time.Second, "task 1 to run and others to wait in the queue", func() bool {
			_, ok := started.Load(int64(1))
			return ok && e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_start_time IS NULL`) > 0
		})
		reserved := e.count(`SELECT MIN(value) FROM numbers WHERE odd_checking_reservation_id = 'local.1' AND odd_checking_start_time IS NULL`)
		done, err := e.client.Cancel(ctx, job.Name, int64(1), reserved)
		if err != nil || !sameKeys(done, 1, reserved) {
			t.Fatalf("Cancel of running task 1 and reserved task %d = %v, %v", reserved, done, err)
		}
		cancelledAt := time.Now()
		cause := recvWithin(t, causes, 30*time.Second, "the running try's context to end")
		if !errors.Is(cause, ErrCancelled) {
			t.Errorf("the running try's context ended with %v, want ErrCancelled", cause)
		}
		// Heartbeats come every 100 ms here: a few of them, on a loaded machine.
		if waited := time.Since(cancelledAt); waited > 5*time.Second {
			t.Errorf("the running try's context ended %s after the cancel", waited)
		}
		rep := e.waitJob(job.Name, 10, 60*time.Second)
		if rep.Completed != 7 || rep.Failed != 3 {
			t.Errorf("report = %+v, want 7 completed and 3 cancelled", rep)
		}
		if _, ok := started.Load(reserved); ok {
			t.Errorf("the cancelled reservation (task %d) was started", reserved)
		}
		if _, ok := started.Load(int64(10)); ok {
			t.Error("the cancelled pending task 10 was started")
		}
		e.waitFor(10*time.Second, "the worker to log the cancel", func() bool {
			return logs.Contains("task cancelled by an operator")
		})
		if s := ws["local.1"].Stats(); s.Failed.Load() != 0 || loud(logs, "task=1 ") {
			t.Errorf("the worker made a fuss of the cancel: %d failed\n%s", s.Failed.Load(), logs)
		}

		failed, err := e.client.FailedTasks(ctx, job.Name, 10)
		if err != nil || len(failed) != 3 {
			t.Fatalf("FailedTasks = %+v, %v; want the 3 cancelled", failed, err)
		}
		for _, f := range failed {
			if f.Error != "cancelled by an operator" || f.Tries != int64(job.MaxTryTimes) {
				t.Errorf("failed task %v: error %q, %d tries; want the cancel text, %d tries", f.Key, f.Error, f.Tries, job.MaxTryTimes)
			}
		}
		succeeded := int64(2)
		if reserved == 2 {
			succeeded = 3
		}
		before := e.rowState(succeeded)
		if done, err := e.client.Cancel(ctx, job.Name, succeeded); err != nil || len(done) != 0 {
			t.Errorf("Cancel of succeeded task %d = %v, %v; want nothing", succeeded, done, err)
		}
		if after := e.rowState(succeeded); after != before {
			t.Errorf("Cancel changed succeeded task %d: %s → %s", succeeded, before, after)
		}
		if _, err := e.client.Cancel(ctx, "no_such_job", int64(1)); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no_such_job") {
			t.Errorf("Cancel in an unknown job = %v, want ErrNotFound naming it", err)
		}

		back, err := e.client.Retry(ctx, job.Name, int64(1), reserved, int64(10))
		if err != nil || !sameKeys(back, 1, reserved, 10) {
			t.Fatalf("Retry of the cancelled tasks = %v, %v", back, err)
		}
		rep = e.waitJob(job.Name, 10, 60*time.Second)
		r.stop(t)
		if rep.Completed != 10 {
			t.Errorf("after retry: report %+v, want all 10 completed", rep)
		}
	})
}

// A try that ends as it is cancelled is either recorded or cancelled,
// never both, and Cancel's keys say which: cancelling every task while two
// workers run through them, each key Cancel returns is failed for good
// with the cancel text and every other succeeded.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		const n = 200
		job := oddJob()
		job.Process = func(ctx context.Context, task *Task) error {
			select {
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, n, job)
		wopts := steadyWorker()
		wopts.Concurrency = 4 // many tries running when the cancel comes
		r, _ := e.startIDs(steadyDispatcher(), wopts, "local.1", "local.2")
		e.waitFor(60*time.Second, "some tasks done", func() bool { return e.report(job.Name).Completed >= 20 })
		keys := make([]any, n)
		for i := range keys {
			keys[i] = int64(i + 1)
		}
		done, err := e.client.Cancel(ctx, job.Name, keys...)
		if err != nil {
			t.Fatal(err)
		}
		rep := e.waitJob(job.Name, n, 60*time.Second)
		r.stop(t)
		if rep.Failed != int64(len(done)) || rep.Completed != n-int64(len(done)) {
			t.Errorf("report %+v, want %d cancelled and the rest completed", rep, len(done))
		}
		cancelled := map[int64]bool{}
		for _, k := range done {
			cancelled[k.(int64)] = true
		}
		rows, err := e.client.DB().QueryContext(ctx, `SELECT value, odd_checking_success, COALESCE(odd_checking_error_description, '') FROM numbers`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var key int64
			var success any
			var why string
			if err := rows.Scan(&key, &success, &why); err != nil {
				t.Fatal(err)
			}
			ok := truthy(success)
			if cancelled[key] == ok || cancelled[key] != (why == "cancelled by an operator") {
				t.Errorf("task %d: cancel returned it %v, success %v, error %q", key, cancelled[key], ok, why)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// sameKeys reports whether keys are the integers want, in any order.
func sameKeys(keys []any, want ...int64) bool {
	got := make([]int64, 0, len(keys))
	for _, k := range keys {
		v, ok := k.(int64)
		if !ok {
			return false
		}
		got = append(got, v)
	}
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// loud reports a warning or an error in logs that mentions about.
func loud(logs *enginetest.Logs, about string) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) && strings.Contains(line, about) {
			return true
		}
	}
	return false
}
