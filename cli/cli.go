// Package cli is Pampa's command line. The stock `pampa` binary is a thin
// main around it; a program that compiles in its own processing functions
// hands control to it the same way:
//
//	func main() {
//		cli.Main(&cli.Program{
//			Handlers: map[string]pampa.ProcessFunc{"search_odd_numbers": checkOdd},
//		})
//	}
//
// Every command takes Go-style flags (--delay 30s --log=false) and also the
// original's key=value arguments (delay=30 log=no).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/pampa-go/pampa"
)

// Program is what a program hands to the command line.
type Program struct {
	// Name is the program's name in usage lines. Default "pampa".
	Name string
	// Version is printed by `version` and recorded in the worker registry
	// and in deployed releases. Default: the module version from the build
	// (set by `go install ...@v1.2.3`), or "dev".
	Version string
	// Commit is the source revision, printed by `version`. Default: the
	// one the Go toolchain recorded in the build (a build inside a Git
	// checkout), or none.
	Commit string
	// Cluster defines the cluster in Go. When nil, it is read from the
	// --config file (default: pampa.yaml in the working directory).
	Cluster *pampa.Cluster
	// Handlers are processing functions by job name, for jobs defined in
	// the config file (or in Cluster without a Process).
	Handlers map[string]pampa.ProcessFunc
	// Configure, if set, is called with the loaded cluster before any
	// command runs, to add hooks or start-up snippets in Go.
	Configure func(*pampa.Cluster) error
}

// Main runs the command line with os.Args and exits with its status. The
// first SIGINT or SIGTERM stops gracefully; a second stops at once.
func Main(p *Program) {
	ctx, stop := signalContext()
	code := Run(ctx, p, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// hardStop is closed on the second signal; long-running commands select on
// it to stop at once.
var hardStop = make(chan struct{})

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(os.Stderr, "pampa: stopping gracefully (signal again to stop at once)")
				cancel()
				continue
			}
			fmt.Fprintln(os.Stderr, "pampa: stopping at once")
			close(hardStop)
			return
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"run", "[--workers N] [--nodes N] [--until-done]", "run a dispatcher and N workers in this process (single-machine mode)", runCmd},
		{"node", "--node NAME", "run a node dispatcher and the node's workers: one claimer for the node", nodeCmd},
		{"dispatcher", "", "run a dispatcher: reserve tasks for workers (one leads, others stand by)", dispatcherCmd},
		{"worker", "--id NODE.N", "run one worker: process the tasks reserved for its id", workerCmd},
		{"setup", "[JOB...]", "add missing tracking columns and indexes to the jobs' tables", setupCmd},
		{"report", "[--json] [--job NAME]", "count each job's tasks: total, completed, pending, failed, reserved, running", reportCmd},
		{"failed", "--job NAME [--json]", "list a job's tasks that failed for good, with their errors", failedCmd},
		{"tasks", "--job NAME [--state S] [--json]", "list a job's tasks in key order, by state, worker, key or error text", tasksCmd},
		{"task", "--job NAME KEY [--json]", "show one task: its state, tracking columns and the row's other columns", taskCmd},
		{"retry", "--job NAME (--all | KEY...)", "re-drive tasks that failed for good: pending again, with fresh tries", retryCmd},
		{"discard", "--job NAME KEY...", "fail for good failed tasks that still have tries left: not tried again", discardCmd},
		{"cancel", "--job NAME KEY...", "cancel tasks pending, reserved or running: failed for good, never run again", cancelCmd},
		{"reschedule", "--job NAME --at TIME KEY...", "move pending tasks of a job with field_run_at to run at TIME (RFC 3339 or +10m)", rescheduleCmd},
		{"pause", "JOB...", "pause jobs: no new reservations until resumed; running tasks finish", pauseCmd},
		{"resume", "JOB...", "resume paused jobs", resumeCmd},
		{"dashboard", "[--listen ADDR]", "serve the web dashboard, its JSON API and metrics (actions need the admin role)", dashboardCmd},
		{"drain", "WORKER...", "drain workers: no new reservations until undrained; running tasks finish", drainCmd},
		{"undrain", "WORKER...", "undrain drained workers", undrainCmd},
		{"nodes", "status|deploy|start|stop|restart|logs [NODE...]", "operate the nodes over SSH: deploy, start and stop workers, status and usage", nodesCmd},
		{"bench", "[--db D] [--tasks N] [--processes] [--json]", "measure throughput, latency, round and report times, memory", benchCmd},
		{"version", "", "print the version", versionCmd},
	}
}

