// Package engine is the vocabulary the worker's and the dispatcher's
// services share: a job as the engine sees it (its statements, its limits
// and its hooks as plain functions), one try of a task ([Attempt]) and a
// try's outcome. It holds no loop of its own.
//
// The root package builds these from the user's definitions; the services
// under internal/ (producer, executor, completer, heartbeat, leadership,
// maintenance, dispatch) take them, and never import the root package.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/cronexpr"
	"github.com/pampa-go/pampa/internal/handler"
	"github.com/pampa-go/pampa/internal/store"
)

// Job is a job as the engine runs it.
type Job struct {
	Name string
	SQL  *store.JobSQL

	QueueSize int
	// QueueSizeMax bounds what the dispatcher's queue rule hands a worker
	// whose tasks are short; 0 keeps every queue at QueueSize.
	QueueSizeMax       int
	MaxJobDuration     time.Duration
	RetryBackoff       store.Backoff
	MaxAssignedWorkers int // 0: no cap
	MaxPendingTasks    int
	// MaxRunning caps the job's tries in flight (0: none); the store
	// enforces it, the stretch rule assigns no more workers than it needs.
	MaxRunning int

	// RelaunchSchedule, when set, runs the relaunching hook once per due
	// time (relaunch_cron) instead of at every maintenance pass.
	RelaunchSchedule cronexpr.Schedule

	// AcceptsWorker reports whether filter_worker_id admits a worker id.
	AcceptsWorker func(id string) bool

	Hooks Hooks

	// Observer records the job's events for metrics; nil records
	// nothing. Read it through Observe.
	Observer JobObserver
}

// QueueHorizon is the time of work, at a worker's measured pace, that a
// worker of short tasks is given beyond its job's queue_size: by the
// dispatcher into its queue, and by itself out of it, ahead of its free
// slots. It is longer than a round trip from a worker running low to its
// refill (the dispatcher widens it where that may take a poll), and
// short enough that the end of a job waits on no queue for long.
const QueueHorizon = 100 * time.Millisecond

// QueueMax is the longest queue the dispatcher keeps for one worker.
func (j *Job) QueueMax() int { return max(j.QueueSize, j.QueueSizeMax) }

// Hooks are the job's callbacks, each nil when the job has none (the
// default then applies). Hooks given as SQL by the user arrive here
// already wrapped as functions.
type Hooks struct {
	// Process runs the try; it is the only one a worker needs.
	Process func(ctx context.Context, a *Attempt) error
	// Starter runs in a transaction of its own before Process.
	Starter func(ctx context.Context, tx store.Querier, a *Attempt) error
	// Finisher runs in the transaction that records the outcome.
	Finisher func(ctx context.Context, tx store.Querier, a *Attempt, taskErr error) error
	// Relauncher runs for each key reset for relaunch, in that transaction.
	Relauncher func(ctx context.Context, tx store.Querier, key any) error
	// Relaunching picks up to n finished rows to run again.
	Relaunching func(ctx context.Context, n int) ([]any, error)
	// Selecting picks up to n rows to reserve.
	Selecting func(ctx context.Context, n int) ([]any, error)
	// Pending counts the dispatchable backlog.
	Pending func(ctx context.Context) (int64, error)
	// Occupied counts the tasks waiting in a worker's queue.
	Occupied func(ctx context.Context, worker string) (int, error)
	// Allowing says whether a worker may get more tasks now.
	Allowing func(ctx context.Context, worker string) (bool, error)
	// OnDrained is called once per drain of the job (on_drained).
	OnDrained *CompletionHook
	// OnGroupDone is called once per end of a group's run (on_group_done).
	OnGroupDone *CompletionHook
}

// RunsOn reports whether a registered worker may be assigned to the job:
// its id matches the filter and its program runs the job. A node
// dispatcher's entry lists the jobs some of its workers run (their ids
// passed the filter there), so only its list counts.
func (j *Job) RunsOn(w store.WorkerInfo) bool {
	if j.AcceptsWorker != nil && !w.IsNode() && !j.AcceptsWorker(w.ID) {
		return false
	}
	for _, name := range w.Jobs {
		if name == j.Name {
			return true
		}
	}
	return false
}

// Relaunched runs the job's relauncher hook, if any, for each key reset
// for relaunch, in the transaction that reset them.
func (j *Job) Relaunched(ctx context.Context, tx store.Querier, keys []any) error {
	if j.Hooks.Relauncher == nil {
		return nil
	}
	for _, k := range keys {
		if err := j.Hooks.Relauncher(ctx, tx, k); err != nil {
			return fmt.Errorf("relauncher hook (key %v): %w", k, err)
		}
	}
	return nil
}

