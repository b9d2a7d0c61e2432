package pampa

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/config"
	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/handler/execcall"
	"github.com/pampa-go/pampa/internal/store"
)

// DrainedEvent is a job's drain: its backlog went from non-empty to
// empty with nothing running, retrying or reserved (docs/completion.md).
// It is what the on_drained hook is given, and, as JSON, what its command
// reads on stdin.
type DrainedEvent struct {
	// ID is the event's stable id: the same on every call for this
	// drain, different for every other. A hook that is not SQL may be
	// called twice for one drain (after a dispatcher died during its
	// call); ID is what it deduplicates on.
	ID  string `json:"id"`
	Job string `json:"job"`
	// Run numbers the job's runs, from 1.
	Run int64 `json:"run"`
	// StartedAt is when the run began: the first hand-out of a task after
	// the job was idle, or the leader seeing it busy if sooner. EndedAt
	// is when the leader found it drained. Both by the database's clock.
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Succeeded and Failed count the tasks whose last try ended during
	// the run: succeeded, and failed for good.
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// Attempt counts the calls of the hook for this event, this one
	// included.
	Attempt int `json:"attempt"`
}

// GroupDoneEvent is the end of a group's run: every task of the group
// (group_by) has ended, none pending, reserved, running or retrying
// (docs/completion.md).
type GroupDoneEvent struct {
	// ID is the event's stable id, as DrainedEvent's.
	ID  string `json:"id"`
	Job string `json:"job"`
	// Group is the group's value as the driver reads it (int64, string,
	// float64, bool, time.Time); nil for the rows whose column is NULL.
	Group any `json:"group"`
	// Run numbers the group's runs, from 1: a group that gets new rows
	// after it was done starts a new one.
	Run int64 `json:"run"`
	// StartedAt is the run's first hand-out of a task of the group;
	// EndedAt when the leader found the group done.
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Succeeded and Failed count the group's tasks whose last try ended
	// during the run: succeeded, and failed for good.
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Attempt   int   `json:"attempt"`
}

// HookCommand runs a completion hook as a command: the event as one line
// of JSON on stdin, exit status 0 for success. In a config file:
// on_drained_exec / on_group_done_exec, a list [program, args...].
type HookCommand struct {
	// Command is the program and its arguments, run without a shell. A
	// program named without a slash is looked up in PATH; a relative path
	// with one is taken from Dir.
	Command []string
	// Dir is the working directory: the config file's directory for a
	// hook read from one; set in Go, "" is the dispatcher's.
	Dir string
	// Env adds variables to the environment the command inherits from the
	// dispatcher, beside the PAMPA_* ones that describe the event.
	Env map[string]string
}

func (h *HookCommand) text() string { return strings.Join(h.Command, " ") }

// completionForms are one completion hook's three forms, for validation.
type completionForms struct {
	name     string // on_drained or on_group_done
	goHook   bool
	sql      string
	exec     *HookCommand
	needsTag string // the config option the hook needs, "" for none
}

func (f completionForms) set() int {
	n := 0
	for _, b := range []bool{f.goHook, f.sql != "", f.exec != nil} {
		if b {
			n++
		}
	}
	return n
}

// field and value name the form set, for an error.
func (f completionForms) field() (string, string) {
	switch {
	case f.exec != nil:
		return f.name + "_exec", f.exec.text()
	case f.sql != "":
		return f.name + "_sql", f.sql
	}
	return f.name, "(Go function)"
}

// checkCompletion validates the completion hooks: one form each, a
// command that names a program, on_group_done only with group_by.
func (j *Job) checkCompletion(bad func(string, any, string) error) error {
	h := j.Hooks
	for _, f := range []completionForms{
		{name: "on_drained", goHook: h.OnDrained != nil, sql: h.OnDrainedSQL, exec: h.OnDrainedExec},
		{name: "on_group_done", goHook: h.OnGroupDone != nil, sql: h.OnGroupDoneSQL, exec: h.OnGroupDoneExec, needsTag: "group_by"},
	} {
		if f.set() == 0 {
			continue
		}
		field, value := f.field()
		if f.set() > 1 {
			return bad(field, value, fmt.Sprintf("set one form of the hook: the Go function, %s_sql or %s_exec", f.name, f.name))
		}
		if f.needsTag != "" && j.GroupBy == "" {
			return bad(field, value, "is called when every task of a group has ended; set group_by to the column that names a task's group")
		}
		if f.sql != "" && strings.TrimSpace(f.sql) == "" {
			return bad(field, value, "is blank; write a statement or leave it out")
		}
		if x := f.exec; x != nil {
			switch {
			case len(x.Command) == 0 || x.Command[0] == "":
				return bad(field, value, "name the program to run, as a list: [sh, report.sh]")
			case slices.ContainsFunc(x.Command, func(a string) bool { return strings.ContainsRune(a, 0) }):
				return bad(field, value, "holds a NUL byte")
			}
			for _, name := range slices.Sorted(maps.Keys(x.Env)) {
				if !config.IsEnvName(name) {
					return bad(field, value, "env "+name+" is not an environment variable name")
				}
			}
		}
	}
	return nil
}

// hasOnDrained and hasOnGroupDone report whether a form of the hook is set.
func (h *Hooks) hasOnDrained() bool {
	return h.OnDrained != nil || h.OnDrainedSQL != "" || h.OnDrainedExec != nil
}

func (h *Hooks) hasOnGroupDone() bool {
	return h.OnGroupDone != nil || h.OnGroupDoneSQL != "" || h.OnGroupDoneExec != nil
}

