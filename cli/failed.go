package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/pampa-go/pampa"
)

func failedCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("failed", "--job NAME", "List a job's tasks that used all their tries, most recent first, with the last error.\n"+
		"They stay as they are until `retry` re-drives them.")
	var cf clusterFlags
	var job string
	var limit int
	var asJSON bool
	cf.register(fs)
	fs.StringVar(&job, "job", "", "the job (required)")
	fs.IntVar(&limit, "limit", 20, "list at most this many")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if job == "" {
		return usagef("--job is required")
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	tasks, err := client.FailedTasks(ctx, job, limit)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(tasks)
	}
	if len(tasks) == 0 {
		fmt.Fprintf(e.stdout, "job %s has no task that failed for good\n", job)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tTRIES\tWORKER\tENDED\tERROR")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0fs ago\t%s\n", cell(fmt.Sprint(t.Key)), t.Tries, cell(t.Worker), t.EndedAgo, cell(firstLine(t.Error, 100)))
	}
	return tw.Flush()
}

func retryCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("retry", "--job NAME (--all | KEY...)", "Re-drive tasks that failed for good: each becomes pending again with a fresh count of\n"+
		"tries. Name the keys, or pass --all for every failed task of the job.")
	var cf clusterFlags
	var job string
	var all bool
	cf.register(fs)
	fs.StringVar(&job, "job", "", "the job (required)")
	fs.BoolVar(&all, "all", false, "retry every task of the job that failed for good")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if job == "" {
		return usagef("--job is required")
	}
	if all == (fs.NArg() > 0) {
		return usagef("name the keys to retry, or pass --all (not both)")
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	keys, err := parseKeys(ctx, client, job, fs.Args())
	if err != nil {
		return err
	}
	done, err := client.Retry(ctx, job, keys...)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "job %s: %d task(s) pending again\n", job, len(done))
	if !all && len(done) < len(keys) {
		fmt.Fprintf(e.stdout, "%d key(s) were not failed for good and were left alone\n", len(keys)-len(done))
	}
	return nil
}

// parseKeys reads task keys from the command line as the job's key column
// needs them (Client.ParseKey).
func parseKeys(ctx context.Context, client *pampa.Client, job string, args []string) ([]any, error) {
	keys := make([]any, len(args))
	for i, k := range args {
		var err error
		if keys[i], err = client.ParseKey(ctx, job, k); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func discardCmd(ctx context.Context, e *env, args []string) error {
	return keysCmd(ctx, e, args, "discard", "Fail for good tasks whose last try failed and that still have tries left, so that they are\n"+
		"not tried again; they join the tasks `pampa failed` lists, and `pampa retry` re-drives them.",
		(*pampa.Client).Discard, "failed for good", "had no failed try with tries left", nil)
}

func cancelCmd(ctx context.Context, e *env, args []string) error {
	return keysCmd(ctx, e, args, "cancel", "Cancel tasks pending, reserved or running: each becomes failed for good (\"cancelled by an\n"+
		"operator\"), so that it does not run again; a running try's context is cancelled at its worker's\n"+
		"next heartbeat and its result dropped. `pampa failed` lists them, and `pampa retry` re-drives them.",
		(*pampa.Client).Cancel, "cancelled", "were done already (succeeded, or failed for good)", nil)
}

// keysCmd is a command acting on tasks of a job named by key: it prints
// how many it changed (done), and how many it left alone and why. more,
// if set, registers the command's own flags.
func keysCmd(ctx context.Context, e *env, args []string, name, about string,
	do func(*pampa.Client, context.Context, string, ...any) ([]any, error), done, why string, more func(*flag.FlagSet)) error {
	fs := e.flags(name, "--job NAME KEY...", about)
	var cf clusterFlags
	var job string
	cf.register(fs)
	fs.StringVar(&job, "job", "", "the job (required)")
	if more != nil {
		more(fs)
	}
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if job == "" {
		return usagef("--job is required")
	}
	if fs.NArg() == 0 {
		return usagef("name the keys to %s", name)
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	keys, err := parseKeys(ctx, client, job, fs.Args())
	if err != nil {
		return err
	}
	changed, err := do(client, ctx, job, keys...)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "job %s: %d task(s) %s\n", job, len(changed), done)
	if len(changed) < len(keys) {
		fmt.Fprintf(e.stdout, "%d key(s) %s and were left alone\n", len(keys)-len(changed), why)
	}
	return nil
}

func rescheduleCmd(ctx context.Context, e *env, args []string) error {
	var at string
	return keysCmd(ctx, e, args, "reschedule", "Move pending tasks, scheduled or due, of a job with field_run_at to run at --at: an RFC 3339\n"+
		"time, or a duration from now (+10m; a past time makes them due now). Reserved, running and\n"+
		"finished tasks are left alone.",
		func(c *pampa.Client, ctx context.Context, job string, keys ...any) ([]any, error) {
			t, err := parseAt(at, time.Now())
			if err != nil {
				return nil, err
			}
			return c.Reschedule(ctx, job, t, keys...)
		}, "rescheduled", "were not pending (reserved, running or finished)",
		func(fs *flag.FlagSet) {
			fs.StringVar(&at, "at", "", "when to run them: RFC 3339, or a duration from now like +10m (required)")
		})
}

// parseAt reads a time as RFC 3339, or as a duration from now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("--at %q: want an RFC 3339 time or a duration from now like +10m", s)
	}
	return t, nil
}
