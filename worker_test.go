package pampa

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A graceful stop lets a running task finish even when that takes longer
// than the worker TTL: the worker keeps heartbeating as "stopping", so the
// task is neither handed on nor run twice, and unstarted reservations go
// back to the pool.
func TestGracefulStopOutlastsTheTTL(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		var runs atomic.Int32
		started := make(chan struct{}, 10)
		job := oddJob()
		job.QueueSize = 3
		job.Process = func(ctx context.Context, task *Task) error {
			runs.Add(1)
			started <- struct{}{}
			time.Sleep(4 * time.Second) // > WorkerTTL (3s) of fastDispatcher
			return nil
		}
		e := newEnv(t, driver, 3, job)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := e.client.NewDispatcher(fastDispatcher())
		go d.Run(ctx)
		opts := fastWorker()
		opts.GracePeriod = 10 * time.Second
		w, err := e.client.NewWorker("local.1", opts)
		if err != nil {
			t.Fatal(err)
		}
		wctx, stopWorker := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("no task started")
		}
		stopWorker()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("graceful stop did not return")
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("tasks run = %d, want 1 (the one running at the stop)", n)
		}
		r := e.report("search_odd_numbers")
		if r.Completed != 1 || r.Pending != 2 || r.Reserved != 0 || r.Running != 0 {
			t.Errorf("report after the stop = %+v; want 1 completed, 2 pending again", r)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_times > 1`); n != 0 {
			t.Errorf("%d tasks were tried more than once", n)
		}
	})
}
