package main

// The release build, for this machine's platform only: scripts/release.sh
// as `make release` runs it, with the same flags, into a temporary dist.
// One build; the Go build cache serves the packages built before.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const (
	testVersion = "v9.8.7-test.1"
	testCommit  = "0123456789ab"
)

func TestRelease(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "tar", "gzip", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the release script needs %s: %v", tool, err)
		}
	}
	dist := t.TempDir()
	// Files of its own in dist are left alone; an earlier build's go.
	keep, stale := filepath.Join(dist, "notes.txt"), filepath.Join(dist, "pampa-plan9-386")
	for _, f := range []string{keep, stale} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	out := runRelease(t, 0, "VERSION="+testVersion, "COMMIT="+testCommit, "PLATFORMS="+platform, "DIST="+dist)
	bin := filepath.Join(dist, "pampa-"+runtime.GOOS+"-"+runtime.GOARCH)
	archive := filepath.Join(dist, "pampa-"+testVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH+".tar.gz")
	if !strings.Contains(out, "release: "+testVersion+" (commit "+testCommit+") in ") || !strings.Contains(out, filepath.Base(archive)) {
		t.Errorf("the script's summary:\n%s", out)
	}

	// The stamped version, Go's, the platform and the commit.
	version, err := exec.Command(bin, "--version").CombinedOutput()
	want := fmt.Sprintf("pampa %s (%s, %s, commit %s)\n", testVersion, runtime.Version(), platform, testCommit)
	if err != nil || string(version) != want {
		t.Errorf("%s --version: %q, %v; want %q", bin, version, err, want)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file of dist's own was removed: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("an earlier build's binary was kept: %v", err)
	}
	checkBuildFlags(t, bin)
	checkSums(t, dist, []string{filepath.Base(bin), filepath.Base(archive)})
	checkArchive(t, archive, bin)
}

// TestReleaseRefusesBadVersion: a version that would make odd file names
// or ldflags is refused before anything is built.
func TestReleaseRefusesBadVersion(t *testing.T) {
	t.Parallel()
	dist := t.TempDir()
	out := runRelease(t, 2, "VERSION=1.0 beta", "PLATFORMS=linux/amd64", "DIST="+dist)
	if !strings.Contains(out, `VERSION=1.0 beta: want letters, digits and . _ + -`) {
		t.Errorf("output: %s", out)
	}
	if entries, _ := os.ReadDir(dist); len(entries) != 0 {
		t.Errorf("dist holds %d files", len(entries))
	}
}

// runRelease runs the release script with env, wanting exit code.
func runRelease(t *testing.T, code int, env ...string) string {
	t.Helper()
	cmd := exec.Command("bash", "../../scripts/release.sh")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got != code {
		t.Fatalf("release.sh: exit %d, want %d\n%s", got, code, out)
	}
	return string(out)
}

// checkBuildFlags reads the flags the toolchain recorded in the binary,
// and, on Linux, checks that it is static: no interpreter, no libraries.
func checkBuildFlags(t *testing.T, bin string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// (With -trimpath the toolchain leaves -ldflags out; --version shows
	// the stamp.)
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings: %v", settings)
	}
	if runtime.GOOS != "linux" {
		return
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a dynamic loader: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("the binary needs %v", libs)
	}
}

// checkSums checks that SHA256SUMS lists exactly files, with their sums.
func checkSums(t *testing.T, dist string, files []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		content, err := os.ReadFile(filepath.Join(dist, name))
		h := sha256.Sum256(content)
		if !ok || err != nil || sum != hex.EncodeToString(h[:]) {
			t.Errorf("SHA256SUMS line %q does not match the file (%v)", sc.Text(), err)
		}
		listed = append(listed, name)
	}
	if got, _ := json.Marshal(listed); string(got) != mustJSON(files) {
		t.Errorf("SHA256SUMS lists %s, want %s", got, mustJSON(files))
	}
}

func mustJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

// checkArchive checks the archive: the binary, executable and the same
// bytes, and the README, in a directory named after the release.
func checkArchive(t *testing.T, archive, bin string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	top := strings.TrimSuffix(filepath.Base(archive), ".tar.gz") + "/"
	found := map[string]bool{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[h.Name] = true
		if h.Name == top+"pampa" {
			content, _ := io.ReadAll(tr)
			want, _ := os.ReadFile(bin)
			if !bytes.Equal(content, want) || h.FileInfo().Mode().Perm()&0o111 == 0 || h.Uid != 0 {
				t.Errorf("pampa in the archive: %d bytes (want %d), mode %v, uid %d", len(content), len(want), h.FileInfo().Mode(), h.Uid)
			}
		}
	}
	for _, name := range []string{top, top + "pampa", top + "README.md"} {
		if !found[name] {
			t.Errorf("%s is missing from the archive (it holds %v)", name, found)
		}
	}
}
