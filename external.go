package pampa

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/handler"
)

// A job's processing function may live outside the worker's process: a
// command (Job.Exec) or an HTTP endpoint (Job.HTTP). Each worker makes one
// caller per such job, closed when the worker stops; every try hands it
// the task as a handler.Input and applies the handler.Outcome it gets back,
// the columns it sets through Task.Set.

// caller runs the tries of one external job for one worker.
type caller interface {
	Call(ctx context.Context, in handler.Input) handler.Outcome
	// Close stops what the caller keeps running between tries.
	Close()
}

// external reports whether the job's processing function runs outside
// the worker's process, so that it needs no Go function.
func (j *Job) external() bool { return j.Exec != nil || j.HTTP != nil }

// externalSpec names the job's external function, for messages.
func (j *Job) externalSpec() string {
	switch {
	case j.Exec != nil:
		return "exec: " + j.Exec.commandText()
	case j.HTTP != nil:
		return "http: " + j.HTTP.URL
	}
	return ""
}

// newCaller makes the caller of an external job for one worker.
func newCaller(j *Job, opts WorkerOptions) (caller, error) {
	switch {
	case j.Exec != nil:
		return newExecCaller(j, opts)
	case j.HTTP != nil:
		return newHTTPCaller(j, opts)
	}
	return nil, fmt.Errorf("job %q has no external processing function", j.Name)
}

// callExternal runs one try through c and records its outcome on t.
func callExternal(ctx context.Context, c caller, t *Task) error {
	out := c.Call(ctx, inputOf(ctx, t))
	if unknown := t.unknownColumns(out.Set); len(unknown) > 0 {
		err := fmt.Errorf("the function set columns that table %s does not have: %s", t.job.Table, strings.Join(unknown, ", "))
		if out.Err != nil {
			err = fmt.Errorf("%w; it also failed: %v", err, out.Err)
		}
		return err
	}
	for _, col := range slices.Sorted(maps.Keys(out.Set)) {
		t.Set(col, out.Set[col]) // refuses the key and the tracking columns
	}
	if out.Err != nil && out.Final {
		return Final(out.Err)
	}
	return out.Err
}

// unknownColumns lists, quoted and sorted, the columns of set that the
// task's row does not have.
func (t *Task) unknownColumns(set map[string]any) []string {
	var unknown []string
	for _, col := range slices.Sorted(maps.Keys(set)) {
		if !t.Has(col) {
			unknown = append(unknown, fmt.Sprintf("%q", col))
		}
	}
	return unknown
}

// inputOf is what a try hands an external function: the task's row with
// its job, key, try, worker and deadline.
func inputOf(ctx context.Context, t *Task) handler.Input {
	deadline, _ := ctx.Deadline()
	row := make(map[string]any, len(t.a.Row.Columns))
	for i, col := range t.a.Row.Columns {
		row[col] = jsonValue(t.a.Row.Values[i])
	}
	return handler.Input{Job: t.job.Name, Key: jsonValue(t.Key()), Try: t.Try(), Worker: t.WorkerID(), Deadline: deadline.UTC(), Row: row}
}

// jsonValue is a value as the driver gave it, ready for JSON: text that
// arrived as bytes is a string (JSON would encode bytes in base64, which
// is kept for binary values).
func jsonValue(v any) any {
	if b, ok := v.([]byte); ok && utf8.Valid(b) {
		return string(b)
	}
	return v
}
