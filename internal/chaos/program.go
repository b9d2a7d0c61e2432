package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/cli"
)

// Environment of the processes Run starts.
const (
	// envChild set to "1" makes the program a Pampa program: see IsChild.
	envChild = "PAMPA_CHAOS_CHILD"
	// envTaskMin and envTaskMax bound the processing time (Go durations).
	envTaskMin = "PAMPA_CHAOS_TASK_MIN"
	envTaskMax = "PAMPA_CHAOS_TASK_MAX"
)

// Names in the database and in the config.
const (
	jobName         = "chaos"
	taskTable       = "chaos_tasks"
	executionsTable = "chaos_executions"
	nodeName        = "chaos"
)

// Tracking columns of the task table.
const (
	colReservedBy = "reserved_by"
	colReservedAt = "reserved_at"
	colTries      = "tries"
	colStartedAt  = "started_at"
	colEndedAt    = "ended_at"
	colSucceeded  = "succeeded"
	colLastError  = "last_error"
)

// IsChild reports whether this process is one of the dispatchers, workers
// or setup commands a scenario started. A program that runs scenarios must
// check it first thing in main (or TestMain) and call [ChildMain] if so.
func IsChild() bool { return os.Getenv(envChild) == "1" }

// ChildMain runs this process as the scenario's Pampa program — the
// command line of package cli with the chaos job's processing function —
// and exits with its status.
func ChildMain() {
	minD, _ := time.ParseDuration(os.Getenv(envTaskMin))
	maxD, _ := time.ParseDuration(os.Getenv(envTaskMax))
	cli.Main(&cli.Program{
		Name:     "pampa-chaos",
		Handlers: map[string]pampa.ProcessFunc{jobName: process(minD, maxD)},
	})
}

const insertExecution = `INSERT INTO ` + executionsTable + ` (task, worker, try, pid, started_ns, ended_ns)
	VALUES ($1, $2, $3, $4, $5, $6)`

// process is the processing function: it sleeps between minD and maxD,
// honouring ctx, then records the execution. A cancelled run records
// nothing; a run that cannot record fails, so that it is tried again.
func process(minD, maxD time.Duration) pampa.ProcessFunc {
	return func(ctx context.Context, t *pampa.Task) error {
		start := time.Now()
		id, err := t.Int64("id")
		if err != nil {
			return err
		}
		d := minD
		if maxD > minD {
			d += rand.N(maxD - minD + 1)
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		end := time.Now()
		_, err = t.DB().ExecContext(ctx, insertExecution,
			id, t.WorkerID(), t.Try(), os.Getpid(), start.UnixNano(), end.UnixNano())
		if err != nil {
			return fmt.Errorf("record the execution: %w", err)
		}
		return nil
	}
}

// configYAML is the pampa.yaml the processes read.
func configYAML(c Config, dsn string) string {
	return fmt.Sprintf(`database:
  driver: postgres
  url: %q
nodes:
  - name: %s
    max_workers: %d
jobs:
  - name: %s
    table: %s
    field_primary_key: id
    field_id: %s
    field_time: %s
    field_times: %s
    field_start_time: %s
    field_end_time: %s
    field_success: %s
    field_error_description: %s
    queue_size: %d
    max_try_times: %d
`, dsn, nodeName, c.Workers, jobName, taskTable,
		colReservedBy, colReservedAt, colTries, colStartedAt, colEndedAt, colSucceeded, colLastError,
		c.QueueSize, c.MaxTryTimes)
}

// workerID is the id of the i-th worker (1-based).
func workerID(i int) string { return pampa.WorkerID(nodeName, i) }