// completionHooks wraps the job's completion hooks for the engine: a Go
// function or a command is called outside any transaction; an SQL hook
// runs in the transaction that marks its event fired.
func (c *Client) completionHooks(j *jobRuntime, e *engine.Hooks, log *slog.Logger) {
	h, db := j.Hooks, c.store.DB
	switch {
	case h.OnDrained != nil:
		e.OnDrained = &engine.CompletionHook{Call: func(ctx context.Context, ev engine.CompletionEvent) error {
			return h.OnDrained(ctx, db, drainedEvent(ev))
		}}
	case h.OnDrainedSQL != "":
		e.OnDrained = c.sqlCompletion(h.OnDrainedSQL)
	case h.OnDrainedExec != nil:
		e.OnDrained = commandCompletion(h.OnDrainedExec, log)
	}
	switch {
	case h.OnGroupDone != nil:
		e.OnGroupDone = &engine.CompletionHook{Call: func(ctx context.Context, ev engine.CompletionEvent) error {
			return h.OnGroupDone(ctx, db, groupDoneEvent(ev))
		}}
	case h.OnGroupDoneSQL != "":
		e.OnGroupDone = c.sqlCompletion(h.OnGroupDoneSQL)
	case h.OnGroupDoneExec != nil:
		e.OnGroupDone = commandCompletion(h.OnGroupDoneExec, log)
	}
}

func drainedEvent(e engine.CompletionEvent) DrainedEvent {
	return DrainedEvent{ID: e.ID, Job: e.Job, Run: e.Run, StartedAt: e.StartedAt, EndedAt: e.EndedAt,
		Succeeded: e.Succeeded, Failed: e.Failed, Attempt: e.Attempt}
}

func groupDoneEvent(e engine.CompletionEvent) GroupDoneEvent {
	return GroupDoneEvent{ID: e.ID, Job: e.Job, Group: e.Group, Run: e.Run, StartedAt: e.StartedAt, EndedAt: e.EndedAt,
		Succeeded: e.Succeeded, Failed: e.Failed, Attempt: e.Attempt}
}

// completionParams are the named parameters of an SQL completion hook.
func completionParams(e engine.CompletionEvent) map[string]any {
	p := map[string]any{
		"event_id": e.ID, "job": e.Job, "run": e.Run, "started_at": e.StartedAt, "ended_at": e.EndedAt,
		"succeeded": e.Succeeded, "failed": e.Failed, "attempt": e.Attempt,
	}
	if e.Kind == store.EventGroupDone {
		p["group"] = e.Group
	}
	return p
}

// sqlCompletion runs query with the event's named parameters bound, in
// the transaction that marks the event fired.
func (c *Client) sqlCompletion(query string) *engine.CompletionHook {
	return &engine.CompletionHook{InTx: func(ctx context.Context, tx store.Querier, e engine.CompletionEvent) error {
		_, err := tx.ExecContext(ctx, query, c.store.Dialect.NamedArgs(completionParams(e))...)
		return err
	}}
}

// hookKillGrace is how long a hook command has after SIGTERM, when its
// call's deadline passed, before SIGKILL.
const hookKillGrace = 5 * time.Second

// commandCompletion runs the command once per call: the event as one
// line of JSON on stdin, and PAMPA_EVENT, PAMPA_EVENT_ID, PAMPA_JOB,
// PAMPA_RUN, PAMPA_SUCCEEDED, PAMPA_FAILED, PAMPA_ATTEMPT (and, for a
// group not NULL, PAMPA_GROUP) in its environment.
func commandCompletion(x *HookCommand, log *slog.Logger) *engine.CompletionHook {
	return &engine.CompletionHook{Call: func(ctx context.Context, e engine.CompletionEvent) error {
		prog, err := execProgram(x.Command[0], x.Dir)
		if err != nil {
			return fmt.Errorf("%s: %w", x.text(), err)
		}
		var line []byte
		if e.Kind == store.EventGroupDone {
			line, err = json.Marshal(struct {
				Event string `json:"event"`
				GroupDoneEvent
			}{e.Kind, groupDoneEvent(e)})
		} else {
			line, err = json.Marshal(struct {
				Event string `json:"event"`
				DrainedEvent
			}{e.Kind, drainedEvent(e)})
		}
		if err != nil {
			return fmt.Errorf("encode the event: %w", err)
		}
		env := os.Environ()
		for _, name := range slices.Sorted(maps.Keys(x.Env)) {
			env = append(env, name+"="+x.Env[name])
		}
		env = append(env, "PAMPA_EVENT="+e.Kind, "PAMPA_EVENT_ID="+e.ID, "PAMPA_JOB="+e.Job,
			"PAMPA_RUN="+strconv.FormatInt(e.Run, 10), "PAMPA_SUCCEEDED="+strconv.FormatInt(e.Succeeded, 10),
			"PAMPA_FAILED="+strconv.FormatInt(e.Failed, 10), "PAMPA_ATTEMPT="+strconv.Itoa(e.Attempt))
		if e.Kind == store.EventGroupDone && e.Group != nil {
			env = append(env, "PAMPA_GROUP="+groupText(e.Group))
		}
		caller := execcall.New(execcall.Options{Args: append([]string{prog}, x.Command[1:]...), Dir: x.Dir, Env: env,
			KillGrace: hookKillGrace, Log: log.With("job", e.Job)})
		if err := caller.Run(ctx, append(line, '\n')); err != nil {
			return fmt.Errorf("%s: %w", x.text(), err)
		}
		return nil
	}}
}

// groupText writes a group value for the environment.
func groupText(v any) string {
	if t, ok := v.(time.Time); ok {
		return t.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}