// env is what a command runs with.
type env struct {
	prog *Program
	// stdout and stderr escape control characters (see visible.Escape):
	// all text for people goes through them.
	stdout, stderr io.Writer
	// rawStdout is stdout as given, for JSON and machine-read output.
	rawStdout io.Writer
}

// printJSON prints v as indented JSON, exactly, on stdout.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.rawStdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Run runs one command line (without the program name) and returns the
// exit status: 0 on success, 1 on failure, 2 on bad usage.
func Run(ctx context.Context, p *Program, args []string, stdout, stderr io.Writer) int {
	if p == nil {
		p = &Program{}
	}
	e := &env{prog: p, stdout: newEscapingWriter(stdout), stderr: newEscapingWriter(stderr), rawStdout: stdout}
	switch {
	case len(args) == 0:
		e.usage(e.stderr)
		return 2
	case isHelp(args[0]):
		if len(args) > 1 {
			// help CMD [SUB]: the command's own help.
			return e.run(ctx, append(slices.Clone(args[1:]), "--help"))
		}
		e.usage(e.stdout)
		return 0
	case args[0] == "--version" || args[0] == "-version" || args[0] == "-v":
		return e.run(ctx, append([]string{"version"}, args[1:]...))
	}
	return e.run(ctx, args)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "--help" || arg == "-help"
}

