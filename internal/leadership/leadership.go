// Package leadership elects one dispatcher among those sharing a
// database: the leader holds a lease row (name, holder, term, expiry) and
// renews it at a third of its TTL. A standby takes the lease once it has
// expired, with the next term. A leader that cannot renew stands down at
// two thirds of the TTL, before the lease can pass to another, so two
// dispatchers never lead at once; it resigns on stop so that a standby
// takes over at once.
package leadership

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Options tune an elector.
type Options struct {
	Store *store.Store
	// Name of the lease the dispatchers share.
	Name string
	// ID of this candidate.
	ID string
	// TTL of the lease. Default 5s.
	TTL time.Duration
	Log *slog.Logger
}

// Elector takes, renews and resigns the lease. It is used by one
// goroutine.
type Elector struct {
	opts      Options
	leading   bool
	term      int64
	lastLease time.Time
}

// New returns an elector.
func New(opts Options) *Elector {
	if opts.TTL == 0 {
		opts.TTL = 5 * time.Second
	}
	return &Elector{opts: opts}
}

// Leading reports whether the candidate held the lease at its last Elect.
func (e *Elector) Leading() bool { return e.leading }

// Term is the lease's term at the last Elect.
func (e *Elector) Term() int64 { return e.term }

// Elect takes or renews the lease when due; gained reports a new term.
func (e *Elector) Elect(ctx context.Context) (gained bool, err error) {
	if e.leading && time.Since(e.lastLease) < e.opts.TTL/3 {
		return false, nil
	}
	term, ok, err := e.opts.Store.AcquireLease(ctx, e.opts.Name, e.opts.ID, e.opts.TTL)
	if err != nil {
		if e.leading && time.Since(e.lastLease) > e.opts.TTL*2/3 {
			// Stop acting as leader before the lease can pass to another.
			e.leading = false
			e.opts.Log.Warn("cannot renew the lease: standing down", "err", err)
		}
		return false, fmt.Errorf("lease: %w", err)
	}
	gained = ok && !e.leading
	if gained {
		e.opts.Log.Info("leading", "term", term)
	}
	if !ok && e.leading {
		e.opts.Log.Warn("lost the lease to another dispatcher")
	}
	e.leading, e.term = ok, term
	if ok {
		e.lastLease = time.Now()
	}
	return gained, nil
}

// Resign gives the lease up if this candidate holds it.
func (e *Elector) Resign() {
	if !e.leading {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.opts.Store.ResignLease(ctx, e.opts.Name, e.opts.ID); err != nil {
		e.opts.Log.Warn("resign lease", "err", err)
	}
	e.leading = false
}
