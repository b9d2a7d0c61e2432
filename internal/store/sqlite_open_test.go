package store

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSQLiteOpenErrors opens SQLite databases that cannot be opened, for
// each cause, through Open as production does: the error names the file
// and says why.
func TestSQLiteOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aFile := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(aFile, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("these are notes, not a database\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, why string }{
		{"MissingDirectory", filepath.Join(dir, "no-such-dir", "pampa.db"), `directory "` + filepath.Join(dir, "no-such-dir") + `" does not exist`},
		{"UnderAFile", filepath.Join(aFile, "pampa.db"), "is a file, not a directory"},
		{"IsADirectory", dir, "the path is a directory"},
		{"NotADatabase", notDB, "not an SQLite database"},
		{"URIMissingDirectory", "file:" + filepath.Join(dir, "gone", "x.db") + "?mode=rwc", "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := Open(context.Background(), "sqlite", c.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", c.path)
			}
			path, _ := sqliteFilePath(c.path)
			msg := err.Error()
			if !strings.Contains(msg, `"`+path+`"`) || !strings.Contains(msg, c.why) {
				t.Fatalf("Open(%q) = %q; want the file %q named and %q", c.path, msg, path, c.why)
			}
		})
	}
}

// TestSQLiteOpenPermission: a file or directory the process may not
// write. Root bypasses file permissions, so as root only the reading of a
// permission error is checked (the file system cannot produce one).
func TestSQLiteOpenPermission(t *testing.T) {
	t.Parallel()
	if got := fsCause(&fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}); got != "permission denied" {
		t.Errorf("EACCES reads %q", got)
	}
	if got := fsCause(&fs.PathError{Op: "open", Path: "x", Err: syscall.EROFS}); got != "read-only file system" {
		t.Errorf("EROFS reads %q", got)
	}
	if os.Geteuid() == 0 {
		t.Log("running as root, which file permissions do not stop: only the reading of EACCES and EROFS was checked")
		return
	}
	dir := filepath.Join(t.TempDir(), "locked")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, err := Open(context.Background(), "sqlite", filepath.Join(dir, "pampa.db"))
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "pampa.db") {
		t.Fatalf("Open in a read-only directory = %v; want the file named and permission denied", err)
	}
}

// TestLocalFile: the file that processes of one machine meet beside, the
// same whatever directory a process starts in and whatever link it goes
// through; none for a database in memory or a server's.
func TestLocalFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	file := filepath.Join(dir, "tasks.db")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		url    string
		path   string
		shared bool
	}{
		{file, file, true},
		{link, file, true},
		{"file:" + file + "?_pragma=busy_timeout(1000)", file, true},
		{"file:" + filepath.Join(dir, "new.db") + "?mode=rwc", filepath.Join(dir, "new.db"), true},
		{":memory:", "", false},
		{"file::memory:?cache=shared", "", false},
		{"file:x.db?mode=memory", "", false},
		{"file:/x.db?vfs=memdb", "", false},
	} {
		path, shared := SQLite{}.LocalFile(c.url)
		if path != c.path || shared != c.shared {
			t.Errorf("SQLite LocalFile(%q) = %q, %v; want %q, %v", c.url, path, shared, c.path, c.shared)
		}
	}
	if path, shared := (SQLite{}).LocalFile("tasks.db"); !filepath.IsAbs(path) || !shared {
		t.Errorf("SQLite LocalFile of a relative path = %q, %v; want an absolute path", path, shared)
	}
	for _, d := range []Dialect{Postgres{}, Cockroach{}} {
		if path, shared := d.LocalFile("postgres://db/jobs"); path != "" || !shared {
			t.Errorf("%s LocalFile = %q, %v; want \"\", true", d.Name(), path, shared)
		}
	}
}
