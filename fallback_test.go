package pampa

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A batch that cannot be written is written again one outcome at a time;
// on that path too a late result of a try that moved on is dropped: not
// recorded, not counted, and the finisher does not run for it.
func TestLateResultDroppedOnOneByOneFallback(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		started := make(chan struct{}, 1)
		gate := make(chan struct{})
		j := withProcess(func(ctx context.Context, task *Task) error {
			if k, _ := task.Int64("value"); k == 2 && task.Try() == 1 {
				// A column the table lacks: the batch holding this
				// result fails, sending it down the one-by-one path.
				task.Set("no_such_column", "late")
				started <- struct{}{}
				<-gate
			}
			return isOdd(ctx, task)
		})
		var mu sync.Mutex
		finished := map[string]error{} // "key/try" → the task error it got
		j.Hooks.Finisher = func(ctx context.Context, tx Querier, task *Task, taskErr error) error {
			k, _ := task.Int64("value")
			mu.Lock()
			defer mu.Unlock()
			finished[fmt.Sprintf("%d/%d", k, task.Try())] = taskErr
			return nil
		}
		e := newEnv(t, driver, 4, j)
		r, ws := e.startIDs(steadyDispatcher(), steadyWorker(), "local.1")
		recvWithin(t, started, 20*time.Second, "key 2 to start")
		// Only key 2's try is in flight when it is relaunched: any other
		// started try has its outcome recorded.
		e.waitFor(30*time.Second, "the other started tries to be recorded", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE value <> 2
				AND odd_checking_start_time IS NOT NULL AND odd_checking_end_time IS NULL`) == 0
		})
		// Relaunched behind the worker's back, as for a dead worker.
		e.tx(func(ctx context.Context, tx *sql.Tx) error {
			_, _, _, err := e.jobSQL("search_odd_numbers").RecoverWorkers(ctx, tx, []string{"local.1"}, "test")
			return err
		})
		close(gate)
		rep := e.waitJob("search_odd_numbers", 4, 60*time.Second)
		r.stop(t)
		if rep.Completed != 4 || rep.Failed != 0 {
			t.Errorf("report = %+v, want all 4 completed (the late failure not recorded)", rep)
		}
		st := ws["local.1"].Stats()
		if d, f := st.Dropped.Load(), st.Failed.Load(); d != 1 || f != 0 {
			t.Errorf("dropped %d, failed %d; want the late result dropped (1, 0)", d, f)
		}
		mu.Lock()
		defer mu.Unlock()
		if err, ok := finished["2/1"]; ok {
			t.Errorf("the finisher ran for the dropped late result (with %v)", err)
		}
		if err, ok := finished["2/2"]; !ok || err != nil {
			t.Errorf("the finisher for key 2's second try: ran %v with %v, want ran with nil", ok, err)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 2 AND odd_checking_success = TRUE AND odd_checking_error_description IS NULL`); n != 1 {
			t.Error("key 2 does not hold its second try's success")
		}
	})
}
