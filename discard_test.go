package pampa

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Discard fails for good a failed try that still has tries left, so that
// it is not relaunched: it joins the tasks that failed for good, and Retry
// re-drives it. Tasks that succeeded, or are unknown, are left alone.
func TestDiscardFailedTry(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		job := oddJob()
		job.MaxTryTimes = 3
		job.RetryBackoff = time.Hour // the failed try waits: discard it meanwhile
		job.Process = func(ctx context.Context, task *Task) error {
			if v, _ := task.Int64("value"); v == 2 {
				return errors.New("two is not welcome")
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 5, job)
		r := e.start(1)
		e.waitFor(30*time.Second, "four tasks done and one failed try", func() bool {
			rep := e.report(job.Name)
			return rep.Completed == 4 && rep.Pending == 1 && rep.Running == 0
		})
		r.stop(t)
		ctx := context.Background()
		done, err := e.client.Discard(ctx, job.Name, int64(2), int64(3), int64(99))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(done) != "[2]" {
			t.Fatalf("Discard = %v, want [2] (3 succeeded, 99 does not exist)", done)
		}
		if rep := e.report(job.Name); rep.Failed != 1 || rep.Pending != 0 {
			t.Errorf("report after discard = %+v, want 1 failed for good, none pending", rep)
		}
		failed, err := e.client.FailedTasks(ctx, job.Name, 10)
		if err != nil || len(failed) != 1 || fmt.Sprint(failed[0].Key) != "2" {
			t.Fatalf("FailedTasks = %+v (%v), want task 2", failed, err)
		}
		// Not relaunched, whatever the backoff.
		if keys, err := e.jobSQL(job.Name).RelaunchFailed(ctx, e.client.DB(), store.Backoff{}); err != nil || len(keys) != 0 {
			t.Errorf("RelaunchFailed after discard = %v (%v), want nothing", keys, err)
		}
		if again, err := e.client.Discard(ctx, job.Name, int64(2)); err != nil || len(again) != 0 {
			t.Errorf("Discard of a task failed for good = %v (%v), want nothing", again, err)
		}
		if back, err := e.client.Retry(ctx, job.Name, int64(2)); err != nil || fmt.Sprint(back) != "[2]" {
			t.Errorf("Retry after discard = %v (%v), want [2]", back, err)
		}
		if _, err := e.client.Discard(ctx, "no_such_job", int64(1)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Discard in an unknown job = %v, want ErrNotFound", err)
		}
	})
}
