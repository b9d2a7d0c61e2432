package pampa

import (
	"context"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// WorkerStatus is a worker as the registry knows it: id, node, host, pid,
// version, the jobs its program can run, the job it is assigned to ("" for
// none), its state (running, stopping, stopped, dead), whether it is alive
// (running, heartbeat within the TTL), the age of its last heartbeat and
// its uptime. It is the registry's own row type, so the engine, this API
// and the CLI's JSON (keys id, node, host, pid, version, jobs, job, state,
// alive, last_heartbeat_ns, uptime_ns) never disagree.
type WorkerStatus = store.WorkerInfo

// DefaultWorkerTTL is how long a worker may go without a heartbeat before
// it counts as dead, unless a dispatcher is told otherwise.
const DefaultWorkerTTL = 15 * time.Second

// Workers lists the worker registry: every worker that ever registered,
// ordered by node and number, alive or not (judged with DefaultWorkerTTL).
func (c *Client) Workers(ctx context.Context) ([]WorkerStatus, error) {
	return c.store.Workers(ctx, DefaultWorkerTTL)
}
