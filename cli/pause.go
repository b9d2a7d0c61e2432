package cli

import (
	"context"
	"fmt"

	"github.com/pampa-go/pampa"
)

// pauseCmd and resumeCmd stop and restart new reservations of jobs.
func pauseCmd(ctx context.Context, e *env, args []string) error {
	return pauseOrResume(ctx, e, args, true)
}

func resumeCmd(ctx context.Context, e *env, args []string) error {
	return pauseOrResume(ctx, e, args, false)
}

func pauseOrResume(ctx context.Context, e *env, args []string, pause bool) error {
	name, about := "resume", "Let paused jobs' tasks be reserved again."
	if pause {
		name, about = "pause", "Pause jobs: no new reservations, in every dispatcher and until `pampa resume`; the leading\n"+
			"dispatcher hands back the tasks reserved and not yet started, and running tasks finish.\n"+
			"Kept in the database (pampa_paused): it outlives restarts, and `pampa report` shows it."
	}
	fs := e.flags(name, "JOB...", about)
	var cf clusterFlags
	cf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("name the jobs to %s", name)
	}
	client, err := e.open(ctx, cf)
	if err != nil {
		return err
	}
	defer client.Close()
	for _, job := range fs.Args() {
		do, done := client.Resume, "resumed"
		if pause {
			do, done = client.Pause, "paused"
		}
		if err := do(ctx, job); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "job %s: %s\n", job, done)
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
