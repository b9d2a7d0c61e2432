package pampatest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/pampatest"
)

func checkOdd(ctx context.Context, t *pampa.Task) error {
	v, err := t.Int64("value")
	if err != nil {
		return err
	}
	t.Set("is_odd", v%2 != 0)
	return nil
}

func Example() {
	job := &pampa.Job{Name: "search_odd_numbers", PrimaryKey: "value"}
	task := pampatest.NewTask(job, map[string]any{"value": int64(7)})
	res := pampatest.Run(context.Background(), checkOdd, task)
	fmt.Println(res.Succeeded, res.Set["is_odd"])
	// Output: true true
}

var job = &pampa.Job{
	Name: "search_odd_numbers", PrimaryKey: "value",
	Fields: pampa.TrackingFields{ReservationID: "rid", Success: "ok"},
}

func TestRun(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		fn        pampa.ProcessFunc
		succeeded bool
		errHas    string
		set       map[string]any
	}{
		{"Success", checkOdd, true, "", map[string]any{"is_odd": true}},
		{"Error", func(ctx context.Context, t *pampa.Task) error {
			t.Set("note", "tried")
			return errors.New("no luck")
		}, false, "no luck", map[string]any{"note": "tried"}},
		{"Panic", func(ctx context.Context, t *pampa.Task) error { panic("boom") }, false, "panic: boom", nil},
		{"TrackingColumnRefused", func(ctx context.Context, t *pampa.Task) error {
			t.Set("ok", true)
			return nil
		}, false, "tracking column", nil},
		{"KeyRefused", func(ctx context.Context, t *pampa.Task) error {
			t.Set("value", 8)
			return nil
		}, false, "primary key", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			task := pampatest.NewTask(job, map[string]any{"value": int64(7)})
			res := pampatest.Run(context.Background(), c.fn, task)
			if res.Succeeded != c.succeeded || (res.Err == nil) != c.succeeded {
				t.Fatalf("succeeded = %v, err = %v; want succeeded %v", res.Succeeded, res.Err, c.succeeded)
			}
			if !strings.Contains(res.Error, c.errHas) || (c.errHas != "" && !strings.Contains(res.Err.Error(), c.errHas)) {
				t.Errorf("error = %q (%v), want it to hold %q", res.Error, res.Err, c.errHas)
			}
			if fmt.Sprint(res.Set) != fmt.Sprint(c.set) {
				t.Errorf("set = %v, want %v", res.Set, c.set)
			}
		})
	}
}

// A function that returns after the job's max duration has failed, and
// what it set is dropped, as a worker would judge it.
// A function's Final error is a failure for good; a plain one is not.
func TestRunFinal(t *testing.T) {
	t.Parallel()
	task := pampatest.NewTask(job, map[string]any{"value": int64(7)})
	res := pampatest.Run(context.Background(), func(context.Context, *pampa.Task) error {
		return pampa.Final(errors.New("no such customer"))
	}, task)
	if res.Succeeded || !res.Final || res.Error != "no such customer" {
		t.Errorf("Final error: %+v", res)
	}
	res = pampatest.Run(context.Background(), func(context.Context, *pampa.Task) error { return errors.New("flaky") }, pampatest.NewTask(job, map[string]any{"value": int64(7)}))
	if res.Succeeded || res.Final {
		t.Errorf("plain error: %+v", res)
	}
}

func TestRunPastTheDeadline(t *testing.T) {
	t.Parallel()
	short := &pampa.Job{Name: "slow", PrimaryKey: "id", MaxJobDuration: 50 * time.Millisecond}
	task := pampatest.NewTask(short, map[string]any{"id": 1})
	res := pampatest.Run(context.Background(), func(ctx context.Context, t *pampa.Task) error {
		t.Set("late", true)
		<-ctx.Done()
		return nil
	}, task)
	if res.Succeeded || !errors.Is(res.Err, context.DeadlineExceeded) || res.Set != nil {
		t.Fatalf("result = %+v, want a failed try (deadline exceeded) with nothing set", res)
	}
}

func TestNewTaskOptions(t *testing.T) {
	t.Parallel()
	task := pampatest.NewTask(job, map[string]any{"value": int64(3), "name": "x"}, pampatest.Try(2), pampatest.Worker("n.4"))
	if task.Try() != 2 || task.WorkerID() != "n.4" || task.Key() != int64(3) || task.String("name") != "x" || task.Job().Name != job.Name {
		t.Errorf("task: try %d worker %s key %v name %q job %s", task.Try(), task.WorkerID(), task.Key(), task.String("name"), task.Job().Name)
	}
	if task.Has("missing") || len(task.Columns()) != 2 {
		t.Errorf("columns = %v", task.Columns())
	}
}
