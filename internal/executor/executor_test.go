package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
)

// Every try runs in a goroutine of its own: none may outlive the tests,
// not even one abandoned for ignoring its context (each test releases it).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// attempt is a try of a job whose processing function is fn.
func attempt(max time.Duration, logs *enginetest.Logs, fn func(ctx context.Context, a *engine.Attempt) error) *engine.Attempt {
	j := &engine.Job{Name: "j", MaxJobDuration: max}
	j.Hooks.Process = fn
	log := enginetest.Discard()
	if logs != nil {
		log = logs.Logger()
	}
	return &engine.Attempt{Job: j, Worker: "w.1", Key: int64(1), Try: 1, Log: log}
}

// within runs fn and fails the test if it takes longer than d.
func within[T any](t *testing.T, d time.Duration, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("did not return within %s", d)
		panic("unreachable")
	}
}

func TestProcessSucceedsAndKeepsSet(t *testing.T) {
	t.Parallel()
	e := New(Options{})
	a := attempt(time.Minute, nil, func(ctx context.Context, a *engine.Attempt) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("the try's context has no deadline")
		}
		a.SetColumn("result", "done")
		return nil
	})
	if err := e.Process(a); err != nil {
		t.Fatalf("Process = %v, want nil", err)
	}
	if a.Set["result"] != "done" {
		t.Fatalf("Set = %v, want result=done kept", a.Set)
	}
}

func TestProcessPassesErrorThrough(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	e := New(Options{})
	err := e.Process(attempt(time.Minute, nil, func(context.Context, *engine.Attempt) error { return boom }))
	if !errors.Is(err, boom) || strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Process = %v, want boom as it is", err)
	}
}

func TestProcessRecoversPanic(t *testing.T) {
	t.Parallel()
	e := New(Options{})
	err := e.Process(attempt(time.Minute, nil, func(context.Context, *engine.Attempt) error {
		panicHere()
		return nil
	}))
	var pe *engine.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Process = %v (%T), want *engine.PanicError", err, err)
	}
	if pe.Value != "kaboom" {
		t.Fatalf("panic value = %v, want kaboom", pe.Value)
	}
	if !strings.Contains(pe.Stack, "panicHere") {
		t.Fatalf("stack does not show where it panicked:\n%s", pe.Stack)
	}
	if !strings.Contains(err.Error(), "panic: kaboom") {
		t.Fatalf("error text = %q, want it to name the panic", err)
	}
}

func panicHere() { panic("kaboom") }

func TestProcessAbandonsFunctionIgnoringContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	returned := make(chan struct{})
	t.Cleanup(func() {
		close(release)
		<-returned
	})
	e := New(Options{OverrunGrace: 50 * time.Millisecond})
	a := attempt(30*time.Millisecond, nil, func(ctx context.Context, a *engine.Attempt) error {
		defer close(returned)
		<-release // ignores ctx
		return nil
	})
	// Columns set before the function went quiet (set here, not by the
	// function, so that the test itself shares no memory with the
	// abandoned goroutine).
	a.Set = map[string]any{"result": "late"}
	start := time.Now()
	err := within(t, 5*time.Second, func() error { return e.Process(a) })
	if err == nil || !strings.Contains(err.Error(), "did not return") {
		t.Fatalf("Process = %v, want a 'did not return' failure", err)
	}
	if !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Fatalf("Process = %v, want the context's cause named", err)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Fatalf("abandoned after %s, before the deadline plus OverrunGrace (80ms)", took)
	}
	if a.Set != nil {
		t.Fatalf("Set = %v, want dropped", a.Set)
	}
}

func TestProcessLateNilFailsWithDeadline(t *testing.T) {
	t.Parallel()
	logs := &enginetest.Logs{}
	e := New(Options{OverrunGrace: time.Second})
	a := attempt(20*time.Millisecond, logs, func(ctx context.Context, a *engine.Attempt) error {
		<-ctx.Done()
		a.SetColumn("result", "late")
		return nil
	})
	err := e.Process(a)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Process = %v, want context.DeadlineExceeded in the chain", err)
	}
	if !strings.Contains(err.Error(), "timed out after max_job_duration") {
		t.Fatalf("Process = %v, want it to name max_job_duration", err)
	}
	if a.Set != nil {
		t.Fatalf("Set = %v, want cleared", a.Set)
	}
	if !logs.Contains("late result dropped") {
		t.Fatalf("no log of the dropped result:\n%s", logs)
	}
}

func TestProcessLateErrorKeepsBothErrors(t *testing.T) {
	t.Parallel()
	own := errors.New("own failure")
	e := New(Options{OverrunGrace: time.Second})
	err := e.Process(attempt(20*time.Millisecond, nil, func(ctx context.Context, a *engine.Attempt) error {
		<-ctx.Done()
		return own
	}))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "own failure") {
		t.Fatalf("Process = %v, want DeadlineExceeded and the function's own error", err)
	}
}

