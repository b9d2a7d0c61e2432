package dispatch

import (
	"math"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// The queue rule: a worker's queue holds at least its job's queue_size
// unstarted tasks (the original's minimum) and, when its tasks are short,
// enough for the next engine.QueueHorizon at the rate it has been taking them,
// up to the job's QueueSizeMax. Short tasks then come in batches the
// round trip between a worker and the dispatcher does not throttle, and
// long tasks still spread evenly: at a task a second, the rule asks for
// nothing beyond the minimum. What a worker holds beyond it is at most a
// horizon's work, so the end of a job waits at most that long on the
// slowest queue.
//
// The rate is measured here, from what each worker took out of its queue
// between two rounds, and smoothed over rateWindow from zero: a rate is
// believed only once it lasts, as a queue handed out is not taken back,
// and a worker given too many long tasks would hold up the end of the
// job with them. Nothing is stored: a
// new leader starts every queue at the minimum and learns the rates
// within a few rounds. A queue kept full (the worker took less than it
// held) measures the worker; a queue that ran dry measures the round trip
// (at most what it held, per round), and as the horizon is longer than a
// round trip, the next round hands more, until the worker's own pace is
// what is measured.

// rateWindow is how long a change of pace takes to show in the rate.
const rateWindow = time.Second

// queueGauge follows one worker's queue of one job between rounds.
type queueGauge struct {
	at   time.Time // the last round that saw the queue
	left int       // its length after that round's hand-out
	rate float64   // tasks a second the worker took, smoothed
}

// queueKey names a worker's queue of a job.
type queueKey struct{ job, worker string }

// target is how long the worker's queue should be now that it holds
// queued tasks, measuring what it took since the last round.
func (s *Service) target(j *engine.Job, w store.WorkerInfo, queued int, now time.Time) int {
	size, limit := queueBounds(j, w)
	if limit <= size {
		return size
	}
	k := queueKey{j.Name, w.ID}
	g := s.queues[k]
	if g == nil {
		g = &queueGauge{}
		s.queues[k] = g
	} else if dt := now.Sub(g.at); dt > 0 {
		took := max(g.left-queued, 0)
		weight := 1 - math.Exp(-dt.Seconds()/rateWindow.Seconds())
		g.rate += weight * (float64(took)/dt.Seconds() - g.rate)
	}
	g.at, g.left = now, queued
	want := int(math.Ceil(g.rate * s.horizon().Seconds()))
	return min(limit, max(size, want))
}

// handed records that the worker's queue grew by n this round.
func (s *Service) handed(job, worker string, n int) {
	if g := s.queues[queueKey{job, worker}]; g != nil {
		g.left += n
	}
}

// forgetQueues drops the gauges of the workers not seen for a while, so
// that the map follows the registry.
func (s *Service) forgetQueues(now time.Time) {
	for k, g := range s.queues {
		if now.Sub(g.at) > 10*rateWindow {
			delete(s.queues, k)
		}
	}
}

// horizon is Options.QueueHorizon, or engine.QueueHorizon.
func (s *Service) horizon() time.Duration {
	if s.opts.QueueHorizon > 0 {
		return s.opts.QueueHorizon
	}
	return engine.QueueHorizon
}
