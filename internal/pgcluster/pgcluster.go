// Package pgcluster starts and stops throwaway PostgreSQL clusters from the
// server binaries installed on the machine, for tests and local tools.
//
// A cluster lives in one directory, Cluster.Dir:
//
//	Dir/
//	  data/              the data directory made by initdb
//	  data/pampa.conf    settings written by Start, included by postgresql.conf
//	  postgres.log       the server's own log (pg_ctl -l)
//	  .s.PGSQL.<port>    the Unix socket
//
// The server listens on 127.0.0.1 only, with trust authentication for the
// "postgres" role: fit for tests, never for data that matters.
//
// PostgreSQL refuses to run as root. When the calling process is root, every
// PostgreSQL command runs as the OS user "postgres" and Dir is handed to that
// user, so all of Dir's parents must be searchable by it. The default, a new
// directory under TempDir(), is; testing.T.TempDir() is not (its parent has
// mode 0700).
//
// The package needs a Unix system; the process lookups behind Kill read /proc
// where it exists (Linux) and fall back to the postmaster alone elsewhere.
package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoCluster is returned by Open for a directory that holds no cluster.
var ErrNoCluster = errors.New("no cluster in directory")

const (
	dataSubdir = "data"
	confName   = "pampa.conf"
	logName    = "postgres.log"
	osUserName = "postgres" // the OS user PostgreSQL runs as when we are root
	superuser  = "postgres" // the database role initdb creates

	// sun_path holds 108 bytes on Linux, NUL included.
	maxSocketPath = 107

	// Tries at a randomly picked port before giving up: another process may
	// take it between picking and binding.
	portTries = 4

	// How long to wait for stopped processes to disappear.
	killWait = 10 * time.Second
)

// Options configures Start.
type Options struct {
	// Dir holds the cluster (see the package doc). Default "": a new
	// directory under TempDir(). A directory that already holds a cluster
	// initialized by Start is started again as it is, with its settings
	// rewritten from these options.
	Dir string

	// Port is the TCP port on 127.0.0.1. Default 0: the port recorded in
	// Dir by an earlier Start, else a free port picked at random (and picked
	// again if another process takes it first).
	Port int

	// Log receives the output of initdb and pg_ctl as they run. Default nil:
	// discarded, but the tail of it is in every error. The server's own log
	// is the file LogPath().
	Log io.Writer

	// FastUnsafe turns fsync, synchronous_commit and full_page_writes off.
	// Default false. Much faster; killing PostgreSQL (Kill) stays safe, but
	// a crash of the operating system can corrupt the cluster. Fit for
	// throwaway test clusters.
	FastUnsafe bool

	// BinDir holds initdb, pg_ctl and postgres. Default "": FindBinaries().
	BinDir string
}

// Cluster is a PostgreSQL cluster in a directory of its own. Its methods are
// safe for concurrent use; lifecycle calls run one at a time.
type Cluster struct {
	// Dir is the cluster's directory (absolute).
	Dir string
	// Port is the TCP port the server listens on, on 127.0.0.1.
	Port int

	binDir string
	log    io.Writer
	cred   *syscall.Credential // the OS user to run as; nil: as ourselves

	mu sync.Mutex // serializes Start, Stop, Kill and friends
}

// Start initializes a cluster in opts.Dir (unless it already holds one),
// starts it and waits until it accepts connections. On error nothing is left
// running, and a directory Start made itself is removed.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := newCluster(opts.BinDir, opts.Log)
	if err != nil {
		return nil, err
	}
	created := false
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp(TempDir(), "pampa-pg-"); err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
		created = true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if c.Dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	fail := func(err error) (*Cluster, error) {
		if created {
			_ = os.RemoveAll(c.Dir)
		}
		return nil, err
	}

	if c.cred != nil {
		if err := reachable(c.Dir, c.cred); err != nil {
			return fail(err)
		}
		if err := os.Chown(c.Dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fail(fmt.Errorf("pgcluster: hand %s to OS user %s: %w", c.Dir, osUserName, err))
		}
	}

	initialized := fileExists(filepath.Join(c.dataDir(), "PG_VERSION"))
	if !initialized {
		if err := c.initdb(ctx); err != nil {
			return fail(err)
		}
	} else if c.running() {
		return fail(fmt.Errorf("pgcluster: a server is already running in %s", c.dataDir()))
	}

	c.Port = opts.Port
	if c.Port == 0 && initialized {
		c.Port = c.recordedPort()
	}
	randomPort := c.Port == 0
	for try := 1; ; try++ {
		if randomPort {
			if c.Port, err = freePort(); err != nil {
				return fail(err)
			}
		}
		if err := c.writeSettings(opts.FastUnsafe); err != nil {
			return fail(err)
		}
		err = c.start(ctx)
		if err == nil {
			return c, nil
		}
		if !randomPort || try == portTries || !errors.Is(err, errPortTaken) {
			return fail(err)
		}
	}
}

