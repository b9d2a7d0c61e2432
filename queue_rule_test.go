package pampa

import (
	"context"
	"sync"
	"testing"
	"time"
)

// longestQueues samples the job's queues every 2 ms until stop is
// called, and then returns the longest each worker had.
func (e *testEnv) longestQueues(job string) (stop func() map[string]int) {
	ctx, cancel := context.WithCancel(context.Background())
	longest := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			q, err := e.jobSQL(job).QueueLengths(ctx, e.client.DB())
			if err == nil {
				for w, n := range q {
					longest[w] = max(longest[w], n)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() map[string]int {
		cancel()
		wg.Wait()
		return longest
	}
}

// Workers of short tasks are handed more than queue_size, never more
// than queue_size_max, and every task runs once.
func TestQueueRuleGrowsQueuesOfShortTasks(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 6000
		var log execLog
		j := withProcess(log.wrap(isOdd))
		j.QueueSize, j.QueueSizeMax = 5, 40
		e := newEnv(t, driver, rows, j)
		sample := e.longestQueues(j.Name)
		e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitJob(j.Name, rows, 2*time.Minute)
		longest := sample()
		for w, n := range longest {
			if n > 40 {
				t.Errorf("%s held %d queued tasks, over queue_size_max 40", w, n)
			}
		}
		if max(longest["local.1"], longest["local.2"]) <= 5 {
			t.Errorf("longest queues %v: no-op tasks never got more than queue_size 5", longest)
		}
		for k, n := range log.perKey() {
			if n != 1 {
				t.Errorf("task %d ran %d times", k, n)
			}
		}
		log.checkNoOverlap(t)
	})
}

// Tasks of 40 ms (25 a second a worker, 2.5 in the rule's 100 ms) keep
// every queue at queue_size, default queue_size_max and all, and so
// spread over the workers.
func TestQueueRuleKeepsLongTasksSpread(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows = 60
		var log execLog
		j := withProcess(log.wrap(func(ctx context.Context, task *Task) error {
			time.Sleep(40 * time.Millisecond)
			return isOdd(ctx, task)
		}))
		j.QueueSize = 5
		e := newEnv(t, driver, rows, j)
		sample := e.longestQueues(j.Name)
		e.startIDs(steadyDispatcher(), steadyWorker(), "local.1", "local.2")
		e.waitJob(j.Name, rows, 2*time.Minute)
		for w, n := range sample() {
			if n > 5 {
				t.Errorf("%s held %d queued tasks of 40 ms, over queue_size 5", w, n)
			}
		}
		ran := map[string]int{}
		for _, r := range log.snapshot() {
			ran[r.worker]++
		}
		if ran["local.1"] < rows/3 || ran["local.2"] < rows/3 {
			t.Errorf("tasks per worker %v: want each to run at least a third of %d", ran, rows)
		}
	})
}
