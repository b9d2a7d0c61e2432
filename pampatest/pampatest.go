// Package pampatest helps users unit-test their processing functions
// without a database: build a task from a map of column values, run the
// function on it as a worker would (under the job's max duration, with
// panics recovered), and read its outcome and the columns it set.
//
//	job := &pampa.Job{Name: "search_odd_numbers", PrimaryKey: "value"}
//	task := pampatest.NewTask(job, map[string]any{"value": int64(7)})
//	res := pampatest.Run(ctx, checkOdd, task)
//	// res.Err, res.Succeeded, res.Set["is_odd"], res.Error
//
// What Run judges is what a worker would record: a try that returns an
// error, panics, sets a column it may not set, or returns after its
// deadline has failed; a late try's columns are dropped.
package pampatest

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/bridge"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/executor"
	"github.com/pampa-go/pampa/internal/store"
)

// Option changes how NewTask builds a task.
type Option func(*engine.Attempt)

// Try sets the task's try number (default 1).
func Try(n int) Option { return func(a *engine.Attempt) { a.Try = int64(n) } }

// Worker sets the id of the worker running the task (default "test.1").
func Worker(id string) Option { return func(a *engine.Attempt) { a.Worker = id } }

// Logger sets the task's logger (default: discard).
func Logger(l *slog.Logger) Option { return func(a *engine.Attempt) { a.Log = l } }

// NewTask builds a task of job whose row holds the given columns. The job
// needs no table, database or tracking columns; its defaults are filled
// in (a max duration of 15 minutes unless it says otherwise). Task.DB is
// nil: a function that queries the database needs a real one.
func NewTask(job *pampa.Job, row map[string]any, opts ...Option) *pampa.Task {
	j := job.WithDefaults()
	cols := slices.Sorted(maps.Keys(row))
	vals := make([]any, len(cols))
	for i, c := range cols {
		vals[i] = row[c]
	}
	a := &engine.Attempt{
		Job:    &engine.Job{Name: j.Name, MaxJobDuration: j.MaxJobDuration, QueueSize: j.QueueSize},
		Worker: "test.1", Row: store.Row{Columns: cols, Values: vals},
		Key: row[j.PrimaryKey], Try: 1, Log: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(a)
	}
	a.Log = a.Log.With("job", j.Name, "task", a.Key, "try", a.Try)
	t := bridge.NewTask(&j, a).(*pampa.Task)
	a.Handle = t
	return t
}

// Result is a try's outcome, as a worker would record it.
type Result struct {
	// Err is the try's failure: what the function returned, a panic
	// (*pampa.PanicError), a refused Set, or a deadline passed; nil on
	// success.
	Err error
	// Succeeded is Err == nil.
	Succeeded bool
	// Final says the failure is for good (pampa.Final): the task would
	// not be tried again, whatever tries it has left.
	Final bool
	// Error is the description that would be stored in the job's
	// error column ("" on success).
	Error string
	// Set holds the columns the function set, as they would be written
	// (nil when the try returned after its deadline).
	Set map[string]any
}

// Run runs fn on task as a worker would, with the job's max duration as
// the deadline of ctx. A function that ignores its context is abandoned a
// second after the deadline.
func Run(ctx context.Context, fn pampa.ProcessFunc, task *pampa.Task) Result {
	a := bridge.AttemptOf(task)
	a.Job.Hooks.Process = func(ctx context.Context, a *engine.Attempt) error { return fn(ctx, task) }
	ex := executor.New(executor.Options{OverrunGrace: time.Second, Hard: ctx})
	o := engine.Outcome{Attempt: a, Err: ex.Process(a)}
	out := o.Result()
	return Result{Err: o.TaskErr(), Succeeded: out.Success, Final: out.Final, Error: out.Error, Set: maps.Clone(out.Set)}
}