func (e *env) run(ctx context.Context, args []string) int {
	all := append(commands(), command{"bench-worker", "", "", benchWorkerCmd})
	for _, c := range all {
		if c.name != args[0] {
			continue
		}
		if len(args) > 1 && args[1] == "help" {
			// CMD help: as CMD --help. (A positional argument that is
			// literally "help" can follow "--".)
			args = append([]string{args[0], "--help"}, args[2:]...)
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(e.stderr, "%s %s: %v\nRun '%s %s --help' for usage.\n", e.name(), c.name, err, e.name(), c.name)
			return 2
		default:
			fmt.Fprintf(e.stderr, "%s %s: %s\n", e.name(), c.name, errorText(err))
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "%s: unknown command %q\n\n", e.name(), args[0])
	e.usage(e.stderr)
	return 2
}

func (e *env) name() string {
	if e.prog.Name != "" {
		return e.prog.Name
	}
	return "pampa"
}

func (e *env) usage(w io.Writer) {
	fmt.Fprintf(w, "Pampa runs jobs over the rows of your SQL tables, on workers spread over many machines.\n\n")
	fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\nCommands:\n", e.name())
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nHelp on a command: %[1]s help COMMAND, %[1]s COMMAND help or %[1]s COMMAND --help.\n", e.name())
	fmt.Fprintf(w, "Version: %[1]s version, %[1]s --version or %[1]s -v.\n", e.name())
	fmt.Fprintf(w, "Flags may come before or after other arguments; \"--\" ends the flags.\n")
	fmt.Fprintf(w, "\nThe cluster comes from --config FILE (default ./pampa.yaml); a relative SQLite path in\n")
	fmt.Fprintf(w, "its database.url is taken from the file's directory, not the current one.\n")
	fmt.Fprintf(w, "\nThe original's key=value arguments work too:\n")
	fmt.Fprintf(w, "  %s worker id=local.1 delay=30 db=postgres log=no config=~/pampa.yaml\n", e.name())
}

func (e *env) version() string {
	if e.prog.Version != "" {
		return e.prog.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// commit is Program.Commit, or the revision the toolchain recorded
// (with "-dirty" when the checkout had changes), or "".
func (e *env) commit() string {
	if e.prog.Commit != "" {
		return e.prog.Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

func versionCmd(_ context.Context, e *env, args []string) error {
	fs := e.flags("version", "", "Print the version of this program, the Go version it was built with, its platform\n"+
		"and, when known, the source commit.")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s (%s, %s/%s", e.name(), e.version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if c := e.commit(); c != "" {
		fmt.Fprintf(e.stdout, ", commit %s", c)
	}
	fmt.Fprintln(e.stdout, ")")
	return nil
}

// usageError marks errors in how a command was called (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// flags makes a command's flag set with a usage text.
func (e *env) flags(name, args, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s %s [flags] %s\n\n%s\n\nFlags:\n", e.name(), name, args, about)
		fs.PrintDefaults()
	}
	return fs
}

// parse normalises key=value arguments and parses flags. --help prints to
// stdout.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[f.Name] = true })
	norm, err := NormalizeArgs(args, known)
	if err != nil {
		return usageError{err}
	}
	for _, a := range norm {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	fs.SetOutput(io.Discard) // errors are reported once, by Run
	if err := fs.Parse(flagsFirst(fs, norm)); err != nil {
		return usageError{err}
	}
	return nil
}

// flagsFirst moves the flags (with their values) before the positional
// arguments, ending them with "--", so that "setup JOB --notify" means
// "setup --notify JOB": the standard flag package stops at the first
// positional argument. Reordering here, rather than switching to a CLI
// library that parses flags anywhere, keeps NormalizeArgs the one place
// that knows the original's key=value forms, and keeps every command's
// flags in the standard flag.FlagSet its help is printed from. A literal
// "--" ends the flags: whatever follows is positional.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(flags, "--"), pos...)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// clusterFlags are the flags every command that touches the database has.
type clusterFlags struct {
	config string
	db     string
	dbURL  string
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "config file (YAML); default pampa.yaml in the working directory when the program defines no cluster in Go.\n"+
		"A relative SQLite path in its database.url is taken from the file's directory")
	fs.StringVar(&c.db, "db", "", "database driver: sqlite, postgres or crdb (overrides the config)")
	fs.StringVar(&c.dbURL, "database-url", "", "database URL or SQLite file (overrides the config; default $PAMPA_DATABASE_URL)")
}

// load builds the cluster: from --config, else from the program, else from
// ./pampa.yaml; then applies overrides, handlers and Configure.
func (e *env) load(cf clusterFlags) (*pampa.Cluster, error) {
	var c *pampa.Cluster
	var err error
	switch {
	case cf.config != "":
		c, err = pampa.LoadConfig(cf.config)
	case e.prog.Cluster != nil:
		c = e.prog.Cluster
	default:
		if _, statErr := os.Stat("pampa.yaml"); statErr != nil {
			return nil, usagef("no cluster defined: pass --config FILE (or create pampa.yaml here)")
		}
		c, err = pampa.LoadConfig("pampa.yaml")
	}
	if err != nil {
		return nil, err
	}
	if cf.db != "" {
		if cf.db != c.Database.Driver && cf.dbURL == "" && os.Getenv("PAMPA_DATABASE_URL") == "" && c.Database.Driver != "" {
			// A driver switch without a URL keeps the config's URL only
			// between the two PostgreSQL-protocol drivers.
			if !(isPG(cf.db) && isPG(c.Database.Driver)) {
				return nil, usagef("--db %s: give the database's URL too (--database-url or $PAMPA_DATABASE_URL)", cf.db)
			}
		}
		c.Database.Driver = cf.db
	}
	switch {
	case cf.dbURL != "":
		c.Database.URL = cf.dbURL
	case os.Getenv("PAMPA_DATABASE_URL") != "":
		c.Database.URL = os.Getenv("PAMPA_DATABASE_URL")
	}
	names := make([]string, 0, len(e.prog.Handlers))
	for name := range e.prog.Handlers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch err := c.Handle(name, e.prog.Handlers[name]); {
		case errors.Is(err, pampa.ErrNotFound):
			return nil, fmt.Errorf("the program has a processing function for job %q, which the config does not define (jobs: %s)", name, jobNames(c))
		case err != nil:
			return nil, fmt.Errorf("the program has a processing function for job %q, but %w", name, err)
		}
	}
	if e.prog.Configure != nil {
		if err := e.prog.Configure(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func isPG(driver string) bool {
	return driver == pampa.DriverPostgres || driver == pampa.DriverCockroach
}

func jobNames(c *pampa.Cluster) string {
	var names []string
	for _, j := range c.Jobs() {
		names = append(names, j.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
