package maintenance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
)

// drainedJob is a job of n rows, all succeeded, with an on_drained hook
// and its run open: the next Detect writes its event.
func drainedJob(t *testing.T, s *store.Store, hook *engine.CompletionHook) *engine.Job {
	t.Helper()
	j := enginetest.NewJob(t, s, "tasks", 2, 1)
	j.Hooks.OnDrained = hook
	enginetest.Exec(t, s, `INSERT INTO pampa_runs (job, run, busy_since) VALUES ('tasks', 1, `+s.Dialect.Now()+`)`)
	enginetest.Exec(t, s, `UPDATE tasks SET rid = 'w', rtimes = 1, started = `+s.Dialect.Now()+`, ended = `+s.Dialect.Now()+`, ok = TRUE`)
	return j
}

func always() bool { return true }

// A failing hook is called again after its backoff, and given up after
// its last attempt, its error kept; a panic is a failure like any.
func TestCompletionHookRetriedThenGivenUp(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		calls := 0
		j := drainedJob(t, s, &engine.CompletionHook{Call: func(ctx context.Context, e engine.CompletionEvent) error {
			calls++
			if e.Attempt != calls || e.Succeeded != 2 {
				t.Errorf("call %d got %+v", calls, e)
			}
			if calls == 2 {
				panic("hook bug")
			}
			return errors.New("report server down")
		}})
		logs := &enginetest.Logs{}
		c := NewCompletion(CompletionOptions{Store: s, Jobs: []*engine.Job{j}, Log: logs.Logger(), ID: "d", Runs: &engine.OpenRuns{},
			Attempts: 3, Backoff: 200 * time.Millisecond, MaxBackoff: time.Hour})
		if err := c.Detect(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.Fire(t.Context(), always); err != nil || calls != 1 {
			t.Fatalf("Fire: %v, %d calls", err, calls)
		}
		// Not due again before its backoff.
		if err := c.Fire(t.Context(), always); err != nil || calls != 1 {
			t.Fatalf("called again within its backoff: %d calls, %v", calls, err)
		}
		enginetest.Eventually(t, 5*time.Second, "the second call", func() bool {
			if err := c.Fire(t.Context(), always); err != nil {
				t.Fatal(err)
			}
			return calls == 2
		})
		enginetest.Eventually(t, 5*time.Second, "the third call", func() bool {
			if err := c.Fire(t.Context(), always); err != nil {
				t.Fatal(err)
			}
			return calls == 3
		})
		evs, err := s.Events(t.Context(), "tasks")
		if err != nil || len(evs) != 1 {
			t.Fatalf("events = %+v, %v", evs, err)
		}
		if ev := evs[0]; ev.State != store.EventFailed || ev.Attempts != 3 || ev.LastError != "report server down" {
			t.Errorf("event = %+v, want failed after 3 attempts with the last error", ev)
		}
		if !logs.Contains("hook bug") || !logs.Contains("given up") || !logs.Contains("event_id=drained/tasks/1") {
			t.Errorf("log lacks the panic, the give-up or the event id:\n%s", logs)
		}
		if err := c.Fire(t.Context(), always); err != nil || calls != 3 {
			t.Errorf("called after it was given up: %d calls", calls)
		}
	})
}

// Fire calls nothing once the dispatcher no longer leads.
func TestCompletionFiresOnlyWhileLeading(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		calls := 0
		j := drainedJob(t, s, &engine.CompletionHook{Call: func(context.Context, engine.CompletionEvent) error { calls++; return nil }})
		c := NewCompletion(CompletionOptions{Store: s, Jobs: []*engine.Job{j}, Log: enginetest.Discard(), ID: "d", Runs: &engine.OpenRuns{}})
		if err := c.Detect(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.Fire(t.Context(), func() bool { return false }); err != nil || calls != 0 {
			t.Fatalf("fired while not leading: %d calls, %v", calls, err)
		}
		if err := c.Fire(t.Context(), always); err != nil || calls != 1 {
			t.Fatalf("Fire: %d calls, %v", calls, err)
		}
	})
}
