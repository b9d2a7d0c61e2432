package worker

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
)

// call is one run of the processing function.
type call struct{ key, try int64 }

// A worker declared dead while it holds tasks taken ahead never runs
// those tries: they were handed on with its running ones, and running
// them would run a task twice at once.
func TestDeclaredDeadNeverRunsTasksTakenAhead(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		const rows = 20
		calls := make(chan call, 4*rows)
		blocked := make(chan call, 1)
		var n atomic.Int32
		// One slot: the first three tries are short, so the fourth claim
		// takes a queue ahead; the fourth try then runs until cancelled.
		b := setupOn(t, s, rows, 1, func(ctx context.Context, a *engine.Attempt) error {
			k, _ := engine.AsInt64(a.Key)
			if n.Add(1) == 4 {
				blocked <- call{k, a.Try}
				<-ctx.Done()
				return ctx.Err()
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
		z := b.lastUnstarted(t)
		// Declared dead and its tasks handed on, as the maintenance does.
		err := s.Tx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, s.Dialect.Rebind(`UPDATE pampa_workers SET state = 'dead', job = NULL WHERE id = ?`), id); err != nil {
				return err
			}
			_, _, _, err := b.j.SQL.RecoverWorkers(ctx, tx, []string{id}, "worker died")
			return err
		})
		if err != nil {
			t.Fatalf("declare n.1 dead: %v", err)
		}
		enginetest.Eventually(t, 10*time.Second, "n.1 to register again", func() bool { return b.state(t) == "running" })
		// A row reserved for the worker once it is back runs after
		// anything it still holds: reserve it until it runs (registering
		// again hands back what the id held unstarted).
		enginetest.Eventually(t, 20*time.Second, fmt.Sprintf("key %d, reserved after the worker came back, to run", z), func() bool {
			for {
				select {
				case c := <-calls:
					if try, ok := ahead[c.key]; ok && c.try == try {
						t.Fatalf("key %d ran try %d, taken ahead before the worker was declared dead", c.key, c.try)
					}
					if c.key == int64(z) {
						return true
					}
					continue
				default:
				}
				if r := enginetest.Get(t, s, b.j, z); !r.RID.Valid {
					enginetest.Reserve(t, s, b.j, id, z)
				}
				return false
			}
		})
	})
}

// started returns the tries of the rows n.1 holds started and not ended,
// but key, by key.
func (b *bundle) started(t *testing.T, key int64) map[int64]int64 {
	t.Helper()
	rows, err := b.s.DB.Query(b.s.Dialect.Rebind(`SELECT id, rtimes FROM tasks
		WHERE rid = ? AND started IS NOT NULL AND ended IS NULL AND id <> ?`), id, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var k, try int64
		if err := rows.Scan(&k, &try); err != nil {
			t.Fatal(err)
		}
		out[k] = try
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lastUnstarted is the highest key not yet started.
func (b *bundle) lastUnstarted(t *testing.T) int {
	t.Helper()
	var k int
	if err := b.s.DB.QueryRow(`SELECT MAX(id) FROM tasks WHERE started IS NULL AND ended IS NULL`).Scan(&k); err != nil {
		t.Fatal(err)
	}
	return k
}

// recvWithin waits for a value on ch, failing the test after timeout.
func recvWithin[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
	var zero T
	return zero
}
