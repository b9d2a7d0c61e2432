// Package producer claims the tasks reserved for a worker: it starts them
// (start time set, try counted) in the worker's claim transaction, and,
// while tasks prove short next to their jobs' max duration, takes a
// queue's worth ahead so that many tasks share one commit.
//
// Tasks taken ahead wait in a buffer. They are given back unrun (their
// start undone, fenced by their try) when they wait too long — far within
// their max duration, so the dispatcher never relaunches a task still
// waiting here — or when the worker's running tries are cancelled.
package producer

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/store"
)

// Options tune a producer.
type Options struct {
	Store  *store.Store
	Worker string
	Jobs   []*engine.Job
	Log    *slog.Logger
	// Slots is how many tries the worker runs at once (default 1).
	Slots int
	// Assigned returns the job the dispatcher assigned the worker to.
	Assigned func() string
	// NewAttempt builds the attempt of a claimed row.
	NewAttempt func(j *engine.Job, row store.Row) *engine.Attempt
}

// Producer is used by one goroutine, but Observe may be called from any.
type Producer struct {
	opts     Options
	minQueue int // largest queue_size of the worker's jobs
	// startedFull is how many tries a hand-out that starts tries for the
	// idle worker brings while pending rows are left: its slots, or less
	// if a job's queue_size is smaller.
	startedFull int
	maxQueue    int           // longest queue the worker's jobs may be given
	shortest    time.Duration // shortest max duration of the worker's jobs

	buffer    []*engine.Attempt // taken ahead, in claim order
	claimedAt time.Time
	giveBack  []*engine.Attempt // taken ahead, to un-start

	durEWMA  atomic.Int64 // recent task duration, ns
	observed atomic.Int64 // tasks timed so far
}

// New returns a producer.
func New(opts Options) *Producer {
	p := &Producer{opts: opts, startedFull: max(opts.Slots, 1)}
	for _, j := range opts.Jobs {
		p.startedFull = min(p.startedFull, max(j.QueueSize, 1))
		p.minQueue = max(p.minQueue, j.QueueSize)
		p.maxQueue = max(p.maxQueue, j.QueueMax())
		if p.shortest == 0 || j.MaxJobDuration < p.shortest {
			p.shortest = j.MaxJobDuration
		}
	}
	return p
}

// RanDry reports whether an adoption of n tries shows that the hand-out
// that started them found no more pending rows: the dispatcher starts
// for an idle worker as many as its slots (at most a queue_size), and
// queues none beside them, so a claim now would find nothing.
func (p *Producer) RanDry(n int) bool { return n < p.startedFull }

// MaxQueue is the longest queue the dispatcher may give the worker for
// one of its jobs (their queue_size_max).
func (p *Producer) MaxQueue() int { return p.maxQueue }

// Buffered is how many tasks taken ahead wait to run.
func (p *Producer) Buffered() int { return len(p.buffer) }

// Pop takes the next task taken ahead.
func (p *Producer) Pop() (*engine.Attempt, bool) {
	if len(p.buffer) == 0 {
		return nil, false
	}
	a := p.buffer[0]
	p.buffer = p.buffer[1:]
	return a, true
}

// Keep buffers claimed tasks that found no free slot.
func (p *Producer) Keep(as ...*engine.Attempt) {
	if len(p.buffer) == 0 && len(as) > 0 {
		p.claimedAt = time.Now()
	}
	p.buffer = append(p.buffer, as...)
}

// DropAhead moves every task taken ahead to the give-back list: they will
// not run here.
func (p *Producer) DropAhead() {
	p.giveBack = append(p.giveBack, p.buffer...)
	p.buffer = nil
}

// DropStale gives back the tasks taken ahead once they waited a quarter
// of the shortest max duration.
func (p *Producer) DropStale() {
	if len(p.buffer) > 0 && time.Since(p.claimedAt) > p.shortest/4 {
		p.DropAhead()
	}
}

// HasGiveBack reports tasks waiting to be given back.
func (p *Producer) HasGiveBack() bool { return len(p.giveBack) > 0 }