func TestProcessReturningBeforeDeadlineSucceeds(t *testing.T) {
	t.Parallel()
	e := New(Options{OverrunGrace: time.Second})
	a := attempt(2*time.Second, nil, func(ctx context.Context, a *engine.Attempt) error {
		// Close to its deadline, but before it.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		a.SetColumn("result", "in time")
		return nil
	})
	if err := e.Process(a); err != nil {
		t.Fatalf("Process = %v, want nil", err)
	}
	if a.Set["result"] != "in time" {
		t.Fatalf("Set = %v, want kept", a.Set)
	}
}

func TestCancelRunningCancelsOnlyRunningTries(t *testing.T) {
	t.Parallel()
	e := New(Options{OverrunGrace: time.Second})
	running := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- e.Process(attempt(time.Minute, nil, func(ctx context.Context, a *engine.Attempt) error {
			close(running)
			<-ctx.Done()
			return ctx.Err()
		}))
	}()
	<-running
	e.CancelRunning()
	err := within(t, 5*time.Second, func() error { return <-first })
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled try = %v, want context.Canceled (not a timeout)", err)
	}
	next := e.Process(attempt(time.Minute, nil, func(ctx context.Context, a *engine.Attempt) error {
		return ctx.Err()
	}))
	if next != nil {
		t.Fatalf("try started after CancelRunning saw %v, want a live context", next)
	}
}

func TestHardContextIsParentOfTries(t *testing.T) {
	t.Parallel()
	hard, kill := context.WithCancel(context.Background())
	e := New(Options{Hard: hard, OverrunGrace: time.Second})
	kill()
	err := e.Process(attempt(time.Minute, nil, func(ctx context.Context, a *engine.Attempt) error { return ctx.Err() }))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("try under a cancelled Hard context = %v, want context.Canceled", err)
	}
}

// starterJob is a job on a SQLite table whose starter hook runs first.
func starterJob(t *testing.T) (*store.Store, *engine.Job, *engine.Attempt) {
	s := enginetest.Open(t, "sqlite")
	j := enginetest.NewJob(t, s, "tasks", 1, 3)
	enginetest.Reserve(t, s, j, "w.1", 1)
	as := enginetest.Claim(t, s, j, "w.1", 1)
	return s, j, as[0]
}

func TestExecuteFailingStarterSkipsProcess(t *testing.T) {
	t.Parallel()
	s, j, a := starterJob(t)
	refused := errors.New("not now")
	called := false
	j.Hooks.Starter = func(ctx context.Context, tx store.Querier, a *engine.Attempt) error { return refused }
	j.Hooks.Process = func(context.Context, *engine.Attempt) error {
		called = true
		return nil
	}
	e := New(Options{Store: s})
	o, d := e.Execute(a)
	if called {
		t.Fatal("the processing function ran after its starter hook failed")
	}
	if !errors.Is(o.Err, refused) || !strings.HasPrefix(o.Err.Error(), "starter hook:") {
		t.Fatalf("outcome = %v, want 'starter hook: not now'", o.Err)
	}
	if o.Attempt != a || d != 0 {
		t.Fatalf("outcome attempt %p (want %p), duration %s (want 0)", o.Attempt, a, d)
	}
}

func TestExecuteStarterCommitsBeforeProcess(t *testing.T) {
	t.Parallel()
	s, j, a := starterJob(t)
	j.Hooks.Starter = func(ctx context.Context, tx store.Querier, a *engine.Attempt) error {
		_, err := tx.ExecContext(ctx, `UPDATE tasks SET result = 'started' WHERE id = ?`, a.Key)
		return err
	}
	var seen string
	j.Hooks.Process = func(ctx context.Context, a *engine.Attempt) error {
		// Another connection sees the starter's write: it committed.
		return s.DB.QueryRowContext(ctx, `SELECT result FROM tasks WHERE id = ?`, a.Key).Scan(&seen)
	}
	o, d := New(Options{Store: s}).Execute(a)
	if o.Err != nil {
		t.Fatalf("Execute = %v", o.Err)
	}
	if seen != "started" {
		t.Fatalf("processing function saw result %q, want the starter's 'started'", seen)
	}
	if d <= 0 {
		t.Fatalf("duration = %s, want > 0 for a try that ran", d)
	}
}

// A function abandoned past its deadline that goes on running and sets a
// column afterwards sets nothing: its try has failed, and what it writes
// later must not reach the row (nor race with the completer reading it).
func TestAbandonedFunctionSetsNothingAfterwards(t *testing.T) {
	t.Parallel()
	release, wrote := make(chan struct{}), make(chan struct{})
	e := New(Options{OverrunGrace: 20 * time.Millisecond})
	a := attempt(20*time.Millisecond, nil, func(ctx context.Context, a *engine.Attempt) error {
		<-release
		a.SetColumn("result", "from an abandoned try")
		a.RefuseSet(errors.New("a refused Set, late"))
		close(wrote)
		return nil
	})
	err := e.Process(a)
	close(release)
	<-wrote
	out := engine.Outcome{Attempt: a, Err: err}.Result()
	if len(out.Set) != 0 || !strings.Contains(out.Error, "did not return") {
		t.Fatalf("outcome of an abandoned try = %+v, want a 'did not return' failure setting nothing", out)
	}
}
