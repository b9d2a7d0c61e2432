package pampa

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A paused job gets no new reservations: the dispatcher hands back what
// was reserved and not started, the try running goes on to its end, and
// nothing else starts until the job is resumed. The pause is kept in the
// database: a new client sees it.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		gate := make(chan struct{})
		started := make(chan int64, 100)
		job := oddJob()
		job.Process = func(ctx context.Context, task *Task) error {
			v, _ := task.Int64("value")
			started <- v
			if v == 1 {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return isOdd(ctx, task)
		}
		e := newEnv(t, driver, 20, job)
		r, _ := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		recvWithin(t, started, 30*time.Second, "the first task to start")
		e.waitFor(30*time.Second, "the worker's queue to fill", func() bool { return e.report(job.Name).Reserved > 0 })

		if err := e.client.Pause(context.Background(), job.Name); err != nil {
			t.Fatal(err)
		}
		e.waitFor(30*time.Second, "the paused job's reservations to be handed back", func() bool {
			rep := e.report(job.Name)
			return rep.Reserved == 0 && rep.Paused
		})
		close(gate) // the running try goes on to its end
		e.waitFor(30*time.Second, "the running task to finish", func() bool { return e.report(job.Name).Completed == 1 })
		// Several dispatcher rounds (every 20 ms here) start nothing more.
		time.Sleep(300 * time.Millisecond)
		if rep := e.report(job.Name); rep.Completed != 1 || rep.Running != 0 || rep.Reserved != 0 || len(started) != 0 {
			t.Fatalf("paused job went on: report %+v, %d more tasks started", rep, len(started))
		}

		again, err := Open(context.Background(), e.cluster)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if rep, err := again.JobReport(context.Background(), job.Name); err != nil || !rep.Paused {
			t.Fatalf("a new client's report = %+v (%v), want the job paused", rep, err)
		}
		if err := again.Resume(context.Background(), job.Name); err != nil {
			t.Fatal(err)
		}
		rep := e.waitDone(job.Name, 20, 60*time.Second)
		r.stop(t)
		if rep.Completed != 20 || rep.Paused {
			t.Fatalf("after resume: report %+v, want 20 completed, not paused", rep)
		}
		if err := e.client.Pause(context.Background(), "no_such_job"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Pause of an unknown job = %v, want ErrNotFound", err)
		}
	})
}
