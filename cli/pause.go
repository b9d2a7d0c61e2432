package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/pampa-go/pampa"
)

// pauseCmd and resumeCmd stop and restart new reservations of jobs.
func pauseCmd(ctx context.Context, e *env, args []string) error {
	return eachCmd(ctx, e, args, "pause", "JOB", "Pause jobs: no new reservations, in every dispatcher and until `pampa resume`; the leading\n"+
		"dispatcher hands back the tasks reserved and not yet started, and running tasks finish.\n"+
		"Kept in the database (pampa_paused): it outlives restarts, and `pampa report` shows it.",
		(*pampa.Client).Pause, "paused")
}

func resumeCmd(ctx context.Context, e *env, args []string) error {
	return eachCmd(ctx, e, args, "resume", "JOB", "Let paused jobs' tasks be reserved again.", (*pampa.Client).Resume, "resumed")
}

// eachCmd is a command that does one thing to each job or worker it is
// given (what names the kind), and says so (done) for each.
func eachCmd(ctx context.Context, e *env, args []string, name, what, about string,
	do func(*pampa.Client, context.Context, string) error, done string) error {
	fs := e.flags(name, what+"...", about)
	var cf clusterFlags
	cf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	kind := strings.ToLower(what)
	if fs.NArg() == 0 {
		return usagef("name the %ss to %s", kind, name)
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	for _, arg := range fs.Args() {
		if err := do(client, ctx, arg); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s %s: %s\n", kind, arg, done)
	}
	return nil
}

// jobLabel is a report's job name, marked when the job is paused.
func jobLabel(r pampa.JobReport) string {
	if r.Paused {
		return r.Job + " (paused)"
	}
	return r.Job
}
