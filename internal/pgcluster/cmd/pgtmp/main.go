// Command pgtmp starts and stops a throwaway PostgreSQL cluster for a whole
// test run, so that scripts can share one server between test binaries.
//
//	pgtmp start --dir D [--port N] [--fast]   start (initializing D if new); print its URL
//	pgtmp stop  --dir D [--remove]            stop it; with --remove, delete D too
//
// The URL is printed alone on standard output; progress and errors go to
// standard error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pampa-go/pampa/internal/pgcluster"
)

const usage = `usage:
  pgtmp start --dir D [--port N] [--fast]   start a cluster in D (initialized if new) and print its URL
  pgtmp stop  --dir D [--remove]            stop the cluster in D; --remove deletes D as well
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	fs := flag.NewFlagSet("pgtmp "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the cluster's directory (required)")
	var err error
	switch args[0] {
	case "start":
		port := fs.Int("port", 0, "TCP port on 127.0.0.1 (default: the one used before in --dir, else a free one)")
		fast := fs.Bool("fast", false, "turn fsync, synchronous_commit and full_page_writes off")
		if code, ok := parse(fs, args[1:]); !ok {
			return code
		}
		if *dir == "" {
			return missingDir(fs, stderr)
		}
		var c *pgcluster.Cluster
		c, err = pgcluster.Start(ctx, pgcluster.Options{Dir: *dir, Port: *port, FastUnsafe: *fast})
		if err == nil {
			fmt.Fprintln(stdout, c.DSN("postgres"))
		}
	case "stop":
		remove := fs.Bool("remove", false, "delete the directory after stopping")
		if code, ok := parse(fs, args[1:]); !ok {
			return code
		}
		if *dir == "" {
			return missingDir(fs, stderr)
		}
		err = stop(ctx, *dir, *remove)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pgtmp: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "pgtmp %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// parse parses a command's flags; ok is false when the command should not
// run, and code is then the exit code.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func missingDir(fs *flag.FlagSet, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: --dir is required\n", fs.Name())
	return 2
}

// stop stops the cluster in dir; a directory without a cluster (say, start
// failed early) counts as stopped.
func stop(ctx context.Context, dir string, remove bool) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := pgcluster.Open(dir)
	if errors.Is(err, pgcluster.ErrNoCluster) {
		if remove {
			return os.RemoveAll(dir)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if remove {
		return c.Destroy()
	}
	return c.Stop(ctx)
}
