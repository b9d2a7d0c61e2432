package pampa

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Final keeps the error's text and is found by errors.Is as both the
// error and ErrFinal; Final(nil) still fails.
func TestFinalWraps(t *testing.T) {
	t.Parallel()
	cause := errors.New("no such customer")
	err := Final(fmt.Errorf("customer 7: %w", cause))
	if err.Error() != "customer 7: no such customer" || !errors.Is(err, ErrFinal) || !errors.Is(err, cause) {
		t.Errorf("Final(...) = %q; Is ErrFinal %v, Is cause %v", err, errors.Is(err, ErrFinal), errors.Is(err, cause))
	}
	if err := Final(nil); err == nil || !errors.Is(err, ErrFinal) {
		t.Errorf("Final(nil) = %v, want ErrFinal", err)
	}
}

// A Go processing function that returns Final fails its task for good on
// the first try, with tries left: the row's try count is raised to
// max_try_times, the function runs once, and the task is listed among the
// failed. A plain error on the same job is tried max_try_times times; a
// Final error wrapped again (by %w) still counts.
func TestFinalErrorFailsForGood(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		var log execLog
		job := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			task.Set("is_odd", v%2 != 0)
			switch v % 3 {
			case 0:
				return Final(fmt.Errorf("value %d: not a number I check", v))
			case 1:
				return fmt.Errorf("wrapped again: %w", Final(errors.New("bad row")))
			}
			return errors.New("flaky")
		}))
		job.MaxTryTimes = 3
		e := newEnv(t, driver, 9, job)
		r := e.start(2)
		rep := e.waitDone(job.Name, 9, 60*time.Second)
		r.stop(t)
		if rep.Failed != 9 {
			t.Fatalf("report = %+v, want 9 failed for good", rep)
		}
		runs := log.perKey()
		for v := int64(1); v <= 9; v++ {
			want := 1
			if v%3 == 2 {
				want = 3
			}
			if runs[v] != want {
				t.Errorf("task %d ran %d times, want %d", v, runs[v], want)
			}
			st := e.rowState(v)
			if !strings.Contains(st, "| 3 |") {
				t.Errorf("task %d: row %s, want its try count at max_try_times (3)", v, st)
			}
		}
		if st := e.rowState(3); !strings.Contains(st, "value 3: not a number I check") || !strings.HasSuffix(st, "| true") && !strings.HasSuffix(st, "| 1") {
			t.Errorf("task 3: row %s, want its error and the column it set", st)
		}
		failed, err := e.client.FailedTasks(context.Background(), job.Name, 20)
		if err != nil || len(failed) != 9 {
			t.Errorf("FailedTasks = %d, %v; want 9", len(failed), err)
		}
	})
}
