package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// OpenError implements Dialect. SQLite says only "unable to open database
// file" or "file is not a database"; this names the file and finds out why
// from the file system: a missing directory, a path under a file, a
// directory where the file should be, permission denied, a read-only file
// system, or a file that is not an SQLite database.
func (SQLite) OpenError(raw string, err error) error {
	path, ok := sqliteFilePath(raw)
	if !ok {
		return err
	}
	if why := sqliteOpenCause(path); why != "" {
		return fmt.Errorf("database file %q: %s (%w)", path, why, err)
	}
	return fmt.Errorf("database file %q: %w", path, err)
}

// sqliteFilePath is the file a path or "file:" URI opens, or ok=false for
// an in-memory database.
func sqliteFilePath(raw string) (string, bool) {
	path := raw
	if strings.HasPrefix(raw, "file:") {
		rest, query, _ := strings.Cut(strings.TrimPrefix(raw, "file:"), "?")
		if q, err := url.ParseQuery(query); err == nil && (q.Get("mode") == "memory" || q.Get("vfs") == "memdb") {
			return "", false
		}
		if p, err := url.PathUnescape(rest); err == nil {
			rest = p
		}
		path = strings.TrimPrefix(rest, "//localhost")
	}
	if path == "" || path == ":memory:" {
		return "", false
	}
	return path, true
}

// sqliteHeader starts every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// sqliteOpenCause looks at the file system for why path cannot be opened
// as a database, or returns "" when nothing there explains it.
func sqliteOpenCause(path string) string {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return missingFileCause(path)
	case err != nil:
		return fsCause(err)
	case fi.IsDir():
		return "the path is a directory, not a file"
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "cannot open it for reading and writing: " + fsCause(err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	n, err := io.ReadFull(f, head)
	if n > 0 && (err != nil || string(head) != sqliteHeader) {
		return "the file is not an SQLite database"
	}
	// The write-ahead log and its index are created beside the file.
	return dirCause(filepath.Dir(path), "cannot create the write-ahead log beside it")
}

// missingFileCause explains why a file that does not exist yet could not
// be created.
func missingFileCause(path string) string {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("directory %q does not exist", dir)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Sprintf("a parent of directory %q is a file, not a directory", dir)
	case err != nil:
		return fmt.Sprintf("directory %q: %s", dir, fsCause(err))
	case !fi.IsDir():
		return fmt.Sprintf("%q is a file, not a directory", dir)
	}
	return dirCause(dir, "cannot create the file")
}

// dirCause tries to create a file in dir, as SQLite must, and explains a
// failure, prefixed with what.
func dirCause(dir, what string) string {
	f, err := os.CreateTemp(dir, ".pampa-probe-*")
	if err != nil {
		return fmt.Sprintf("%s in directory %q: %s", what, dir, fsCause(err))
	}
	f.Close()
	os.Remove(f.Name())
	return ""
}

// fsCause says in words what a file system error means.
func fsCause(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.EROFS):
		return "read-only file system"
	case errors.Is(err, syscall.ENOTDIR):
		return "a parent in the path is a file, not a directory"
	case errors.Is(err, syscall.EISDIR):
		return "the path is a directory, not a file"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