// Open returns the cluster that an earlier Start initialized in dir, without
// starting or stopping it, so that another process can Stop, Kill, start
// again or Destroy it.
func Open(dir string) (*Cluster, error) {
	c, err := newCluster("", nil)
	if err != nil {
		return nil, err
	}
	if c.Dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if !fileExists(filepath.Join(c.dataDir(), "PG_VERSION")) {
		return nil, fmt.Errorf("pgcluster: %w: %s", ErrNoCluster, c.Dir)
	}
	if c.Port = c.recordedPort(); c.Port == 0 {
		return nil, fmt.Errorf("pgcluster: %s has no port recorded in %s", c.Dir, confName)
	}
	return c, nil
}

func newCluster(binDir string, log io.Writer) (*Cluster, error) {
	c := &Cluster{binDir: binDir, log: log}
	if c.binDir == "" {
		var err error
		if c.binDir, err = FindBinaries(); err != nil {
			return nil, err
		}
	} else if missing := missingBinaries(c.binDir); len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s lacks %s", ErrNoBinaries, c.binDir, strings.Join(missing, ", "))
	}
	if os.Geteuid() == 0 {
		var err error
		if c.cred, err = lookupOSUser(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// DSN returns a postgres:// URL for database dbname ("" means "postgres") as
// the superuser "postgres", over TCP, without TLS.
func (c *Cluster) DSN(dbname string) string {
	if dbname == "" {
		dbname = "postgres"
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, c.Port, url.PathEscape(dbname))
}

// LogPath is the server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.Dir, logName) }

func (c *Cluster) dataDir() string { return filepath.Join(c.Dir, dataSubdir) }

// Stop shuts the server down (pg_ctl stop -m fast: open sessions are ended)
// and waits for it, bounded by ctx. Stopping a cluster that is not running
// is not an error.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stop(ctx, "fast")
}

// StartAgain starts the cluster again in its directory, on the same port,
// after Stop or Kill (PostgreSQL then recovers from its WAL). It does nothing
// if the server is running.
func (c *Cluster) StartAgain(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running() {
		return nil
	}
	return c.start(ctx)
}

// Restart stops the server and starts it again, same directory and port, as
// a database restart would: clients see their connections end.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(ctx, "fast"); err != nil {
		return err
	}
	return c.start(ctx)
}

// Kill sends SIGKILL to the postmaster and to its children, as a crash
// would, and waits up to 10 s for them to be gone. StartAgain then brings the
// cluster back through crash recovery. Killing a cluster that is not running
// is not an error.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kill()
}

