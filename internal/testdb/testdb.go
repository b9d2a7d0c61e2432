// Package testdb gives every package's tests an isolated database of their
// own, so that tests can run in parallel against real servers.
//
// PostgreSQL: PostgresURL hands each test a new, empty schema, dropped when
// the test ends. The server is the one $PAMPA_TEST_DATABASE_URL points at, if
// set (scripts/test.sh starts one for a whole run); otherwise the test binary
// starts a throwaway cluster of its own the first time it needs one, and
// stops it when the tests are done. That needs, in the package's tests:
//
//	func TestMain(m *testing.M) { testdb.Main(m) }
//
// or, to add checks of one's own after the tests (goleak, say):
//
//	func TestMain(m *testing.M) {
//		code := testdb.Run(m)
//		// ... more checks, setting code
//		os.Exit(code)
//	}
//
// SQLite: SQLitePath hands each test a fresh file path.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pampa-go/pampa/internal/pgcluster"
)

// EnvDatabaseURL names the environment variable holding the PostgreSQL
// server to test against, as a URL or keyword/value connection string for a
// role that may create schemas.
const EnvDatabaseURL = "PAMPA_TEST_DATABASE_URL"

// ownerFile, in a cluster's directory, holds the pid of the test binary that
// started it, so that a later binary can tell an orphan (its owner crashed or
// timed out before stopping it) from a cluster in use.
const ownerFile = "pampa-testdb-owner.pid"

const (
	startTimeout = 2 * time.Minute
	dbTimeout    = 30 * time.Second
)

var (
	mainCalled atomic.Bool // Run was called: someone will stop the cluster

	clusterOnce sync.Once
	clusterURL  string
	clusterErr  error

	clusterMu sync.Mutex // guards cluster
	cluster   *pgcluster.Cluster
)

// Main runs the tests, stops the throwaway cluster if this binary started
// one, and exits with the tests' code. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit: it runs the tests, stops the throwaway
// cluster if one was started, and returns the code to exit with (non-zero
// also when the cluster would not stop).
func Run(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if err := stopCluster(); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: stop the throwaway PostgreSQL cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// PostgresURL returns a connection URL to a new, empty schema made for this
// test alone; it is the URL's search_path, so unqualified names land in it.
// The schema is dropped, with all it holds, when the test ends: close
// connections and end transactions by then (t.Cleanup functions registered
// after this call run before the drop). Safe to call from parallel tests.
//
// If no server can be had, the test fails (it is never skipped) with a
// message saying what to install or set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	server := serverURL(t)
	schema := "t_" + randomHex(t, 8)

	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := execSQL(ctx, server, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testdb: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		// A test that leaves a transaction open in its schema would make
		// the drop wait forever; say so instead.
		err := execSQL(ctx, server, "SET lock_timeout = '10s'", "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		if err != nil {
			t.Errorf("testdb: drop schema %s (is a transaction still open in it?): %v", schema, err)
		}
	})
	u, err := withParam(server, "search_path", schema)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return u
}

// SQLitePath returns the path of a database file that does not exist yet, in
// a directory removed when the test ends.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "pampa.db")
}

// serverURL returns the URL of the server to make schemas in.
func serverURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u
	}
	if !mainCalled.Load() {
		t.Fatalf("testdb: %s is not set, and without testdb.Main a throwaway PostgreSQL cluster "+
			"would outlive the tests: add\n\tfunc TestMain(m *testing.M) { testdb.Main(m) }\n"+
			"to the package's tests, or run them through scripts/test.sh (make test)", EnvDatabaseURL)
	}
	clusterOnce.Do(startCluster)
	if clusterErr != nil {
		t.Fatalf("testdb: no PostgreSQL to test against: %s is not set, and a throwaway cluster "+
			"would not start:\n%v", EnvDatabaseURL, clusterErr)
	}
	return clusterURL
}

func startCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	reapOrphans()
	c, err := pgcluster.Start(ctx, pgcluster.Options{FastUnsafe: true})
	if err != nil {
		clusterErr = err
		return
	}
	// Best effort: without the file an orphan of ours is merely not reaped.
	_ = os.WriteFile(filepath.Join(c.Dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	clusterMu.Lock()
	cluster = c
	clusterMu.Unlock()
	clusterURL = c.DSN("postgres")
}

func stopCluster() error {
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if cluster == nil {
		return nil
	}
	err := cluster.Destroy()
	cluster = nil
	return err
}

// reapOrphans kills and removes the clusters left by test binaries that died
// before stopping them (a panic or a -timeout ends the binary without
// running the rest of Run). Best effort: errors are ignored.
func reapOrphans() {
	paths, _ := filepath.Glob(filepath.Join(pgcluster.TempDir(), "pampa-pg-*", ownerFile))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || processExists(pid) {
			continue
		}
		dir := filepath.Dir(p)
		c, err := pgcluster.Open(dir)
		switch {
		case errors.Is(err, pgcluster.ErrNoCluster):
		case err != nil:
			continue
		case c.Kill() != nil:
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// execSQL runs statements on a connection of its own. A pool would be
// cheaper, but its background goroutines would upset leak checks in the
// packages that use testdb.
func execSQL(ctx context.Context, server string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(server), err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// withParam sets a connection parameter in a postgres:// URL or in a
// keyword/value connection string (where a later key wins).
func withParam(conn, key, value string) (string, error) {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDatabaseURL, err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return strings.TrimSpace(conn) + " " + key + "=" + value, nil
}

// redact hides the password of a URL for messages.
func redact(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "the server in $" + EnvDatabaseURL
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return hex.EncodeToString(b)
}