// Attempt is one try of one task: the row as claimed, and what the
// processing function asked to write back.
type Attempt struct {
	Job    *Job
	Worker string
	Row    store.Row
	Key    any
	Try    int64
	Log    *slog.Logger

	// Set holds the columns the processing function set; SetErr a
	// refused Set, which fails the try. Write them with SetColumn and
	// RefuseSet, which the function may call from any goroutine; read
	// them once the executor has sealed the attempt.
	Set    map[string]any
	SetErr error

	mu     sync.Mutex
	sealed bool // the try is over: later Sets are ignored
	// cancelled is why an operator cancelled the try (nil if not), and
	// stop cancels the context of its running function.
	cancelled error
	stop      context.CancelCauseFunc

	// Handle is the public package's view of the task, built once per
	// attempt so that every hook sees the same value.
	Handle any
}

// SameTry reports whether a and b are the same try of the same task.
func (a *Attempt) SameTry(b *Attempt) bool {
	return a.Job.Name == b.Job.Name && a.Try == b.Try && store.KeyText(a.Key) == store.KeyText(b.Key)
}

// SetColumn records a column to write with the outcome, unless the try
// is over (an abandoned function that goes on running sets nothing).
func (a *Attempt) SetColumn(column string, value any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sealed {
		return
	}
	if a.Set == nil {
		a.Set = map[string]any{}
	}
	a.Set[column] = value
}

// RefuseSet records a Set that cannot be honoured; it fails the try.
func (a *Attempt) RefuseSet(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.sealed {
		a.SetErr = err
	}
}

// Seal ends the try's writes: later SetColumn and RefuseSet calls are
// ignored. With drop, what was set is dropped too; Seal returns how many
// columns were set.
func (a *Attempt) Seal(drop bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sealed = true
	n := len(a.Set)
	if drop {
		a.Set, a.SetErr = nil, nil
	}
	return n
}

// ErrCancelled is the cause of a try's context when an operator cancelled
// its task.
var ErrCancelled = errors.New(store.CancelReason)

// Cancel cancels tries with cause: the context of a running function
// ends at once, and a try not yet started is not run. Every try is marked
// before any function is stopped, so that the slot one frees does not
// start another of them.
func Cancel(as []*Attempt, cause error) {
	var stops []context.CancelCauseFunc
	for _, a := range as {
		a.mu.Lock()
		if a.cancelled == nil {
			a.cancelled = cause
			if a.stop != nil {
				stops = append(stops, a.stop)
			}
		}
		a.mu.Unlock()
	}
	for _, stop := range stops {
		stop(cause)
	}
}

// Cancelled is why the try was cancelled, nil if it was not.
func (a *Attempt) Cancelled() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelled
}

// Context derives the context the try's function runs with: Cancel ends
// it, with its cause. Call release once the function returned.
func (a *Attempt) Context(parent context.Context) (ctx context.Context, release func()) {
	ctx, stop := context.WithCancelCause(parent)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stop = stop
	if a.cancelled != nil {
		stop(a.cancelled)
	}
	return ctx, func() { stop(nil) }
}

// Fence is the attempt's write guard: its key, worker and try.
func (a *Attempt) Fence() store.Fence {
	return store.Fence{Key: a.Key, Worker: a.Worker, Try: a.Try}
}

// Outcome is a finished try waiting for its result to be recorded.
type Outcome struct {
	Attempt *Attempt
	Err     error
}

// Result is the row update the outcome records: success, or the error's
// description; the columns set go with either, unless a Set was refused.
// An error wrapping handler.ErrFinal fails the task for good.
func (o Outcome) Result() store.Outcome {
	out := store.Outcome{Success: o.Err == nil, Set: o.Attempt.Set, Final: errors.Is(o.Err, handler.ErrFinal)}
	taskErr := o.Err
	if taskErr == nil && o.Attempt.SetErr != nil {
		taskErr = o.Attempt.SetErr
		out = store.Outcome{Success: false}
	}
	if taskErr != nil {
		out.Error = Describe(taskErr)
	}
	return out
}

// TaskErr is the error the finisher hook is told of: the try's, or a
// refused Set's.
func (o Outcome) TaskErr() error {
	if o.Err == nil && o.Attempt.SetErr != nil {
		return o.Attempt.SetErr
	}
	return o.Err
}

// WorkerStats are a worker's counters since it started.
type WorkerStats struct {
	Succeeded, Failed, Dropped atomic.Int64
}

// PanicError is a panic in a processing function, recorded as the try's
// failure.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack) }

// MaxErrorLen caps a stored error description.
const MaxErrorLen = 8 << 10

// Describe turns an error into text any database column accepts: valid
// UTF-8, no NUL bytes, at most MaxErrorLen bytes.
func Describe(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\\0")
	if len(s) > MaxErrorLen {
		cut := MaxErrorLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
	}
	return s
}

// ResetTimer stops t, drains a fire not yet received, and sets it to d.
func ResetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// AsInt64 reads an integer as drivers return it (int64, int32, int,
// an integral float64, or decimal text).
func AsInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, true
		}
	case []byte:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}
