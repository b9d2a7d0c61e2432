package nodes

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// File is a local file or directory asked for in a release, besides the
// program, the config and the env file: a job's script, say.
type File struct {
	// Local is its path on this machine.
	Local string
	// Path is where it goes in the release directory: slash-separated,
	// relative, inside the release.
	Path string
	// From says who asked for it, for errors: `job "odd": files`.
	From string
}

// ReleaseFile is one file or directory of a release, as [PlanFiles]
// found it on this machine.
type ReleaseFile struct {
	// Path is its place in the release directory, slash-separated.
	Path string
	// Local is the file's path on this machine; "" for a directory.
	Local string
	// Mode holds the permission bits, and fs.ModeDir for a directory.
	Mode fs.FileMode
	// Size and SHA256 are the file's, as read when planned; the upload
	// checks that it still has them.
	Size   int64
	SHA256 string
}

// PlanFiles lists what files hold, each directory walked, the parent
// directories of nested paths included, sorted by Path (a directory before
// its contents). Symbolic links are followed to regular files; a link to a
// directory, or a special file, is refused, as is a path outside the
// release. Errors name the File's From, its path and the local path.
func PlanFiles(files []File) ([]ReleaseFile, error) {
	byPath := map[string]ReleaseFile{}
	for _, f := range files {
		rel := path.Clean(f.Path)
		if rel == "." || rel == ".." || path.IsAbs(rel) || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("%s = %q: not a path inside the release", f.From, f.Path)
		}
		if err := planFile(byPath, f.Local, rel); err != nil {
			return nil, fmt.Errorf("%s = %q: %w", f.From, f.Path, err)
		}
		// Parents of a nested path, such as lib for lib/odd.py.
		for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = ReleaseFile{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	out := make([]ReleaseFile, 0, len(byPath))
	for _, rf := range byPath {
		out = append(out, rf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// planFile adds local, at rel in the release, to byPath: a file, or a
// directory with all it holds.
func planFile(byPath map[string]ReleaseFile, local, rel string) error {
	fi, err := os.Stat(local)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist", local)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return addRegular(byPath, local, rel, fi)
	}
	// A listed directory may be a link; what it holds is walked as is.
	if local, err = filepath.EvalSymlinks(local); err != nil {
		return err
	}
	return filepath.WalkDir(local, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sub, err := filepath.Rel(local, name)
		if err != nil {
			return err
		}
		at := path.Join(rel, filepath.ToSlash(sub))
		fi, err := os.Stat(name) // follows links
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir() && d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link to a directory: list the directory itself", name)
		case fi.IsDir():
			byPath[at] = ReleaseFile{Path: at, Mode: fs.ModeDir | fi.Mode().Perm()}
			return nil
		}
		return addRegular(byPath, name, at, fi)
	})
}

// addRegular adds a regular file, digested.
func addRegular(byPath map[string]ReleaseFile, local, rel string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file or a directory (%s)", local, fi.Mode().Type())
	}
	if _, ok := byPath[rel]; ok {
		return nil // listed twice, or inside a directory listed too
	}
	sum, size, err := digestFile(local)
	if err != nil {
		return err
	}
	byPath[rel] = ReleaseFile{Path: rel, Local: local, Mode: fi.Mode().Perm(), Size: size, SHA256: sum}
	return nil
}

func digestFile(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// checkFiles refuses release files that would take the place of the
// program, the config, the env file or the manifest.
func checkFiles(files []ReleaseFile, program string) error {
	reserved := []struct{ name, what string }{
		{program, "program"}, {configName, "config"}, {envName, "env file"}, {manifestName, "manifest"}}
	for _, f := range files {
		top, _, _ := strings.Cut(f.Path, "/")
		for _, r := range reserved {
			if top == r.name {
				return fmt.Errorf("release file %s: %s is the release's %s; give the file another name", f.Path, r.name, r.what)
			}
		}
	}
	return nil
}

// digestFiles adds the files' places, modes and contents to a release's
// digest, so that changing any of them makes a new release.
func digestFiles(h io.Writer, files []ReleaseFile) {
	for _, f := range files {
		fmt.Fprintf(h, "\x00file=%s\x00mode=%o\x00sha256=%s", f.Path, uint32(f.Mode), f.SHA256)
	}
}