// ForgetGiveBack clears the give-back list once the rows were handed on
// some other way (the worker relaunched its own rows), and returns it.
func (p *Producer) ForgetGiveBack() []*engine.Attempt {
	given := p.giveBack
	p.giveBack = nil
	return given
}

// Observe folds a task's duration into the recent average.
func (p *Producer) Observe(d time.Duration) {
	old := p.durEWMA.Load()
	if p.observed.Add(1) == 1 {
		p.durEWMA.Store(int64(d))
		return
	}
	p.durEWMA.Store(old + (int64(d)-old)/8)
}

// Ahead is how many tasks the worker may claim beyond its free slots.
// While tasks are short (a queue_size of them takes under a twentieth of
// the shortest max duration), a queue_size's worth, or as many as its
// slots run in engine.QueueHorizon, up to the longest queue the worker
// may be given; none otherwise. Bounding it by time keeps tasks of tens
// of milliseconds spread over the workers.
func (p *Producer) Ahead() int {
	if p.observed.Load() < 3 {
		return 0
	}
	d := max(time.Duration(p.durEWMA.Load()), time.Microsecond)
	if d*time.Duration(p.minQueue) > p.shortest/20 {
		return 0
	}
	return min(p.maxQueue, max(p.minQueue, max(p.opts.Slots, 1)*int(engine.QueueHorizon/d)))
}

// GiveBackIn un-starts, within tx, the tasks given back. The list is
// cleared by Committed once the transaction commits.
func (p *Producer) GiveBackIn(ctx context.Context, tx *sql.Tx) error {
	for _, a := range p.giveBack {
		if _, err := a.Job.SQL.Unstart(ctx, tx, a.Fence()); err != nil {
			return err
		}
	}
	return nil
}

// Committed is told that the transaction of GiveBackIn committed; it
// returns the tasks given back.
func (p *Producer) Committed() []*engine.Attempt { return p.ForgetGiveBack() }

// ClaimIn starts up to n tasks reserved for the worker, within tx. Rows
// left from jobs the worker was moved away from come first: there are at
// most a queue of them, while the assigned job's queue is refilled every
// round and would keep them waiting for ever.
func (p *Producer) ClaimIn(ctx context.Context, tx *sql.Tx, n int) ([]*engine.Attempt, error) {
	assigned := p.opts.Assigned()
	order := make([]*engine.Job, 0, len(p.opts.Jobs))
	for _, j := range p.opts.Jobs {
		if j.Name != assigned {
			order = append(order, j)
		}
	}
	for _, j := range p.opts.Jobs {
		if j.Name == assigned {
			order = append(order, j)
		}
	}
	var out []*engine.Attempt
	for _, j := range order {
		if n-len(out) == 0 {
			break
		}
		rows, err := j.SQL.Claim(ctx, tx, p.opts.Worker, n-len(out))
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.Name, err)
		}
		for _, r := range rows {
			out = append(out, p.opts.NewAttempt(j, r))
		}
	}
	return out, nil
}

// Adopt reads the tries started under the worker that it does not hold
// (holds says which it does): those the dispatcher started for it as it
// handed them out, while the worker was idle. A read, not a commit: the
// start was the hand-out's.
func (p *Producer) Adopt(ctx context.Context, holds func(a *engine.Attempt) bool) ([]*engine.Attempt, error) {
	var out []*engine.Attempt
	for _, j := range p.opts.Jobs {
		rows, err := j.SQL.Started(ctx, p.opts.Store.DB, p.opts.Worker)
		if err != nil {
			return out, fmt.Errorf("job %s: %w", j.Name, err)
		}
		for _, r := range rows {
			if a := p.opts.NewAttempt(j, r); !holds(a) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// Queued reports whether any of the worker's jobs holds a reserved,
// unstarted row for it: a read, so that an idle worker's polls take no
// write lock. On error it says yes, and lets the claim find out.
func (p *Producer) Queued(ctx context.Context) bool {
	for _, j := range p.opts.Jobs {
		ok, err := j.SQL.Queued(ctx, p.opts.Store.DB, p.opts.Worker)
		if err != nil || ok {
			return true
		}
	}
	return false
}
