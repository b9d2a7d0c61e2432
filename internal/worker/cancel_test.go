package worker

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
)

// Cancelled by an operator, the running try's context ends with
// ErrCancelled, and tries the worker took ahead are never run; their
// results change nothing, and the other tasks go on.
func TestCancelRunningAndTakenAhead(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		const rows = 20
		calls := make(chan call, 4*rows)
		blocked := make(chan call, 1)
		causes := make(chan error, 1)
		// One slot: the first three tries are short, so the fourth claim
		// takes a queue ahead; the fourth try then runs until cancelled.
		var n atomic.Int32
		b := setupOn(t, s, rows, 1, func(ctx context.Context, a *engine.Attempt) error {
			k, _ := engine.AsInt64(a.Key)
			if n.Add(1) == 4 {
				blocked <- call{k, a.Try}
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil
			}
			calls <- call{k, a.Try}
			return nil
		}, nil)
		b.start(t)
		x := recvWithin(t, blocked, 20*time.Second, "the fourth try to start")
		ahead := b.started(t, x.key)
		if len(ahead) == 0 {
			t.Fatalf("no task taken ahead while key %d runs", x.key)
		}
		keys := []any{x.key}
		for k := range ahead {
			keys = append(keys, k)
		}
		err := s.Tx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			done, err := b.j.SQL.Cancel(ctx, tx, b.j.Name, keys)
			if err == nil && len(done) != len(keys) {
				t.Errorf("Cancel of %v = %v", keys, done)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if cause := recvWithin(t, causes, 10*time.Second, "the running try's context to end"); !errors.Is(cause, engine.ErrCancelled) {
			t.Errorf("the running try's context ended with %v, want ErrCancelled", cause)
		}
		// Every task not cancelled runs; none cancelled does.
		for left := rows - 3 - len(keys); left > 0; left-- {
			c := recvWithin(t, calls, 20*time.Second, "the tasks not cancelled to run")
			if _, ok := ahead[c.key]; ok {
				t.Fatalf("key %d ran, taken ahead and cancelled before it started", c.key)
			}
		}
		for _, k := range keys {
			if r := enginetest.Get(t, s, b.j, int(k.(int64))); r.Why.String != store.CancelReason || r.OK.Bool {
				t.Errorf("cancelled key %v = %+v, want failed with the cancel text", k, r)
			}
		}
		enginetest.Eventually(t, 10*time.Second, "the cancel rows to be taken up", func() bool {
			got, err := s.Cancels(context.Background(), id)
			return err == nil && len(got) == 0
		})
		if d := b.r.Stats().Dropped.Load(); d != int64(len(keys)) {
			t.Errorf("%d results dropped, want the %d cancelled", d, len(keys))
		}
	})
}
