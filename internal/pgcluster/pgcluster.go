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
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvBinDir names the environment variable that, when set, is the only place
// FindBinaries looks.
const EnvBinDir = "PAMPA_PG_BIN"

// ErrNoBinaries is returned (wrapped, with install instructions) when the
// PostgreSQL server binaries cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

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

var requiredBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinaries returns the directory holding initdb, pg_ctl and postgres. It
// looks in $PAMPA_PG_BIN (and only there when it is set), then in the newest
// /usr/lib/postgresql/<version>/bin (Debian and Ubuntu), then next to initdb
// found in PATH. The error, if none is found, wraps ErrNoBinaries and says
// what to install.
func FindBinaries() (dir string, err error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if missing := missingBinaries(dir); len(missing) > 0 {
			return "", fmt.Errorf("%w: $%s is %q, which lacks %s", ErrNoBinaries, EnvBinDir, dir, strings.Join(missing, ", "))
		}
		return dir, nil
	}
	if dir := newestBinDir("/usr/lib/postgresql"); dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if len(missingBinaries(dir)) == 0 {
			return dir, nil
		}
		// Homebrew and friends put symlinks in PATH; the binaries sit
		// together where the links point.
		if real, err := filepath.EvalSymlinks(p); err == nil && len(missingBinaries(filepath.Dir(real))) == 0 {
			return filepath.Dir(real), nil
		}
	}
	return "", fmt.Errorf("%w: looked in $%s, /usr/lib/postgresql/*/bin and PATH.\n"+
		"Install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "+
		"Fedora: dnf install postgresql-server; macOS: brew install postgresql), "+
		"or set %s to the directory that holds initdb", ErrNoBinaries, EnvBinDir, EnvBinDir)
}

// newestBinDir returns base/<version>/bin for the highest version that holds
// all required binaries, or "" if none does.
func newestBinDir(base string) string {
	entries, err := os.ReadDir(base)
	if err != nil {
		return ""
	}
	var best string
	var bestVersion []int
	for _, e := range entries {
		v, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(base, e.Name(), "bin")
		if len(missingBinaries(dir)) > 0 {
			continue
		}
		if best == "" || compareVersions(v, bestVersion) > 0 {
			best, bestVersion = dir, v
		}
	}
	return best
}

// parseVersion reads "15" or "9.6" as numbers.
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func missingBinaries(dir string) []string {
	var missing []string
	for _, name := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return missing
}

// TempDir is the directory under which Start makes a cluster's directory
// when Options.Dir is empty: os.TempDir(), or /tmp when running as root and
// the "postgres" user could not reach os.TempDir().
func TempDir() string {
	dir := os.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	cred, err := lookupOSUser()
	if err != nil || reachable(dir, cred) == nil {
		return dir
	}
	return "/tmp"
}

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

func lookupOSUser() (*syscall.Credential, error) {
	u, err := user.Lookup(osUserName)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: PostgreSQL refuses to run as root, and there is no OS user %q to run it as (%w); "+
			"run as another user, or create one (Debian: apt-get install postgresql creates it)", osUserName, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgcluster: OS user %q has a non-numeric uid or gid", osUserName)
	}
	// Groups is empty, not nil: drop root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// reachable checks that the user in cred may search every parent of dir.
func reachable(dir string, cred *syscall.Credential) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0
		if st, isUnix := fi.Sys().(*syscall.Stat_t); isUnix {
			ok = ok || (st.Uid == cred.Uid && mode&0o100 != 0) || (st.Gid == cred.Gid && mode&0o010 != 0)
		}
		if !ok {
			return fmt.Errorf("pgcluster: OS user %s cannot reach %s: %s has mode %s; "+
				"PostgreSQL refuses to run as root, so its directory must be reachable by %s: "+
				"choose one under a world-searchable directory such as /tmp", osUserName, dir, p, mode, osUserName)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitAccepting dials the port until it answers. pg_ctl -w has already
// waited for the server to be ready, so this normally succeeds at once.
func waitAccepting(ctx context.Context, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgcluster: server not accepting connections on %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, _, ok := procStat(pid)
	return !ok || state != 'Z'
}

// procStat reads the state and parent pid of a process from /proc.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}

// childrenOf lists the processes whose parent is pid (none without /proc).
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			kids = append(kids, p)
		}
	}
	sort.Ints(kids)
	return kids
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	if strings.TrimSpace(s) == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
