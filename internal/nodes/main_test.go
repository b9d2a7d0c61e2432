package nodes

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// envTestProgram makes the test binary act as a Pampa program on the
// test nodes: the agent (`nodes agent ...`) and a fake worker (`worker
// ...`) that logs a tick every 100ms and stops on SIGTERM; `node ...` is
// the same as a fake node dispatcher, logging to node.<node>.log.
const envTestProgram = "PAMPA_NODES_TEST_PROGRAM"

func TestMain(m *testing.M) {
	if os.Getenv(envTestProgram) == "1" {
		os.Exit(testProgram(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func testProgram(args []string) int {
	switch {
	case len(args) >= 2 && args[0] == "nodes" && args[1] == "agent":
		return AgentMain(context.Background(), args[2:], os.Stdin, os.Stdout, os.Stderr)
	case len(args) >= 1 && (args[0] == "worker" || args[0] == "node"):
		return fakeWorker(args[0], args[1:])
	}
	fmt.Fprintf(os.Stderr, "test program: unknown command %q\n", args)
	return 2
}

func fakeWorker(cmd string, args []string) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	id := fs.String("id", "", "")
	node := fs.String("node", "", "")
	workers := fs.Int("workers", 0, "")
	fs.String("config", "", "")
	logDir := fs.String("log-dir", ".", "")
	fs.Duration("grace", 0, "")
	ignoreTerm := fs.Bool("ignore-term", false, "ignore SIGTERM")
	fail := fs.Bool("fail", false, "exit at once, as a worker that cannot reach its database")
	exitAfter := fs.Duration("exit-after", 0, "exit with --exit-code after this long")
	exitCode := fs.Int("exit-code", 3, "the status --exit-after exits with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *fail {
		fmt.Fprintln(os.Stderr, "fake worker: cannot connect to the database")
		return 1
	}
	sigs := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	logName := "worker." + *id + ".log"
	if cmd == "node" {
		*id, logName = *node+".0", "node."+*node+".log"
	}
	f, err := os.OpenFile(filepath.Join(*logDir, logName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s started, pid %d, workers %d, mark %q, GOMEMLIMIT %q\n", cmd, *id, os.Getpid(), *workers, os.Getenv("PAMPA_NODES_TEST_MARK"), os.Getenv("GOMEMLIMIT"))
	fmt.Println("fake worker on stdout")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var exit <-chan time.Time
	if *exitAfter > 0 {
		exit = time.After(*exitAfter)
	}
	for n := 1; ; n++ {
		select {
		case <-exit:
			fmt.Fprintf(f, "%s %s exits with status %d\n", cmd, *id, *exitCode)
			return *exitCode
		case <-sigs:
			fmt.Fprintf(f, "%s %s stopping\n", cmd, *id)
			return 0
		case <-tick.C:
			fmt.Fprintf(f, "tick %d\n", n)
		}
	}
}
