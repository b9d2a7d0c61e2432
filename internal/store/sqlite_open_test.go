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
