// Command pampa-chaos runs Pampa's chaos scenario (see package
// internal/chaos) against a throwaway PostgreSQL cluster of its own and
// prints, as its last line, one JSON object with the findings. It exits
// with status 0 only if no task was lost, no task ran twice at once while
// both workers were alive, and nothing else went wrong.
//
//	go run ./internal/chaos/cmd/pampa-chaos          the full scenario (under 5 minutes)
//	CHAOS_SHORT=1 go run ./internal/chaos/cmd/pampa-chaos   a smaller one (under a minute)
//
// CHAOS_NODES=1 runs the workers under node dispatchers: 3 node processes
// of 4 workers each, killed and stopped whole (docs/multi-level.md).
//
// CHAOS_KEEP=1 keeps the run's directory (process logs, cluster) even
// after a clean run; it is always kept after a failed one.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pampa-go/pampa/internal/chaos"
)

func main() {
	if chaos.IsChild() {
		chaos.ChildMain()
		return
	}
	cfg := chaos.Full()
	if os.Getenv("CHAOS_SHORT") == "1" {
		cfg = chaos.Short()
	}
	if os.Getenv("CHAOS_NODES") == "1" {
		cfg = cfg.WithNodes(3, 4)
	}
	cfg.Keep = os.Getenv("CHAOS_KEEP") == "1"
	// SIGINT and SIGTERM end the run early; Run still stops every process
	// and the cluster before returning.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := chaos.Run(ctx, cfg, os.Stdout)
	stop()
	code := 0
	if err != nil {
		fmt.Fprintf(os.Stdout, "pampa-chaos: %v\n", err)
		code = 1
	} else if !res.OK() {
		for _, p := range res.Problems {
			fmt.Fprintf(os.Stdout, "problem: %s\n", p)
		}
		code = 1
	}
	fmt.Println(res.JSON())
	os.Exit(code)
}
