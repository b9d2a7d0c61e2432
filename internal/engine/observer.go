package engine

import (
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Observer is told what a worker or a dispatcher learns as it runs, for
// metrics (internal/metrics implements it), so that the engine packages
// need not know how the figures are kept. Its methods are called on the
// engine's paths, some once per task: they must be cheap and safe for
// concurrent use. A nil Observer records nothing.
type Observer interface {
	// Job returns the recorder of one job's events in a worker or a
	// dispatcher (r), whose series it makes ready (a process shows the
	// series of the parts it runs). The root package calls it once per
	// job as it builds a worker or a dispatcher (into Job.Observer),
	// never per task.
	Job(name string, r Role) JobObserver
	// WorkerSlots publishes a worker's slots while it runs: concurrency
	// of them, busy() of them running a try, read when the metrics are
	// collected. withdraw takes them down when the worker stops.
	WorkerSlots(worker string, concurrency int, busy func() int) (withdraw func())
	// Round is one dispatcher round: how long it took, whether the
	// dispatcher held the lease at its end, and its error.
	Round(d time.Duration, leading bool, err error)
	// Resigned says the dispatcher gave the lease up as it stopped.
	Resigned()
}

// JobObserver records one job's events.
type JobObserver interface {
	// TryEnded: the processing function of a try returned after running
	// for d; panicked says it panicked.
	TryEnded(d time.Duration, panicked bool)
	// Recorded: a try's outcome was written, or dropped by the fence.
	Recorded(f Fate)
	// Reserved: the dispatcher reserved n rows for workers.
	Reserved(n int)
	// Recovered: the dispatcher's maintenance returned relaunched rows
	// to pending and failed failed rows for good.
	Recovered(relaunched, failed int)
}

// Role is the part of a process a job's recorder serves.
type Role int

// The roles.
const (
	WorkerRole Role = iota
	DispatcherRole
)

// Fate is what became of a try's outcome when the worker recorded it.
type Fate int

// The fates of a recorded outcome.
const (
	Succeeded   Fate = iota
	Failed           // the try failed; the task has tries left
	FailedFinal      // the try failed on the task's last try, or for good (ErrFinal)
	Dropped          // the fence refused the write: the task moved on
	NumFates
)

var fateNames = [NumFates]string{"succeeded", "failed", "failed_final", "dropped"}

// String is the fate's name as metrics label it.
func (f Fate) String() string { return fateNames[f] }

// FateOf judges a recorded outcome: applied says the fenced write
// matched the row.
func FateOf(a *Attempt, out store.Outcome, applied bool) Fate {
	switch {
	case !applied:
		return Dropped
	case out.Success:
		return Succeeded
	case out.Final || a.Try >= int64(a.Job.SQL.Spec().MaxTryTimes):
		return FailedFinal
	default:
		return Failed
	}
}

// Observe returns the job's recorder; one that records nothing when the
// job has none.
func (j *Job) Observe() JobObserver {
	if j.Observer == nil {
		return nopJob{}
	}
	return j.Observer
}

type nopJob struct{}

func (nopJob) TryEnded(time.Duration, bool) {}
func (nopJob) Recorded(Fate)                {}
func (nopJob) Reserved(int)                 {}
func (nopJob) Recovered(int, int)           {}
