package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// EnvBinDir names the environment variable that, when set, is the only place
// FindBinaries looks.
const EnvBinDir = "PAMPA_PG_BIN"

// ErrNoBinaries is returned (wrapped, with install instructions) when the
// PostgreSQL server binaries cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

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
