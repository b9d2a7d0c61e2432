// Command quickstart is the original's Getting Started in Go: it checks
// which of the numbers 1..100,000 are odd, on ten workers.
//
//	go run ./examples/quickstart demo     # seed, run until done, report
//
// It is also a complete Pampa program: the job comes from pampa.yaml and
// the processing function is compiled in, so every command of the pampa
// CLI works, e.g. `go run ./examples/quickstart report`.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/cli"
)

//go:embed pampa.yaml
var config []byte

// checkOdd is the processing function: it runs once per row of `numbers`.
func checkOdd(ctx context.Context, t *pampa.Task) error {
	value, err := t.Int64("value")
	if err != nil {
		return err
	}
	if err := demoFailure(t, value); err != nil {
		return err
	}
	isOdd := value%2 != 0
	t.Log().Debug("checked", "value", value, "odd", isOdd)
	t.Set("is_odd", isOdd) // written back with the task's outcome
	return nil
}

func main() {
	cluster, err := pampa.ParseConfig(config, "pampa.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	prog := &cli.Program{
		Name:     "quickstart",
		Cluster:  cluster,
		Handlers: map[string]pampa.ProcessFunc{"search_odd_numbers": checkOdd},
	}
	if len(os.Args) > 1 && os.Args[1] == "demo" {
		os.Exit(demo(prog, os.Args[2:]))
	}
	cli.Main(prog)
}

const total = 100_000

// During `demo`, the multiples of failEvery fail every try, so that the
// run ends with a few tasks failed for good to look at and retry (`failed`,
// `retry`, or the dashboard). A task retried in the same process, or run
// by any other command, succeeds.
const failEvery = 10_007

var (
	demoMode bool
	gaveUp   sync.Map // values whose every try failed, in this process
)

func demoFailure(t *pampa.Task, value int64) error {
	if !demoMode || value%failEvery != 0 {
		return nil
	}
	if _, retried := gaveUp.Load(value); retried {
		return nil
	}
	if t.Try() >= t.Job().MaxTryTimes {
		gaveUp.Store(value, true)
	}
	return fmt.Errorf("failed on purpose (the demo fails the multiples of %d): retry me", failEvery)
}

// demo seeds the table, runs a dispatcher and ten workers until every task
// is done, and checks the result. Rerunning starts from scratch.
func demo(prog *cli.Program, args []string) int {
	demoMode = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll("pampa-demo", 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db := prog.Cluster.Database.WithDefaults()
	fmt.Printf("Seeding numbers 1..%d into %s (%s)...\n", total, db.URL, db.Driver)
	if err := seed(ctx, prog.Cluster); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		return 1
	}
	run := func(args ...string) int { return cli.Run(ctx, prog, args, os.Stdout, os.Stderr) }
	fmt.Println("\n$ pampa setup")
	if code := run("setup"); code != 0 {
		return code
	}
	fmt.Println("\n$ pampa run --workers 10 --until-done")
	start := time.Now()
	if code := run(append([]string{"run", "--workers", "10", "--until-done", "--log-dir", "pampa-demo"}, args...)...); code != 0 {
		return code
	}
	wall := time.Since(start)
	fmt.Println("\n$ pampa report")
	if code := run("report"); code != 0 {
		return code
	}
	odd, err := countOdd(ctx, prog.Cluster)
	if err != nil {
		fmt.Fprintln(os.Stderr, "count:", err)
		return 1
	}
	// The odd multiples of failEvery failed, and were not counted.
	wantOdd := total/2 - (total/failEvery+1)/2
	fmt.Printf("\nOdd numbers found: %d (the %d odd ones among the tasks failed on purpose are not)\n", odd, total/2-wantOdd)
	fmt.Printf("Processed %d tasks in %.1fs (%.0f tasks/s). Logs are in pampa-demo/.\n", total, wall.Seconds(), total/wall.Seconds())
	fmt.Printf("\nThe %d multiples of %d failed on purpose. See them, retry them, and run them again:\n"+
		"  go run ./examples/quickstart failed --job search_odd_numbers\n"+
		"  go run ./examples/quickstart retry --job search_odd_numbers --all\n"+
		"  go run ./examples/quickstart run --until-done\n"+
		"or watch a run in the dashboard: make dashboard, then open http://127.0.0.1:8080/\n", total/failEvery, failEvery)
	if odd != wantOdd {
		fmt.Fprintf(os.Stderr, "expected %d odd numbers\n", wantOdd)
		return 1
	}
	return 0
}

// seed recreates the table `numbers` with the values 1..total.
func seed(ctx context.Context, c *pampa.Cluster) error {
	client, err := pampa.Connect(ctx, c)
	if err != nil {
		return err
	}
	defer client.Close()
	db := client.DB()
	for _, q := range []string{
		`DROP TABLE IF EXISTS numbers`,
		`CREATE TABLE numbers (value INTEGER PRIMARY KEY, is_odd BOOLEAN, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for start := 1; start <= total; start += 1000 {
		var b strings.Builder
		b.WriteString("INSERT INTO numbers (value) VALUES ")
		for v := start; v < start+1000; v++ {
			if v > start {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "(%d)", v)
		}
		if _, err := tx.ExecContext(ctx, b.String()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func countOdd(ctx context.Context, c *pampa.Cluster) (int, error) {
	client, err := pampa.Connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	var n int
	err = client.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM numbers WHERE is_odd = TRUE`).Scan(&n)
	return n, err
}
