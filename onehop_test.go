package pampa

import (
	"testing"
	"time"
)

// One hop: a row inserted while its worker holds nothing is started by
// the hand-out's own transaction, and the worker runs it once. On
// PostgreSQL a transaction's now() is its start: a row started in the
// transaction that reserved it has equal reservation and start times,
// while one the worker claimed in a transaction of its own does not.
func TestOneHopForAnIdleWorker(t *testing.T) {
	t.Parallel()
	var log execLog
	e, j, wopts := oneHopEnv(t, &log)
	for i := 1; i <= 5; i++ {
		// Idle again: its last outcome recorded, a heartbeat beaten since
		// it registered.
		e.waitFor(30*time.Second, "the worker to hold nothing", func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id IS NOT NULL AND odd_checking_end_time IS NULL`) == 0
		})
		time.Sleep(2 * wopts.HeartbeatInterval)
		e.exec(`INSERT INTO numbers (value) VALUES (?)`, i)
		e.waitJob(j.Name, int64(i), 30*time.Second)
	}
	if n := oneHops(e); n != 5 {
		t.Errorf("%d of 5 rows started in the transaction that reserved them, want all:\n%s", n, e.dump(j.Name))
	}
	ranOnce(t, &log)
}

// oneHopEnv runs, on PostgreSQL, a dispatcher and one worker, local.1,
// of a job whose runs go to log.
func oneHopEnv(t *testing.T, log *execLog) (*testEnv, Job, WorkerOptions) {
	j := withProcess(log.wrap(isOdd))
	e := newEnv(t, "postgres", 0, j)
	wopts := steadyWorker()
	e.startIDs(steadyDispatcher(), wopts, "local.1")
	return e, j, wopts
}

// oneHops counts the rows done that were started in the transaction
// that reserved them.
func oneHops(e *testEnv) int64 {
	return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_start_time = odd_checking_reservation_time AND odd_checking_success`)
}

// ranOnce checks that every task the log saw ran once.
func ranOnce(t *testing.T, log *execLog) {
	t.Helper()
	for k, n := range log.perKey() {
		if n != 1 {
			t.Errorf("task %d ran %d times", k, n)
		}
	}
}

// A trickle: each row arrives shortly after the last one ran, before its
// outcome would wait out the batch (50 ms) for a claim to ride with. A
// worker whose tasks come one at a time records the outcome as soon as
// nothing else runs, so that it holds nothing when the next row comes,
// and that row is started by its hand-out too.
func TestOneHopForATrickle(t *testing.T) {
	t.Parallel()
	var log execLog
	e, j, _ := oneHopEnv(t, &log)
	e.waitFor(30*time.Second, "the worker to settle", func() bool {
		return e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id = 'local.1' AND heartbeat_at > started_at`) == 1
	})
	const rows = 10
	for i := 1; i <= rows; i++ {
		e.exec(`INSERT INTO numbers (value) VALUES (?)`, i)
		e.waitFor(30*time.Second, "the row to run", func() bool { return len(log.perKey()) == i })
		time.Sleep(10 * time.Millisecond)
	}
	e.waitJob(j.Name, rows, 30*time.Second)
	hops := oneHops(e)
	t.Logf("%d of %d rows in one hop", hops, rows)
	// The first row may find the worker just registered; under load a
	// write may lag behind the next row now and then.
	if hops < rows-2 {
		t.Errorf("%d of %d trickled rows started in the transaction that reserved them, want most:\n%s", hops, rows, e.dump(j.Name))
	}
	ranOnce(t, &log)
}
