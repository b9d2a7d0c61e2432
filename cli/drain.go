package cli

import (
	"context"

	"github.com/pampa-go/pampa"
)

// drainCmd and undrainCmd stop and restart new reservations for workers.
func drainCmd(ctx context.Context, e *env, args []string) error {
	return eachCmd(ctx, e, args, "drain", "WORKER", "Drain workers: no new reservations, in every dispatcher and until `pampa undrain`; within\n"+
		"a second the leading dispatcher hands back the tasks reserved for them and not yet started,\n"+
		"and the tasks they run finish there (they stay registered and heartbeating). Kept in the\n"+
		"registry (pampa_workers.drained_at): a drained worker stopped and started again stays drained.",
		(*pampa.Client).Drain, "drained")
}

func undrainCmd(ctx context.Context, e *env, args []string) error {
	return eachCmd(ctx, e, args, "undrain", "WORKER", "Let drained workers get tasks again.", (*pampa.Client).Undrain, "undrained")
}
