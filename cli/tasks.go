package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/pampa-go/pampa"
)

func tasksCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("tasks", "--job NAME [--state S] [--worker W] [--key K] [--error TEXT] [--after K] [--limit N] [--json]",
		"List a job's tasks in key order: state, tries, worker, times and last error. Filters combine;\n"+
			"a page ends with the --after to give for the next one. States: pending, retrying, reserved,\n"+
			"running, succeeded, failed. A state reads its index; --worker or --error alone may read the\n"+
			"whole table.")
	var cf clusterFlags
	var job string
	var f pampa.TaskFilter
	var asJSON bool
	cf.register(fs)
	fs.StringVar(&job, "job", "", "the job (required)")
	fs.StringVar(&f.State, "state", "", "only tasks in this state")
	fs.StringVar(&f.Worker, "worker", "", "only tasks whose field_id is this worker id")
	fs.StringVar(&f.Key, "key", "", "only the task with this key")
	fs.StringVar(&f.ErrorContains, "error", "", "only tasks whose error description holds this text (case-insensitive)")
	fs.StringVar(&f.After, "after", "", "only keys after this one (the next page)")
	fs.IntVar(&f.Limit, "limit", pampa.DefaultTaskLimit, fmt.Sprintf("list at most this many (1 to %d)", pampa.MaxTaskLimit))
	fs.BoolVar(&asJSON, "json", false, "print a JSON array")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if job == "" {
		return usagef("--job is required")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v (a key goes in --key)", fs.Args())
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	tasks, err := client.Tasks(ctx, job, f)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(tasks)
	}
	if len(tasks) == 0 {
		fmt.Fprintf(e.stdout, "job %s has no such task\n", job)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTATE\tTRIES\tWORKER\tSTARTED\tENDED\tERROR")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", cell(fmt.Sprint(t.Key)), orDash(t.State), t.Tries, cell(orDash(t.Worker)),
			timeText(t.StartedAt), timeText(t.EndedAt), cell(firstLine(t.Error, 100)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(tasks) == f.Limit {
		fmt.Fprintf(e.stdout, "next page: --after %v\n", tasks[len(tasks)-1].Key)
	}
	return nil
}

func taskCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("task", "--job NAME KEY [--json]", "Show one task: its state, tries, worker, times and last error, and the row's other\n"+
		"columns (each cut to 1 KB).")
	var cf clusterFlags
	var job string
	var asJSON bool
	cf.register(fs)
	fs.StringVar(&job, "job", "", "the job (required)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON object")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if job == "" {
		return usagef("--job is required")
	}
	if fs.NArg() != 1 {
		return usagef("name one key")
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	t, err := client.Task(ctx, job, fs.Arg(0))
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(t)
	}
	return printTask(e.stdout, t)
}

// printTask prints a task as a list of names and values; a value of
// several lines goes on with its next lines under its first.
func printTask(w io.Writer, t pampa.TaskDetail) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(name, value string) {
		for i, l := range strings.Split(value, "\n") {
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(tw, "%s\t%s\n", cell(name), cell(l))
		}
	}
	line("key", fmt.Sprint(t.Key))
	line("state", orDash(t.State))
	line("tries", fmt.Sprint(t.Tries))
	line("worker", orDash(t.Worker))
	line("reserved", timeText(t.ReservedAt))
	line("started", timeText(t.StartedAt))
	line("ended", timeText(t.EndedAt))
	line("error", orDash(t.Error))
	for _, c := range t.Columns {
		v := c.Value
		switch {
		case c.Null:
			v = "NULL"
		case c.Truncated:
			v += "… (cut)"
		}
		line(c.Name, v)
	}
	return tw.Flush()
}

// timeText shows a database time in UTC, to the second; "-" for none.
func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}

// orDash shows empty text as "-", so that a table keeps its columns.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell keeps a table's columns in line: a tab inside a value would start
// another column.
func cell(s string) string { return strings.ReplaceAll(s, "\t", " ") }

// firstLine is the first line of text, cut to at most max bytes (on a
// UTF-8 boundary) with "…" when it was longer.
func firstLine(text string, max int) string {
	line, _, _ := strings.Cut(text, "\n")
	if len(line) <= max {
		return line
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return line[:cut] + "…"
}
