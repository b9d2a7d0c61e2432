package pgcluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster walks one real cluster through its whole life: start, restart,
// crash and recovery, stop, start from another handle, destroy.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy() })

	if c.Port == 0 || !filepath.IsAbs(c.Dir) {
		t.Fatalf("Port = %d, Dir = %q", c.Port, c.Dir)
	}
	wantDSN := "postgres://postgres@127.0.0.1:" + strconv.Itoa(c.Port) + "/postgres?sslmode=disable"
	if got := c.DSN(""); got != wantDSN {
		t.Fatalf("DSN(\"\") = %q, want %q", got, wantDSN)
	}

	t.Run("SettingsApplied", func(t *testing.T) {
		conn := connect(ctx, t, c)
		for name, want := range map[string]string{
			"listen_addresses":        "127.0.0.1",
			"max_connections":         "300",
			"fsync":                   "on",
			"unix_socket_directories": c.Dir,
			"server_encoding":         "UTF8",
		} {
			var got string
			if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	})

	t.Run("Restart", func(t *testing.T) {
		conn := connect(ctx, t, c)
		selectOne(ctx, t, conn)
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := conn.Ping(ctx); err == nil {
			t.Fatal("a connection made before Restart still works")
		}
		selectOne(ctx, t, connect(ctx, t, c))
	})

	t.Run("KillAndStartAgain", func(t *testing.T) {
		conn := connect(ctx, t, c)
		if _, err := conn.Exec(ctx, "CREATE TABLE survivor (n int); INSERT INTO survivor VALUES (42)"); err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		if c.running() {
			t.Fatal("still running after Kill")
		}
		if err := c.Kill(); err != nil {
			t.Fatalf("second Kill: %v", err)
		}
		if err := c.StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := connect(ctx, t, c).QueryRow(ctx, "SELECT n FROM survivor").Scan(&n); err != nil || n != 42 {
			t.Fatalf("after crash recovery: n = %d, err = %v", n, err)
		}
		if err := c.StartAgain(ctx); err != nil {
			t.Fatalf("StartAgain while running: %v", err)
		}
	})

	t.Run("StopThenOpenAndStartAgain", func(t *testing.T) {
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(ctx); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		again, err := Open(c.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if again.Port != c.Port {
			t.Fatalf("Open: Port = %d, want %d", again.Port, c.Port)
		}
		if err := again.StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		selectOne(ctx, t, connect(ctx, t, c))
	})

	t.Run("PortTaken", func(t *testing.T) {
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)))
		if err != nil {
			t.Fatal(err)
		}
		err = c.StartAgain(ctx)
		l.Close()
		if err == nil {
			t.Fatal("StartAgain on a taken port succeeded")
		}
		// The error carries the server's own words, not just "exit status 1".
		if !errors.Is(err, errPortTaken) || !strings.Contains(err.Error(), "could not bind") {
			t.Fatalf("error lacks the server log tail:\n%v", err)
		}
		if err := c.StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		selectOne(ctx, t, connect(ctx, t, c))
	})

	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Dir after Destroy: %v", err)
	}
	if conn, err := pgx.Connect(ctx, c.DSN("")); err == nil {
		conn.Close(ctx)
		t.Fatal("server still accepts connections after Destroy")
	}
}

// TestStartFails runs Start with an initdb that fails: the error carries
// the command's own words, and the directory Start made is gone.
func TestStartFails(t *testing.T) {
	// As root the binaries run as the postgres user, who cannot reach
	// t.TempDir(); use a directory it can.
	base, err := os.MkdirTemp(TempDir(), "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := fakeBinDir(t, base, requiredBinaries...)
	script := "#!/bin/sh\necho 'initdb: could not do the thing: out of luck' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "initdb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{BinDir: bin})
	if err == nil {
		_ = c.Destroy()
		t.Fatal("Start succeeded with a failing initdb")
	}
	if !strings.Contains(err.Error(), "out of luck") {
		t.Fatalf("error lacks initdb's output:\n%v", err)
	}
	m := regexp.MustCompile(`(\S+/pampa-pg-\d+)/data`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error does not name the data directory:\n%v", err)
	}
	if _, statErr := os.Stat(m[1]); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("Start left %s behind (%v)", m[1], statErr)
	}
}

func TestStartUnreachableDirAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the directory to another user")
	}
	// t.TempDir()'s parent has mode 0700: the postgres user cannot enter it.
	dir := filepath.Join(t.TempDir(), "cluster")
	_, err := Start(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("err = %v, want one saying the postgres user cannot reach %s", err, dir)
	}
}

func TestFindBinaries(t *testing.T) {
	t.Run("EnvOverride", func(t *testing.T) {
		dir := fakeBinDir(t, t.TempDir(), requiredBinaries...)
		t.Setenv(EnvBinDir, dir)
		got, err := FindBinaries()
		if err != nil || got != dir {
			t.Fatalf("FindBinaries() = %q, %v; want %q", got, err, dir)
		}
	})

	t.Run("EnvOverrideIncomplete", func(t *testing.T) {
		dir := fakeBinDir(t, t.TempDir(), "initdb")
		t.Setenv(EnvBinDir, dir)
		_, err := FindBinaries()
		if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "pg_ctl, postgres") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("NotFoundSaysWhatToInstall", func(t *testing.T) {
		// Only meaningful where the machine has no server binaries.
		t.Setenv(EnvBinDir, "")
		if _, err := FindBinaries(); err != nil {
			if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "apt-get install postgresql") {
				t.Fatalf("err = %v", err)
			}
		}
	})
}

func TestNewestBinDir(t *testing.T) {
	for _, tt := range []struct {
		name     string
		versions map[string][]string // version dir -> binaries in its bin/
		want     string
	}{
		{"None", nil, ""},
		{"One", map[string][]string{"15": requiredBinaries}, "15"},
		{"NewestWins", map[string][]string{"9.6": requiredBinaries, "15": requiredBinaries, "10": requiredBinaries}, "15"},
		{"IncompleteSkipped", map[string][]string{"14": requiredBinaries, "16": {"pg_ctl"}}, "14"},
		{"NonVersionIgnored", map[string][]string{"13": requiredBinaries, "common": requiredBinaries}, "13"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			for v, bins := range tt.versions {
				fakeBinDir(t, filepath.Join(base, v), bins...)
			}
			want := ""
			if tt.want != "" {
				want = filepath.Join(base, tt.want, "bin")
			}
			if got := newestBinDir(base); got != want {
				t.Fatalf("newestBinDir = %q, want %q", got, want)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	safe := settings("/tmp/x", 5433, false)
	for _, want := range []string{"port = 5433\n", "listen_addresses = '127.0.0.1'\n", "unix_socket_directories = '/tmp/x'\n", "fsync = on\n", "max_connections = 300\n"} {
		if !strings.Contains(safe, want) {
			t.Errorf("settings lack %q:\n%s", want, safe)
		}
	}
	fast := settings("/tmp/x", 5433, true)
	for _, want := range []string{"fsync = off\n", "synchronous_commit = off\n", "full_page_writes = off\n"} {
		if !strings.Contains(fast, want) {
			t.Errorf("FastUnsafe settings lack %q:\n%s", want, fast)
		}
	}
	long := "/" + strings.Repeat("d", 100)
	if s := settings(long, 5433, false); !strings.Contains(s, "unix_socket_directories = ''\n") {
		t.Errorf("a directory too long for a socket path should turn sockets off:\n%s", s)
	}
	if s := settings("/tmp/it's", 1, false); !strings.Contains(s, "'/tmp/it''s'") {
		t.Errorf("quote not doubled:\n%s", s)
	}
}

func fakeBinDir(t *testing.T, versionDir string, names ...string) string {
	t.Helper()
	dir := filepath.Join(versionDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func connect(ctx context.Context, t *testing.T, c *Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func selectOne(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}
