package engine

import (
	"context"
	"sync"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// CompletionEvent is a completion event as hooks are given it: a job's
// drain (store.EventDrained) or a group's end (store.EventGroupDone).
type CompletionEvent struct {
	ID, Kind, Job string
	// Group is the group's value (GroupDone only; nil is the NULL group).
	Group              any
	Run                int64
	StartedAt, EndedAt time.Time
	Succeeded, Failed  int64
	// Attempt counts the hook calls for this event, this one included.
	Attempt int
}

// CompletionHook is one completion hook: InTx for a hook that runs in the
// transaction that marks its event fired (SQL: exactly once), Call for one
// that runs outside (Go, a command: at least once). One of them is set.
type CompletionHook struct {
	InTx func(ctx context.Context, tx store.Querier, e CompletionEvent) error
	Call func(ctx context.Context, e CompletionEvent) error
}

// OpenRuns is the leader's memory of the jobs whose drain run is open,
// shared by the hand-out, which opens a run in the transaction that hands
// out its first rows, and the completion pass, which closes it: so that a
// run costs the hand-out one write, not one per round. The completion
// pass sets it from the database at every pass; a new leader starts
// from nothing known.
type OpenRuns struct {
	mu   sync.Mutex
	open map[string]bool
}

// Open reports whether the job's run is known to be open.
func (o *OpenRuns) Open(job string) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.open[job]
}

// Set records whether the job's run is open.
func (o *OpenRuns) Set(job string, open bool) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.open == nil {
		o.open = map[string]bool{}
	}
	o.open[job] = open
}

// Reset forgets every run.
func (o *OpenRuns) Reset() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.open = nil
}
