package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
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

// Statements of the processing function on the executions table: a start
// record, committed before the work begins, and an end record once it
// ends. A run with a start record and no end record was cut off: its
// process died, or was killed, in the middle of it.
const (
	insertStart = `INSERT INTO ` + executionsTable + ` (task, worker, try, pid, started_ns)
	VALUES ($1, $2, $3, $4, $5) RETURNING id`
	updateEnd = `UPDATE ` + executionsTable + ` SET ended_ns = $2, outcome = $3 WHERE id = $1`
)

// Outcomes of an ended run.
const (
	outcomeDone      = "done"
	outcomeCancelled = "cancelled"
)

// endRetryFor bounds how long a run retries its end record (the server
// may be restarting); a run whose end is never written counts as lasting
// until its process died.
const endRetryFor = 20 * time.Second

// process is the processing function: it records its start, sleeps
// between minD and maxD honouring ctx, then records its end — "done", or
// "cancelled" when ctx ended first. A run that cannot record its start
// does no work and fails; one that cannot record its end fails too, so
// that it is tried again.
func process(minD, maxD time.Duration) pampa.ProcessFunc {
	return func(ctx context.Context, t *pampa.Task) error {
		id, err := t.Int64("id")
		if err != nil {
			return err
		}
		// Taken before the start record is written: the span recorded
		// covers the whole run, never less.
		start := time.Now()
		var xid int64
		if err := t.DB().QueryRowContext(ctx, insertStart,
			id, t.WorkerID(), t.Try(), os.Getpid(), start.UnixNano()).Scan(&xid); err != nil {
			return fmt.Errorf("record the start: %w", err)
		}
		d := minD
		if maxD > minD {
			d += rand.N(maxD - minD + 1)
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		outcome := outcomeDone
		select {
		case <-timer.C:
		case <-ctx.Done():
			outcome = outcomeCancelled
		}
		if err := recordEnd(ctx, t.DB(), xid, time.Now(), outcome); err != nil {
			return fmt.Errorf("record the end: %w", err)
		}
		if outcome == outcomeCancelled {
			return ctx.Err()
		}
		return nil
	}
}

// recordEnd writes the end record of execution xid, retrying for up to
// endRetryFor, even once ctx is cancelled: a cancelled run must say when
// it stopped.
func recordEnd(ctx context.Context, db *sql.DB, xid int64, end time.Time, outcome string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endRetryFor)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(rctx, 5*time.Second)
		_, err := db.ExecContext(qctx, updateEnd, xid, end.UnixNano(), outcome)
		qcancel()
		if err == nil {
			return nil
		}
		select {
		case <-rctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// configYAML is the pampa.yaml the processes read.
func configYAML(c Config, dsn string) string {
	nodes := fmt.Sprintf("  - name: %s\n    max_workers: %d\n", nodeName, c.Workers)
	if c.Nodes > 0 {
		nodes = ""
		for i := 1; i <= c.Nodes; i++ {
			nodes += fmt.Sprintf("  - name: %s\n    max_workers: %d\n", nodeOf(i), c.NodeWorkers)
		}
	}
	return fmt.Sprintf(`database:
  driver: postgres
  url: %q
nodes:
%sjobs:
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
`, dsn, nodes, jobName, taskTable,
		colReservedBy, colReservedAt, colTries, colStartedAt, colEndedAt, colSucceeded, colLastError,
		c.QueueSize, c.MaxTryTimes)
}

// workerID is the id of the i-th worker (1-based).
func workerID(i int) string { return pampa.WorkerID(nodeName, i) }

// nodeOf is the name of the i-th node (1-based) when the workers run
// under node dispatchers.
func nodeOf(i int) string { return fmt.Sprintf("%s%d", nodeName, i) }

// slotOf is the name of the process slot that holds a registry id: the
// id itself for a worker process, its node dispatcher's id for a worker
// run by one.
func (c Config) slotOf(id string) string {
	if c.Nodes == 0 {
		return id
	}
	if i := strings.LastIndexByte(id, '.'); i > 0 {
		return pampa.NodeDispatcherID(id[:i])
	}
	return id
}

// heldLike is the LIKE pattern of the registry ids whose rows a slot
// holds beside its own: its node's workers', for a node dispatcher.
func (c Config) heldLike(slot string) string {
	if c.Nodes == 0 {
		return slot
	}
	return strings.TrimSuffix(slot, ".0") + ".%"
}
