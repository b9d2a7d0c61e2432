package completer

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// bundle is a job over rows 1..5 and a completer for worker w.1.
type bundle struct {
	s     *store.Store
	j     *engine.Job
	c     *Completer
	stats *engine.WorkerStats
}

func setup(t *testing.T, s *store.Store, opts Options) *bundle {
	t.Helper()
	b := &bundle{s: s, j: enginetest.NewJob(t, s, "tasks", 5, 3), stats: &engine.WorkerStats{}}
	opts.Store, opts.Worker, opts.Log, opts.Stats = s, "w.1", enginetest.Discard(), b.stats
	b.c = New(opts)
	return b
}

// running claims rows ids for worker and returns their attempts by key.
func (b *bundle) running(t *testing.T, worker string, ids ...int) map[int]*engine.Attempt {
	t.Helper()
	enginetest.Reserve(t, b.s, b.j, worker, ids...)
	out := map[int]*engine.Attempt{}
	for _, a := range enginetest.Claim(t, b.s, b.j, worker, len(ids)) {
		out[enginetest.Key(t, a)] = a
	}
	return out
}

func (b *bundle) stat(t *testing.T, succeeded, failed, dropped int64) {
	t.Helper()
	got := [3]int64{b.stats.Succeeded.Load(), b.stats.Failed.Load(), b.stats.Dropped.Load()}
	if want := [3]int64{succeeded, failed, dropped}; got != want {
		t.Fatalf("stats succeeded/failed/dropped = %v, want %v", got, want)
	}
}

func outcome(a *engine.Attempt, result string, err error) engine.Outcome {
	a.Set = map[string]any{"result": result}
	return engine.Outcome{Attempt: a, Err: err}
}

func TestDueBySize(t *testing.T) {
	t.Parallel()
	c := New(Options{MaxBatch: 3, MaxWait: time.Hour})
	a := &engine.Attempt{}
	if c.Due() {
		t.Fatal("an empty batch is due")
	}
	c.Add(engine.Outcome{Attempt: a})
	c.Add(engine.Outcome{Attempt: a})
	if c.Due() || c.Len() != 2 {
		t.Fatalf("Due = %v with %d of 3, want not due", c.Due(), c.Len())
	}
	c.Add(engine.Outcome{Attempt: a})
	if !c.Due() {
		t.Fatal("a full batch is not due")
	}
	if got := c.Take(); len(got) != 3 || c.Len() != 0 || c.Due() {
		t.Fatalf("Take = %d outcomes, Len after = %d, Due = %v; want 3, 0, false", len(got), c.Len(), c.Due())
	}
}

func TestDueByMaxWait(t *testing.T) {
	t.Parallel()
	const wait = 30 * time.Millisecond
	c := New(Options{MaxBatch: 100, MaxWait: wait})
	before := time.Now()
	c.Add(engine.Outcome{Attempt: &engine.Attempt{}})
	first := c.Deadline()
	if first.Before(before.Add(wait)) || first.After(time.Now().Add(wait)) {
		t.Fatalf("Deadline = %s after the Add, want %s", first.Sub(before), wait)
	}
	if c.Due() {
		t.Fatal("due before MaxWait passed")
	}
	c.Add(engine.Outcome{Attempt: &engine.Attempt{}})
	if !c.Deadline().Equal(first) {
		t.Fatal("a later outcome moved the oldest one's deadline")
	}
	// Wait for the deadline itself: that is what makes the batch due.
	<-time.After(time.Until(first))
	if !c.Due() {
		t.Fatal("not due once the oldest outcome waited MaxWait")
	}
}

