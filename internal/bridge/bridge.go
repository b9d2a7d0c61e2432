// Package bridge lets package pampatest build and read the root package's
// tasks, without the root exporting a constructor that users would take
// for a way to make tasks in production, and lets the bench read a
// client's counters. The root package fills the functions in at init.
package bridge

import "github.com/pampa-go/pampa/internal/engine"

var (
	// NewTask wraps an attempt of job (a *pampa.Job) as a *pampa.Task.
	NewTask func(job any, a *engine.Attempt) any
	// AttemptOf returns the attempt behind a *pampa.Task.
	AttemptOf func(task any) *engine.Attempt
	// Commits returns how many write transactions a *pampa.Client has
	// committed, for `pampa bench`.
	Commits func(client any) int64
)
