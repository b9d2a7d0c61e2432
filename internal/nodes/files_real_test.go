package nodes

// Release files against a real OpenSSH server: shipped with their modes
// beside the program, run from the release, new releases on any change,
// and `current` untouched by a deploy that fails halfway.

import (
	"context"
	"crypto/rand"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestNodesRealReleaseFiles(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.3", 1)
	ctx := context.Background()
	local := t.TempDir()
	big := make([]byte, 3<<20+17) // several SFTP packets, an odd size
	rand.Read(big)
	writeTree(t, local, map[string]string{
		"odd.py": "print('odd')\n", "scripts/run.sh": "#!/bin/sh\necho ran \"$1\" in \"$(pwd)\"\n",
		"data/table.csv": "a,b\n", "data/big.bin": string(big),
	}, map[string]os.FileMode{"scripts/run.sh": 0o755, "data/table.csv": 0o600})
	if err := os.Chmod(filepath.Join(local, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	deploy := func(c *Conn, mark string) (*Deployed, error) {
		t.Helper()
		files, err := PlanFiles([]File{
			{Local: filepath.Join(local, "odd.py"), Path: "odd.py", From: "job"},
			{Local: filepath.Join(local, "scripts"), Path: "scripts", From: "job"},
			{Local: filepath.Join(local, "data"), Path: "data", From: "node"},
		})
		if err != nil {
			t.Fatal(err)
		}
		spec := testSpec(t, mark)
		spec.Files = files
		return c.Deploy(ctx, spec)
	}
	current := path.Join(n.srv.Home, DefaultDir, currentLink)
	currentID := func() string {
		target, _ := os.Readlink(current)
		return path.Base(target)
	}

	d1, err := deploy(n.conn, "f")
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{
		"odd.py": 0o644, "scripts": os.ModeDir | 0o755, "scripts/run.sh": 0o755,
		"data": os.ModeDir | 0o750, "data/table.csv": 0o600, "data/big.bin": 0o644, "prog": 0o755,
	} {
		fi, err := os.Stat(path.Join(current, name))
		if err != nil {
			t.Errorf("%s in current/: %v", name, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
		if sys := fi.Sys().(*syscall.Stat_t); int(sys.Uid) != n.srv.UID {
			t.Errorf("%s is not owned by the SSH user", name)
		}
		if !fi.IsDir() && name != "prog" {
			want, _ := os.ReadFile(filepath.Join(local, name))
			if got, _ := os.ReadFile(path.Join(current, name)); string(got) != string(want) {
				t.Errorf("%s: %d bytes on the node, want the %d here", name, len(got), len(want))
			}
		}
	}
	// The script runs on the node, from the release, by its executable bit.
	relDir := path.Join(n.srv.Home, DefaultDir, releasesDir, d1.Release.ID)
	out, err := n.conn.Output(ctx, []string{"sh", "-c", `cd "$1" && ./scripts/run.sh x`, "sh", relDir}, nil)
	if err != nil || string(out) != "ran x in "+relDir+"\n" {
		t.Errorf("the shipped script on the node: %q, %v", out, err)
	}
	if d, err := deploy(n.conn, "f"); err != nil || !d.Unchanged {
		t.Errorf("the same files again: %+v, %v; want unchanged", d, err)
	}

	// A change of content, then of mode only: a new release each time,
	// the one before left as it was.
	writeTree(t, local, map[string]string{"odd.py": "print('odd, v2')\n"}, nil)
	d2, err := deploy(n.conn, "f")
	if err != nil || d2.Release.ID == d1.Release.ID || d2.Previous != d1.Release.ID || currentID() != d2.Release.ID {
		t.Fatalf("deploy of a changed file: %+v, %v (current %s)", d2, err, currentID())
	}
	if old, _ := os.ReadFile(path.Join(relDir, "odd.py")); string(old) != "print('odd')\n" {
		t.Errorf("the previous release's odd.py changed: %q", old)
	}
	if err := os.Chmod(filepath.Join(local, "scripts", "run.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	d3, err := deploy(n.conn, "f")
	if err != nil || d3.Release.ID == d2.Release.ID || currentID() != d3.Release.ID {
		t.Fatalf("deploy of a changed mode: %+v, %v", d3, err)
	}
	if fi, err := os.Stat(path.Join(current, "scripts", "run.sh")); err != nil || fi.Mode() != 0o700 {
		t.Errorf("run.sh after chmod: %v, %v", fi, err)
	}

	// Interrupted halfway through the files: `current` and its files
	// stay as they were, and no release is published (what was uploaded
	// stays in an incoming directory, pruned later, when the connection
	// was cut too soon to remove it).
	writeTree(t, local, map[string]string{"odd.py": "print('odd, v3')\n"}, nil)
	releases := func() int {
		entries, _ := os.ReadDir(path.Join(n.srv.Home, DefaultDir, releasesDir))
		n := 0
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), incomingPfx) {
				n++
			}
		}
		return n
	}
	before := releases()
	hooked := n.dial(t)
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	hooked.hookUpload = func(name string) {
		if strings.HasSuffix(name, "/data/table.csv") {
			cancel()
		}
	}
	files, _ := PlanFiles([]File{{Local: filepath.Join(local, "odd.py"), Path: "odd.py"},
		{Local: filepath.Join(local, "data"), Path: "data"}})
	spec := testSpec(t, "f")
	spec.Files = files
	if d, err := hooked.Deploy(ictx, spec); err == nil {
		t.Fatalf("the interrupted deploy succeeded: %+v", d)
	}
	if currentID() != d3.Release.ID || releases() != before {
		t.Errorf("after an interrupted deploy: current %s (want %s), %d releases (want %d)", currentID(), d3.Release.ID, releases(), before)
	}
	if got, _ := os.ReadFile(path.Join(current, "odd.py")); string(got) != "print('odd, v2')\n" {
		t.Errorf("current/odd.py after an interrupted deploy: %q", got)
	}

	// A file that changes after it was planned fails the deploy.
	hooked2 := n.dial(t)
	hooked2.hookUpload = func(name string) {
		if strings.HasSuffix(name, "/odd.py") {
			f, _ := os.OpenFile(filepath.Join(local, "odd.py"), os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString("# edited\n")
			f.Close()
		}
	}
	if d, err := hooked2.Deploy(ctx, spec); err == nil || !strings.Contains(err.Error(), "odd.py changed while it was deployed") {
		t.Errorf("a file edited during the deploy: %+v, %v", d, err)
	}
	if currentID() != d3.Release.ID || releases() != before {
		t.Errorf("after a deploy of an edited file: current %s, %d releases", currentID(), releases())
	}
}
