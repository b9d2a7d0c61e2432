package pampa

import (
	"context"
	"fmt"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// WorkerStatus is a worker as the registry knows it: id, node, host, pid,
// version, the jobs its program can run, the job it is assigned to ("" for
// none), its state (running, stopping, stopped, dead), whether it is alive
// (running, heartbeat within the TTL) and whether an operator drained it
// ([Client.Drain]), the age of its last heartbeat and its uptime. It is
// the registry's own row type, so the engine, this API and the CLI's JSON
// (keys id, node, host, pid, version, jobs, job, state, alive, drained,
// last_heartbeat_ns, uptime_ns) never disagree.
type WorkerStatus = store.WorkerInfo

// DefaultWorkerTTL is how long a worker may go without a heartbeat before
// it counts as dead, unless a dispatcher is told otherwise.
const DefaultWorkerTTL = 15 * time.Second

// Workers lists the worker registry: every worker that ever registered,
// ordered by node and number, alive or not (judged with DefaultWorkerTTL).
func (c *Client) Workers(ctx context.Context) ([]WorkerStatus, error) {
	return c.store.Workers(ctx, DefaultWorkerTTL)
}

// Drain stops new reservations for a worker, in every dispatcher and until
// Undrain, without stopping it: within a second the leading dispatcher
// hands back the tasks reserved for it and not yet started, it finishes
// the tries it runs (they are not handed on: it stays registered and
// heartbeating), and it gets nothing more. The mark is kept in its
// registry row (pampa_workers.drained_at), which a restart under the same
// id leaves as it is: drain a worker, then stop and start it again safely.
// Draining a drained worker changes nothing; a worker id that never
// registered is ErrNotFound.
func (c *Client) Drain(ctx context.Context, workerID string) error {
	return c.setDrained(ctx, workerID, true)
}

// Undrain lets a drained worker get tasks again.
func (c *Client) Undrain(ctx context.Context, workerID string) error {
	return c.setDrained(ctx, workerID, false)
}

func (c *Client) setDrained(ctx context.Context, workerID string, drained bool) error {
	ok, err := c.store.SetDrained(ctx, workerID, drained)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("worker %q is not registered: %w", workerID, ErrNotFound)
	}
	return nil
}

// TasksHeld counts, for each worker holding any, the tasks reserved for it
// or running on it, over every job. Each job's count reads its in-flight
// index, so the cost follows the tasks in flight, not the tables.
func (c *Client) TasksHeld(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, j := range c.jobs {
		held, err := j.sql.Held(ctx, c.store.DB)
		if err != nil {
			return nil, fmt.Errorf("job %s: count the tasks workers hold: %w", j.Name, err)
		}
		for w, n := range held {
			out[w] += n
		}
	}
	return out, nil
}
