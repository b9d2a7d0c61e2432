package dispatch

import (
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// queueBounds are the least and the most a worker's queue of the job
// holds (queue_size and queue_size_max). A node dispatcher's entry
// queues for all its workers, as many queues as it has members: the
// central dispatcher reserves for it as for that many workers.
func queueBounds(j *engine.Job, w store.WorkerInfo) (size, limit int) {
	n := max(w.Members, 1)
	return j.QueueSize * n, j.QueueMax() * n
}
