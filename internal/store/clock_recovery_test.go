package store

import (
	"errors"
	"testing"
	"time"
)

// TestAgesOnDatabaseClock checks invariant 3 for the ages that the
// statements not covered by TestTimestampsFromDatabaseClock measure: a
// failed try's backoff before it is relaunched, and the heartbeat age
// that lets a new process take over a worker id. The database clock runs
// hours behind the process's; an age measured against the process clock
// would make a fresh failure look old and a live worker look dead.
func TestAgesOnDatabaseClock(t *testing.T) {
	t.Parallel()
	for _, name := range dialectNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := openShiftedStore(t, name)
			shiftedClock(t, s)
			j := newJob(t, s, "tasks", 2, 3)

			f := startTask(t, j, "w1", 1)
			if !finishTask(t, j, f, Outcome{Success: false, Error: "boom"}) {
				t.Fatal("Finish not applied")
			}
			// It has just failed: its hour of backoff has not passed.
			if keys, err := j.RelaunchFailed(ctx, s.DB, Backoff{Base: time.Hour}); err != nil || len(keys) != 0 {
				t.Fatalf("RelaunchFailed(1h) right after the failure = %v, %v; want nothing relaunched", keys, err)
			}
			if keys, err := j.RelaunchFailed(ctx, s.DB, Backoff{Base: -time.Minute}); err != nil || len(keys) != 1 {
				t.Fatalf("RelaunchFailed(-1m) = %v, %v; want the failed task", keys, err)
			}

			w := WorkerInfo{ID: "local.1", Node: "local", Host: "h1", PID: 1, Instance: "i1"}
			if err := s.RegisterWorker(ctx, w, time.Minute); err != nil {
				t.Fatal(err)
			}
			// Another host's process under the same id, while the first
			// one's heartbeat is seconds old by the database clock.
			other := WorkerInfo{ID: "local.1", Node: "local", Host: "h2", PID: 2, Instance: "i2"}
			if err := s.RegisterWorker(ctx, other, time.Minute); !errors.Is(err, ErrWorkerRunning) {
				t.Fatalf("RegisterWorker over a live holder = %v; want ErrWorkerRunning", err)
			}
			if _, ok, err := s.Heartbeat(ctx, "local.1", "i1"); err != nil || !ok {
				t.Fatalf("the first holder's Heartbeat = %v, %v; want it still registered", ok, err)
			}
		})
	}
}