// Destroy stops the server (killing it if it will not stop within a minute)
// and removes Dir.
func (c *Cluster) Destroy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if stopErr := c.stop(ctx, "fast"); stopErr != nil {
		if err := c.kill(); err != nil {
			return errors.Join(stopErr, err)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	_, err := c.run(ctx, "initdb",
		"-D", c.dataDir(),
		"-A", "trust",
		"-U", superuser,
		"-E", "UTF8",
		"--locale=C",
		"--no-sync",
	)
	if err != nil {
		return err
	}
	// Our settings live in a file of their own, rewritten by every Start;
	// postgresql.conf only includes it, last, so that it wins.
	conf := filepath.Join(c.dataDir(), "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings of the pgcluster package.\ninclude_if_exists = '%s'\n", confName)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// settings renders pampa.conf.
func settings(dir string, port int, fastUnsafe bool) string {
	socketDir := dir
	if len(dir)+len("/.s.PGSQL.65535") > maxSocketPath {
		socketDir = "" // too long for a socket path: TCP only
	}
	onOff := "on"
	if fastUnsafe {
		onOff = "off"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by pgcluster on every start; edits are lost.\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "port = %d\n", port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteConf(socketDir))
	fmt.Fprintf(&b, "max_connections = 300\n")
	fmt.Fprintf(&b, "fsync = %s\n", onOff)
	fmt.Fprintf(&b, "synchronous_commit = %s\n", onOff)
	fmt.Fprintf(&b, "full_page_writes = %s\n", onOff)
	return b.String()
}

func quoteConf(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (c *Cluster) writeSettings(fastUnsafe bool) error {
	path := filepath.Join(c.dataDir(), confName)
	if err := os.WriteFile(path, []byte(settings(c.Dir, c.Port, fastUnsafe)), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
	}
	return nil
}

// recordedPort reads the port from pampa.conf; 0 if there is none.
func (c *Cluster) recordedPort() int {
	data, err := os.ReadFile(filepath.Join(c.dataDir(), confName))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(key) == "port" {
			if n, err := strconv.Atoi(strings.TrimSpace(value)); err == nil {
				return n
			}
		}
	}
	return 0
}

var errPortTaken = errors.New("port already in use")

// start runs pg_ctl start -w, then checks that the port takes connections.
// On failure it makes sure no half-started server is left behind.
func (c *Cluster) start(ctx context.Context) error {
	if err := c.removeStaleLocks(); err != nil {
		return err
	}
	logStart := fileSize(c.LogPath())
	wait := "60"
	if dl, ok := ctx.Deadline(); ok {
		wait = strconv.Itoa(max(1, int(time.Until(dl).Seconds())))
	}
	_, err := c.run(ctx, "pg_ctl", "start",
		"-D", c.dataDir(),
		"-l", c.LogPath(),
		"-w", "-t", wait,
	)
	if err == nil {
		err = waitAccepting(ctx, c.Port)
	}
	if err == nil {
		return nil
	}
	logTail := c.logSince(logStart)
	cleanupCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.stop(cleanupCtx, "immediate") != nil {
		_ = c.kill()
	}
	if strings.Contains(logTail, "could not bind") || strings.Contains(logTail, "Address already in use") {
		err = fmt.Errorf("%w (%d): %w", errPortTaken, c.Port, err)
	}
	return fmt.Errorf("%w\nserver log %s:\n%s", err, c.LogPath(), indent(tail(logTail, 20)))
}

// stop runs pg_ctl stop with the given mode if a server is running.
func (c *Cluster) stop(ctx context.Context, mode string) error {
	if !c.running() {
		return nil
	}
	wait := "60"
	if dl, ok := ctx.Deadline(); ok {
		wait = strconv.Itoa(max(1, int(time.Until(dl).Seconds())))
	}
	logStart := fileSize(c.LogPath())
	if _, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir(), "-m", mode, "-w", "-t", wait); err != nil {
		if !c.running() { // it went away on its own meanwhile
			return nil
		}
		return fmt.Errorf("%w\nserver log %s:\n%s", err, c.LogPath(), indent(tail(c.logSince(logStart), 20)))
	}
	return nil
}

func (c *Cluster) kill() error {
	pid := c.postmasterPID()
	if pid == 0 {
		return nil
	}
	// The children first, listed while the postmaster still is their
	// parent; then all of them at once.
	pids := append([]int{pid}, childrenOf(pid)...)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(killWait)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcluster: processes %v still alive %s after SIGKILL", left, killWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeStaleLocks removes the lock files a killed postmaster left behind.
// PostgreSQL removes them itself when their pid is gone, but it takes a
// zombie for a live server, and a killed postmaster stays a zombie until
// whoever adopted it (often PID 1, which some container inits are slow to
// do) reaps it. Called only when no postmaster of ours is running.
func (c *Cluster) removeStaleLocks() error {
	pid := c.pidFromFile()
	if pid == 0 || c.postmasterPID() != 0 {
		return nil
	}
	locks := []string{
		filepath.Join(c.dataDir(), "postmaster.pid"),
		filepath.Join(c.Dir, fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)),
	}
	for _, path := range locks {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if strings.TrimSpace(first) != strconv.Itoa(pid) {
			continue // not the dead postmaster's
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pgcluster: remove stale lock file: %w", err)
		}
	}
	return nil
}

// running reports whether the postmaster named in postmaster.pid is alive.
func (c *Cluster) running() bool {
	return c.postmasterPID() != 0
}

// postmasterPID returns the pid of this cluster's live postmaster, or 0. The
// pid comes from postmaster.pid, which a killed server leaves behind; its
// pid may since have gone to another process, so where /proc tells, the
// process must also be working in our data directory.
func (c *Cluster) postmasterPID() int {
	pid := c.pidFromFile()
	if pid == 0 || !alive(pid) {
		return 0
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return pid // no /proc, or not ours to look at: trust the file
	}
	want, err := filepath.EvalSymlinks(c.dataDir())
	if err != nil || cwd != want {
		return 0
	}
	return pid
}

// pidFromFile reads the first line of postmaster.pid; 0 if there is none.
func (c *Cluster) pidFromFile() int {
	data, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// run runs one of the PostgreSQL binaries, as the postgres OS user when we
// are root. The error carries the tail of the command's output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = commandEnv()
	var out bytes.Buffer
	var w io.Writer = &out
	if c.log != nil {
		w = io.MultiWriter(&out, c.log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// pg_ctl start leaves the postmaster running; should it ever hold our
	// pipe, do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return out.String(), fmt.Errorf("pgcluster: %s %s: %w\noutput:\n%s",
			name, strings.Join(args, " "), err, indent(tail(out.String(), 20)))
	}
	return out.String(), nil
}

// commandEnv is our environment without the PG* variables, which would
// otherwise steer initdb and pg_ctl elsewhere, and with English messages.
func commandEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func (c *Cluster) logSince(offset int64) string {
	f, err := os.Open(c.LogPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(data)
}
