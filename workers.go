package pampa

import (
	"context"
	"time"
)

// WorkerStatus is a worker as the registry knows it.
type WorkerStatus struct {
	ID       string        `json:"id"`
	Node     string        `json:"node"`
	Host     string        `json:"host"`
	PID      int           `json:"pid"`
	Version  string        `json:"version"`
	Jobs     []string      `json:"jobs"` // jobs its program can run
	Job      string        `json:"job"`  // assigned job, "" for none
	State    string        `json:"state"`
	Alive    bool          `json:"alive"` // running, heartbeat within the TTL
	LastBeat time.Duration `json:"last_heartbeat_ns"`
	Uptime   time.Duration `json:"uptime_ns"`
}

// DefaultWorkerTTL is how long a worker may go without a heartbeat before
// it counts as dead, unless a dispatcher is told otherwise.
const DefaultWorkerTTL = 15 * time.Second

// Workers lists the worker registry: every worker that ever registered,
// ordered by node and number, alive or not (judged with DefaultWorkerTTL).
func (c *Client) Workers(ctx context.Context) ([]WorkerStatus, error) {
	ws, err := c.store.Workers(ctx, DefaultWorkerTTL)
	if err != nil {
		return nil, err
	}
	out := make([]WorkerStatus, len(ws))
	for i, w := range ws {
		out[i] = WorkerStatus{ID: w.ID, Node: w.Node, Host: w.Host, PID: w.PID, Version: w.Version,
			Jobs: w.Jobs, Job: w.Job, State: w.State, Alive: w.Alive,
			LastBeat: time.Duration(w.HeartbeatAgeSec * float64(time.Second)),
			Uptime:   time.Duration(w.UptimeSec * float64(time.Second))}
	}
	return out, nil
}