func TestWriteInAppliesOnlyFencedRows(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, Options{})
		var mu sync.Mutex
		var finished []int
		var finisherErrs []error
		b.j.Hooks.Finisher = func(ctx context.Context, tx store.Querier, a *engine.Attempt, taskErr error) error {
			mu.Lock()
			defer mu.Unlock()
			finished = append(finished, enginetest.Key(t, a))
			finisherErrs = append(finisherErrs, taskErr)
			return nil
		}
		mine := b.running(t, "w.1", 1, 2, 3)
		theirs := b.running(t, "w.2", 4)
		// Row 3's try moved on (relaunched and claimed again): try 1 is stale.
		enginetest.Exec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 3`)
		// Row 4 is w.2's; w.1 reports on it as if it still held it.
		src := theirs[4]
		stale := &engine.Attempt{Job: src.Job, Worker: "w.1", Row: src.Row, Key: src.Key, Try: src.Try, Log: src.Log}
		bad := errors.New("bad input")
		batch := []engine.Outcome{
			outcome(mine[1], "r1", nil),
			outcome(mine[2], "r2", bad),
			outcome(mine[3], "r3", nil),
			outcome(stale, "r4", nil),
		}
		var applied []bool
		err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			mu.Lock()
			finished, finisherErrs = nil, nil
			mu.Unlock()
			var err error
			applied, err = b.c.WriteIn(ctx, tx, batch)
			return err
		})
		if err != nil {
			t.Fatalf("WriteIn: %v", err)
		}
		if want := []bool{true, true, false, false}; !slices.Equal(applied, want) {
			t.Fatalf("applied = %v, want %v", applied, want)
		}
		if !slices.Equal(finished, []int{1, 2}) || finisherErrs[0] != nil || !errors.Is(finisherErrs[1], bad) {
			t.Fatalf("finisher ran for %v with %v, want [1 2] with [nil bad input]", finished, finisherErrs)
		}
		b.c.Recorded(batch, applied)
		b.stat(t, 1, 1, 2)

		r1 := enginetest.Get(t, s, b.j, 1)
		if !r1.Ended || !r1.OK.Bool || r1.Why.Valid || r1.Result.String != "r1" {
			t.Fatalf("row 1 = %+v, want succeeded with result r1", r1)
		}
		r2 := enginetest.Get(t, s, b.j, 2)
		if !r2.Ended || !r2.OK.Valid || r2.OK.Bool || r2.Why.String != "bad input" || r2.Result.String != "r2" {
			t.Fatalf("row 2 = %+v, want failed with 'bad input' and result r2", r2)
		}
		r3 := enginetest.Get(t, s, b.j, 3)
		if r3.Ended || r3.Result.Valid || r3.Tries != 2 {
			t.Fatalf("row 3 = %+v, want untouched (still running try 2)", r3)
		}
		r4 := enginetest.Get(t, s, b.j, 4)
		if r4.Ended || r4.Result.Valid || r4.RID.String != "w.2" {
			t.Fatalf("row 4 = %+v, want untouched (w.2's)", r4)
		}
	})
}

func TestFailingFinisherFailsBatchThenFinishOneRecordsIt(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, Options{})
		calls := 0
		b.j.Hooks.Finisher = func(ctx context.Context, tx store.Querier, a *engine.Attempt, taskErr error) error {
			calls++
			return errors.New("ledger closed")
		}
		a := b.running(t, "w.1", 1)[1]
		batch := []engine.Outcome{outcome(a, "r1", nil)}
		err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := b.c.WriteIn(ctx, tx, batch)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "ledger closed") {
			t.Fatalf("WriteIn = %v, want the finisher's error", err)
		}
		if r := enginetest.Get(t, s, b.j, 1); r.Ended {
			t.Fatalf("row 1 = %+v, want the failed batch rolled back", r)
		}
		calls = 0
		b.c.FinishEach(batch)
		r := enginetest.Get(t, s, b.j, 1)
		if !r.Ended || r.OK.Bool || r.Why.String != "finisher hook: ledger closed" {
			t.Fatalf("row 1 = %+v, want failed with 'finisher hook: ledger closed'", r)
		}
		if r.Result.Valid {
			t.Fatalf("result = %q, want the columns set not written with the finisher's failure", r.Result.String)
		}
		if calls != 1 {
			t.Fatalf("finisher ran %d times in FinishOne, want once (then the failure recorded without it)", calls)
		}
		b.stat(t, 0, 1, 0)
	})
}

func TestFinishOneUnknownSetColumnRecordsFailure(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, Options{})
		a := b.running(t, "w.1", 1)[1]
		a.Set = map[string]any{"no_such_column": 1}
		b.c.FinishOne(engine.Outcome{Attempt: a})
		r := enginetest.Get(t, s, b.j, 1)
		if !r.Ended || r.OK.Bool || !strings.Contains(r.Why.String, "writing back columns set by the processing function") ||
			!strings.Contains(r.Why.String, "no_such_column") {
			t.Fatalf("row 1 = %+v, want failed naming no_such_column", r)
		}
		b.stat(t, 0, 1, 0)
	})
}

func TestFinishOneDropsStaleTry(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, Options{})
	a := b.running(t, "w.1", 1)[1]
	enginetest.Exec(t, s, `UPDATE tasks SET rtimes = 2 WHERE id = 1`)
	b.c.FinishOne(outcome(a, "late", nil))
	if r := enginetest.Get(t, s, b.j, 1); r.Ended || r.Result.Valid {
		t.Fatalf("row 1 = %+v, want untouched by a stale try", r)
	}
	b.stat(t, 0, 0, 1)
}

func TestFinishOneRefusedSetFailsTry(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, Options{})
	a := b.running(t, "w.1", 1)[1]
	a.Set = map[string]any{"result": "kept?"}
	a.SetErr = errors.New(`set "rid": a tracking column`)
	b.c.FinishOne(engine.Outcome{Attempt: a})
	r := enginetest.Get(t, s, b.j, 1)
	if !r.Ended || r.OK.Bool || r.Why.String != a.SetErr.Error() || r.Result.Valid {
		t.Fatalf("row 1 = %+v, want failed with the refused Set and nothing written", r)
	}
}

func TestFlushWritesWaitingOutcomes(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, s *store.Store) {
		b := setup(t, s, Options{MaxBatch: 10, MaxWait: time.Hour})
		as := b.running(t, "w.1", 1, 2, 3)
		for id := 1; id <= 3; id++ {
			b.c.Add(outcome(as[id], "done", nil))
		}
		b.c.Flush()
		if b.c.Len() != 0 {
			t.Fatalf("Len after Flush = %d, want 0", b.c.Len())
		}
		for id := 1; id <= 3; id++ {
			if r := enginetest.Get(t, s, b.j, id); !r.Ended || !r.OK.Bool || r.Result.String != "done" {
				t.Fatalf("row %d = %+v, want succeeded", id, r)
			}
		}
		b.stat(t, 3, 0, 0)
		b.c.Flush() // nothing waits: a no-op
		b.stat(t, 3, 0, 0)
	})
}

func TestFlushFallsBackToOneByOne(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	b := setup(t, s, Options{MaxBatch: 10})
	as := b.running(t, "w.1", 1, 2)
	b.c.Add(outcome(as[1], "fine", nil))
	bad := engine.Outcome{Attempt: as[2]}
	as[2].Set = map[string]any{"no_such_column": "x"}
	b.c.Add(bad)
	b.c.Flush()
	if r := enginetest.Get(t, s, b.j, 1); !r.OK.Bool || r.Result.String != "fine" {
		t.Fatalf("row 1 = %+v, want succeeded although its batch failed", r)
	}
	if r := enginetest.Get(t, s, b.j, 2); !r.Ended || r.OK.Bool || !strings.Contains(r.Why.String, "no_such_column") {
		t.Fatalf("row 2 = %+v, want failed naming the column", r)
	}
	b.stat(t, 1, 1, 0)
}

func TestFinishOneAfterKillWritesNothing(t *testing.T) {
	t.Parallel()
	s := enginetest.Open(t, "sqlite")
	hard, kill := context.WithCancel(context.Background())
	b := setup(t, s, Options{Hard: hard, Retryable: func(error) bool { return true }})
	a := b.running(t, "w.1", 1)[1]
	kill()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.c.FinishOne(engine.Outcome{Attempt: a})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("FinishOne kept retrying after the worker was killed")
	}
	if r := enginetest.Get(t, s, b.j, 1); r.Ended {
		t.Fatalf("row 1 = %+v, want left running for the dispatcher", r)
	}
	b.stat(t, 0, 0, 0)
}
