// Package handler is the contract between Pampa and a processing function
// outside the worker's process: a command it starts (exec) or a URL it
// posts to (http). Each try hands the function one Input as a JSON object
// and reads back an Outcome; the two transports live in packages of their
// own and share these types, so that a script written for one reads the
// same object in the other.
package handler

import (
	"errors"
	"time"
)

// Input is what one try hands the function, as one JSON object.
type Input struct {
	Job      string         `json:"job"`
	Key      any            `json:"key"`
	Try      int            `json:"try"`
	Worker   string         `json:"worker"`
	Deadline time.Time      `json:"deadline"` // the try's deadline (the job's max duration from its start)
	Row      map[string]any `json:"row"`      // the task's row: column name to value
}

// Outcome is what the function answered.
type Outcome struct {
	// Set names columns to write with the outcome, as Task.Set does; nil
	// for none.
	Set map[string]any
	// Err is nil on success; otherwise the try failed and Err's text is
	// its error description.
	Err error
	// Final, with Err, says the task must not be tried again: it fails
	// for good whatever tries it has left.
	Final bool
}

// ErrFinal marks an error that fails its task for good. Transports wrap
// it when the function says so (an exit status, an HTTP status).
var ErrFinal = errors.New("failed for good: not to be tried again")
