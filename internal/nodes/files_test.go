package nodes

// Release files on this machine: what PlanFiles finds and refuses, and
// the names a release keeps for itself.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// writeTree makes files under dir: name -> content, with a mode per file.
func writeTree(t *testing.T, dir string, files map[string]string, modes map[string]os.FileMode) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if m, ok := modes[name]; ok {
			mode = m
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}

func sumOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestNodesPlanFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"odd.py": "print('odd')\n", "run.sh": "#!/bin/sh\necho hi\n",
		"lib/util.py": "x = 1\n", "lib/data/table.csv": "a,b\n", "deep/nested/only.txt": "n\n",
	}, map[string]os.FileMode{"run.sh": 0o750, "lib/data/table.csv": 0o600})
	if err := os.Chmod(filepath.Join(dir, "lib", "data"), 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../odd.py", filepath.Join(dir, "lib", "odd-link.py")); err != nil {
		t.Fatal(err)
	}
	in := []File{
		{Local: filepath.Join(dir, "odd.py"), Path: "odd.py", From: "job x: files"},
		{Local: filepath.Join(dir, "run.sh"), Path: "./run.sh", From: "job x: files"},
		{Local: filepath.Join(dir, "lib"), Path: "lib", From: "job x: files"},
		{Local: filepath.Join(dir, "lib", "util.py"), Path: "lib/util.py", From: "node n: files"}, // inside lib too
		{Local: filepath.Join(dir, "deep", "nested", "only.txt"), Path: "deep/nested/only.txt", From: "node n: files"},
	}
	got, err := PlanFiles(in)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range got {
		line := fmt.Sprintf("%s %v", f.Path, f.Mode)
		if !f.Mode.IsDir() {
			line += fmt.Sprintf(" %d", f.Size)
		}
		lines = append(lines, line)
	}
	want := []string{
		"deep drwxr-xr-x", "deep/nested drwxr-xr-x", "deep/nested/only.txt -rw-r--r-- 2",
		"lib drwxr-xr-x", "lib/data drwx--x---", "lib/data/table.csv -rw------- 4",
		"lib/odd-link.py -rw-r--r-- 13", "lib/util.py -rw-r--r-- 6",
		"odd.py -rw-r--r-- 13", "run.sh -rwxr-x--- 18",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("planned:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range got {
		switch f.Path {
		case "lib/odd-link.py":
			// A link is shipped as the file it points to.
			if f.SHA256 != sumOf("print('odd')\n") || f.Local != filepath.Join(dir, "lib", "odd-link.py") {
				t.Errorf("link: %+v", f)
			}
		case "run.sh":
			if f.SHA256 != sumOf("#!/bin/sh\necho hi\n") {
				t.Errorf("run.sh digest %s", f.SHA256)
			}
		case "deep":
			if f.Local != "" {
				t.Errorf("a directory has a local file: %+v", f)
			}
		}
	}
}

func TestNodesPlanFilesRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"real/a.txt": "a", "odd.py": "x"}, nil)
	if err := os.Symlink("real", filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "withlink"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../real", filepath.Join(dir, "withlink", "sub")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		f    File
		want []string
	}{
		{"Missing", File{Local: filepath.Join(dir, "odd2.py"), Path: "odd2.py", From: `job "odd": files`},
			[]string{`job "odd": files = "odd2.py": `, filepath.Join(dir, "odd2.py") + " does not exist"}},
		{"MissingInMissingDir", File{Local: filepath.Join(dir, "nope", "x"), Path: "nope/x", From: `node "n1": files`},
			[]string{`node "n1": files = "nope/x": `, "does not exist"}},
		{"SpecialFile", File{Local: filepath.Join(dir, "pipe"), Path: "pipe", From: "f"},
			[]string{"pipe is not a regular file or a directory"}},
		{"LinkToDirInside", File{Local: filepath.Join(dir, "withlink"), Path: "withlink", From: "f"},
			[]string{"withlink/sub is a symbolic link to a directory"}},
		{"Outside", File{Local: filepath.Join(dir, "odd.py"), Path: "../odd.py", From: "f"},
			[]string{`f = "../odd.py": not a path inside the release`}},
		{"Absolute", File{Local: filepath.Join(dir, "odd.py"), Path: "/odd.py", From: "f"},
			[]string{"not a path inside the release"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PlanFiles([]File{tt.f})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A listed directory that is itself a link is walked.
	got, err := PlanFiles([]File{{Local: filepath.Join(dir, "linked"), Path: "linked", From: "f"}})
	if err != nil || len(got) != 2 || got[0].Path != "linked" || got[1].Path != "linked/a.txt" || !got[0].Mode.IsDir() {
		t.Errorf("a linked directory: %+v, %v", got, err)
	}
}

func TestNodesReleaseFileNames(t *testing.T) {
	t.Parallel()
	spec := DeploySpec{Binary: "/tmp/build/odd"}.WithDefaults()
	if spec.Program != "odd" || spec.Keep != 3 {
		t.Fatalf("defaults: %+v", spec)
	}
	for _, taken := range []string{"odd", "odd/x.py", configName, envName, manifestName + "/a"} {
		spec.Files = []ReleaseFile{{Path: "ok.py"}, {Path: taken}}
		if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "release file "+taken) {
			t.Errorf("a release file at %s: %v", taken, err)
		}
	}
	spec.Files = []ReleaseFile{{Path: "odd.py"}, {Path: "envs/x", Mode: fs.ModeDir}}
	if err := spec.Validate(); err != nil {
		t.Errorf("names that only start like the release's own: %v", err)
	}
}
