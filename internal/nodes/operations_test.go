package nodes

// Against a real OpenSSH server: node directories, remote command
// failures, releases kept and pruned, interrupted and refused uploads,
// stale pid files, and log tails.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

// put writes a file in the node user's home, owned by that user, making
// its directories as needed.
func (n *realNode) put(t *testing.T, rel string, data []byte) string {
	t.Helper()
	name := filepath.Join(n.srv.Home, rel)
	for d := filepath.Dir(name); len(d) > len(n.srv.Home); d = filepath.Dir(d) {
		defer os.Lchown(d, n.srv.UID, -1)
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(name, n.srv.UID, -1); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestNodesRealDirAndCommands(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.4", 2)
	home := n.srv.Home
	for dir, want := range map[string]string{
		"":            path.Join(home, DefaultDir),
		"~":           home,
		"~/work/./p/": path.Join(home, "work/p"),
		"rel/dir":     path.Join(home, "rel/dir"),
		"/srv/pampa":  "/srv/pampa",
	} {
		tg := *n.t
		tg.Dir = dir
		c := (&realNode{srv: n.srv, t: &tg}).dial(t)
		got, gotHome, err := c.Dir()
		if err != nil || got != want || gotHome != home {
			t.Errorf("Dir %q = %s, %s, %v; want %s, %s", dir, got, gotHome, err, want, home)
		}
	}

	ctx := context.Background()
	t.Run("FailingCommand", func(t *testing.T) {
		_, err := n.conn.Output(ctx, []string{"sh", "-c", "echo partial; echo 'no such table' >&2; exit 7"}, nil)
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Status != 7 || exit.Signal != "" || exit.Stderr != "no such table" {
			t.Errorf("err = %v (%+v), want exit status 7 with its error output", err, exit)
		}
	})
	t.Run("KilledCommand", func(t *testing.T) {
		// The login shell running the command is killed.
		_, err := n.conn.Output(ctx, []string{"sh", "-c", "kill -KILL $PPID"}, nil)
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Status != -1 || exit.Signal != "KILL" {
			t.Errorf("err = %v (%+v), want killed by KILL", err, exit)
		}
	})
	t.Run("ArgumentsArriveVerbatim", func(t *testing.T) {
		args := []string{"$(touch " + home + "/pwned)", "a b", "it's", "*", "~", "-n"}
		out, err := n.conn.Output(ctx, append([]string{"printf", `%s\n`}, args...), nil)
		if err != nil || string(out) != strings.Join(args, "\n")+"\n" {
			t.Errorf("printf printed %q, %v", out, err)
		}
		if _, err := os.Stat(home + "/pwned"); err == nil {
			t.Error("an argument ran as a command")
		}
	})
	t.Run("Stdin", func(t *testing.T) {
		out, err := n.conn.Output(ctx, []string{"tr", "a-z", "A-Z"}, strings.NewReader("shout"))
		if err != nil || string(out) != "SHOUT" {
			t.Errorf("tr = %q, %v", out, err)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		started := &notifyWriter{ch: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			done <- n.conn.Run(cctx, []string{"sh", "-c", "echo started; exec sleep 300"}, nil, started, nil)
		}()
		select {
		case <-started.ch:
		case <-time.After(20 * time.Second):
			t.Fatal("the command did not start")
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return once cancelled")
		}
		if procs := n.srv.ProcessesLeft(); len(procs) != 0 {
			t.Errorf("the cancelled command still runs on the node: %v", procs)
		}
	})
	t.Run("Processes", func(t *testing.T) {
		ps, err := n.conn.Processes(ctx, nil)
		if err != nil || len(ps) != 2 || ps["n.1"].Running || !strings.Contains(ps["n.2"].Why, "no pid file") {
			t.Errorf("Processes = %+v, %v", ps, err)
		}
		ps, err = n.conn.Processes(ctx, []string{"n.2"})
		if err != nil || len(ps) != 1 {
			t.Errorf("Processes(n.2) = %+v, %v", ps, err)
		}
	})
}

// notifyWriter closes ch on its first write.
type notifyWriter struct {
	ch   chan struct{}
	once bool
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.ch)
	}
	return len(p), nil
}

func TestNodesRealReleases(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.4", 1)
	ctx := context.Background()
	releases := path.Join(n.srv.Home, DefaultDir, releasesDir)
	current := func() string {
		target, _ := os.Readlink(path.Join(n.srv.Home, DefaultDir, currentLink))
		return path.Base(target)
	}
	deploy := func(mark string, keep int) *Deployed {
		t.Helper()
		spec := testSpec(t, mark)
		spec.Keep = keep
		d, err := n.conn.Deploy(ctx, spec)
		if err != nil {
			t.Fatalf("deploy %s: %v", mark, err)
		}
		return d
	}
	a := deploy("a", 3)
	b := deploy("b", 3)
	// Going back to a release still on the node reuses it.
	a2 := deploy("a", 3)
	if !a2.Reused || a2.Unchanged || a2.Previous != b.Release.ID || a2.Release.ID != a.Release.ID ||
		!a2.Release.DeployedAt.Equal(a.Release.DeployedAt) || current() != a.Release.ID {
		t.Errorf("redeploy of a: %+v (current %s)", a2, current())
	}

	// Leftovers of interrupted deploys are removed once over an hour old.
	old := time.Now().Add(-2 * time.Hour)
	for _, name := range []string{incomingPfx + "old", incomingPfx + "new"} {
		f := n.put(t, path.Join(DefaultDir, releasesDir, name, "prog"), []byte("x"))
		if strings.HasSuffix(name, "old") {
			os.Chtimes(filepath.Dir(f), old, old)
		}
	}
	staleLink := path.Join(n.srv.Home, DefaultDir, currentLink+incomingPfx+"old")
	os.Symlink("releases/gone", staleLink)
	if out, err := exec.Command("touch", "-h", "-d", "2 hours ago", staleLink).CombinedOutput(); err != nil {
		t.Fatalf("touch: %v: %s", err, out)
	}

	// A third release with keep 2: the other release deployed first goes
	// (by the dates the manifests record: these deploys share a second).
	for id, ago := range map[string]time.Duration{a.Release.ID: 2 * time.Hour, b.Release.ID: 3 * time.Hour} {
		setDeployedAt(t, path.Join(releases, id), time.Now().Add(-ago))
	}
	c := deploy("c", 2)
	if len(c.Pruned) != 1 || c.Pruned[0] != b.Release.ID {
		t.Errorf("pruned %v, want [%s] (the oldest; c is current)", c.Pruned, b.Release.ID)
	}
	for id, want := range map[string]bool{a.Release.ID: true, b.Release.ID: false, c.Release.ID: true,
		incomingPfx + "old": false, incomingPfx + "new": true} {
		if _, err := os.Stat(path.Join(releases, id)); (err == nil) != want {
			t.Errorf("%s on the node: %v, want %v", id, err == nil, want)
		}
	}
	if _, err := os.Lstat(staleLink); err == nil {
		t.Error("a stale temporary symlink was kept")
	}

	t.Run("InterruptedAtTheLastFile", func(t *testing.T) {
		hooked := n.dial(t)
		ictx, cancel := context.WithCancel(ctx)
		defer cancel()
		hooked.hookUpload = func(name string) {
			if strings.HasSuffix(name, "/"+manifestName) {
				cancel()
			}
		}
		d, err := hooked.Deploy(ictx, testSpec(t, "d"))
		if err == nil {
			t.Fatalf("the interrupted deploy succeeded: %+v", d)
		}
		if current() != c.Release.ID {
			t.Errorf("current = %s after an interrupted deploy, want %s", current(), c.Release.ID)
		}
		entries, _ := os.ReadDir(releases)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "test-") && e.Name() != a.Release.ID && e.Name() != c.Release.ID {
				t.Errorf("a release was published by the interrupted deploy: %s", e.Name())
			}
		}
	})
	t.Run("RefusedUpload", func(t *testing.T) {
		// releases/ is the user's but read-only to it: nothing can be made.
		if err := os.Chmod(releases, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(releases, 0o755)
		_, err := n.conn.Deploy(ctx, testSpec(t, "e"))
		if err == nil || !strings.Contains(err.Error(), "create "+path.Join(releases, incomingPfx)) || !strings.Contains(strings.ToLower(err.Error()), "permission denied") {
			t.Errorf("deploy into a read-only releases dir: %v", err)
		}
		if current() != c.Release.ID {
			t.Errorf("current = %s, want %s", current(), c.Release.ID)
		}
	})
	t.Run("UnreadableCurrentRelease", func(t *testing.T) {
		manifest := path.Join(releases, c.Release.ID, manifestName)
		good, _ := os.ReadFile(manifest)
		defer os.WriteFile(manifest, good, 0o644)
		os.WriteFile(manifest, []byte("{"), 0o644)
		st := n.state(t)
		if st.Release != nil || len(st.Errors) != 1 || !strings.HasPrefix(st.Errors[0], "release: "+manifest) {
			t.Errorf("state with a corrupt manifest: release %+v, errors %q", st.Release, st.Errors)
		}
		if _, err := n.conn.Start(ctx, StartOptions{}); err == nil || !strings.Contains(err.Error(), "read the current release") {
			t.Errorf("start with a corrupt manifest: %v", err)
		}
	})
}

func TestNodesRealStaleRecordsAndLogs(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.4", 2)
	ctx := context.Background()
	dir := path.Join(n.srv.Home, DefaultDir)

	// A pid file whose process is gone, and one of a worker the node no
	// longer has (max_workers was 7).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	n.put(t, path.Join(DefaultDir, runDir, "n.1.pid"), []byte(strconv.Itoa(gone.Process.Pid)+"\n"))
	n.put(t, path.Join(DefaultDir, runDir, "n.7.pid"), []byte(strconv.Itoa(gone.Process.Pid)+"\n"))
	st := n.state(t)
	if len(st.Workers) != 3 {
		t.Fatalf("workers = %+v", st.Workers)
	}
	if w := workerOf(st, "n.1"); w.Running || !w.Stale || w.Extra || !strings.Contains(w.Why, "died") {
		t.Errorf("n.1: %+v", w)
	}
	if w := workerOf(st, "n.7"); !w.Extra || !w.Stale {
		t.Errorf("n.7: %+v", w)
	}
	stopped, err := n.conn.Stop(ctx, nil, 0)
	if err != nil || len(stopped) != 3 {
		t.Fatalf("stop = %+v, %v", stopped, err)
	}
	for _, s := range stopped {
		if s.WasRunning || s.Killed || s.Error != "" {
			t.Errorf("stop %s: %+v", s.ID, s)
		}
	}
	for _, id := range []string{"n.1", "n.7"} {
		if _, err := os.Stat(pidPath(dir, id)); err == nil {
			t.Errorf("the stale pid file of %s is left", id)
		}
	}
	if st := n.state(t); len(st.Workers) != 2 {
		t.Errorf("after stop, workers = %+v", st.Workers)
	}

	t.Run("Tail", func(t *testing.T) {
		var big bytes.Buffer
		for i := 1; i <= 20000; i++ {
			big.WriteString("line " + strconv.Itoa(i) + "\n")
		}
		bigLog := n.put(t, "big.log", big.Bytes()) // over one 64 KiB chunk
		partial := n.put(t, "partial.log", []byte("one\ntwo\nthree, being written"))
		for _, tc := range []struct {
			name string
			n    int
			want string
		}{
			{bigLog, 2, "line 19999\nline 20000\n"},
			{bigLog, 1, "line 20000\n"},
			{partial, 2, "two\nthree, being written"},
			{partial, 10, "one\ntwo\nthree, being written"},
			{partial, 0, ""},
		} {
			var buf bytes.Buffer
			if err := n.conn.Tail(ctx, tc.name, tc.n, false, &buf); err != nil || buf.String() != tc.want {
				t.Errorf("Tail(%s, %d) = %q, %v; want %q", path.Base(tc.name), tc.n, buf.String(), err, tc.want)
			}
		}
		var buf bytes.Buffer
		if err := n.conn.Tail(ctx, bigLog, 20005, false, &buf); err != nil || buf.Len() != big.Len() {
			t.Errorf("Tail of more lines than the file has: %d bytes, %v; want %d", buf.Len(), err, big.Len())
		}
	})
	t.Run("Follow", func(t *testing.T) {
		name := path.Join(n.srv.Home, "later.log")
		fctx, cancel := context.WithCancel(ctx)
		var got syncBuf
		done := make(chan error, 1)
		go func() { done <- n.conn.Tail(fctx, name, 5, true, &got) }()
		// It does not exist yet: followed from when it appears, whole
		// lines only.
		n.put(t, "later.log", []byte("first\nsecond, unfinished"))
		nodestest.WaitFor(t, 20*time.Second, "the first line", func() bool { return got.String() == "first\n" })
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(" now done\n")
		f.Close()
		nodestest.WaitFor(t, 20*time.Second, "the finished line", func() bool {
			return got.String() == "first\nsecond, unfinished now done\n"
		})
		// Rotated: a shorter file is followed from its start.
		n.put(t, "later.log", []byte("fresh\n"))
		nodestest.WaitFor(t, 20*time.Second, "the rotated file's line", func() bool {
			return strings.HasSuffix(got.String(), "done\nfresh\n")
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("follow: %v", err)
		}
	})
}

// setDeployedAt rewrites the deploy date a release's manifest records.
func setDeployedAt(t *testing.T, relDir string, at time.Time) {
	t.Helper()
	name := path.Join(relDir, manifestName)
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var rel Release
	if err := json.Unmarshal(data, &rel); err != nil {
		t.Fatal(err)
	}
	rel.DeployedAt = at.UTC().Truncate(time.Second)
	data, _ = json.Marshal(rel)
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodesRealSystemdRecords drives the SSH side of supervision by
// systemd, status and stop, against a stand-in for systemctl named in a
// worker's supervisor record: what they ask the manager, and what they
// make of its answers. (The node side needs a real systemd: untested.)
func TestNodesRealSystemdRecords(t *testing.T) {
	t.Parallel()
	n := startRealNode(t, "127.0.0.4", 2)
	ctx := context.Background()
	dir := path.Join(n.srv.Home, DefaultDir)
	unit := unitName(dir, "n.1")
	fake := n.put(t, "fake/systemctl", []byte(`#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/calls"
if [ -f "$d/broken" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
case "$2" in
show) cat "$d/show" ;;
disable) cp "$d/show.after" "$d/show" ;;
esac
`))
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	props := "Id=" + unit + "\nLoadState=loaded\nResult=success\nExecMainStatus=0\n"
	n.put(t, "fake/show", []byte(props+"ActiveState=active\nSubState=running\nMainPID=4242\nNRestarts=2\nExecMainCode=0\nExecMainExitTimestamp=\n"))
	n.put(t, "fake/show.after", []byte(props+"ActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=2\nExecMainCode=1\nExecMainExitTimestamp=Tue 2024-05-14 10:03:04 UTC\n"))
	rec, _ := json.Marshal(Supervision{Kind: SupervisorSystemd, Unit: unit, Systemctl: []string{fake, "--user"}, State: SuperRunning, Restart: DefaultRestartPolicy})
	n.put(t, path.Join(DefaultDir, runDir, "n.1"+superExt), rec)
	n.put(t, path.Join(DefaultDir, runDir, "n.1.json"), []byte(`{"id":"n.1","pid":4242,"grace_ms":2000}`))

	sup := workerOf(n.state(t), "n.1").Supervisor
	if sup == nil || !sup.Alive || sup.State != SuperRunning || sup.Restarts != 2 || sup.WorkerPID != 4242 || sup.Why != "" {
		t.Fatalf("a running unit: %+v", sup)
	}
	stopped, err := n.conn.Stop(ctx, nil, 0)
	if err != nil || len(stopped) != 2 {
		t.Fatalf("stop = %+v, %v", stopped, err)
	}
	if s := stopped[0]; s.ID != "n.1" || !s.WasRunning || s.Supervisor != SupervisorSystemd || s.Unit != unit || s.PID != 4242 || s.TookMS == 0 || s.Killed {
		t.Errorf("stop of a systemd worker: %+v", s)
	}
	if s := stopped[1]; s.ID != "n.2" || s.WasRunning || s.Supervisor != "" {
		t.Errorf("stop of a worker never started: %+v", s)
	}
	calls, _ := os.ReadFile(filepath.Join(filepath.Dir(fake), "calls"))
	want := "--user show -p " + showProps + " -- " + unit + "\n--user disable --now -- " + unit + "\n--user show -p " + showProps + " -- " + unit + "\n"
	if !strings.HasSuffix(string(calls), want) {
		t.Errorf("systemctl was run as\n%s\nwant it to end with\n%s", calls, want)
	}
	if _, err := os.Stat(metaPath(dir, "n.1")); err == nil {
		t.Error("the pid file of a worker stopped with its unit is left")
	}
	st := n.state(t)
	if sup := workerOf(st, "n.1").Supervisor; sup.Alive || sup.State != SuperExited || sup.LastExit == nil || !sup.LastExit.Clean() {
		t.Errorf("after stop: %+v", sup)
	}

	// A manager that does not answer: status says so, for the worker and
	// the node.
	n.put(t, "fake/broken", nil)
	st = n.state(t)
	if sup := workerOf(st, "n.1").Supervisor; sup.Alive || !strings.Contains(sup.Why, "systemctl show") || !strings.Contains(sup.Why, "No medium found") {
		t.Errorf("an unreachable manager: %+v", sup)
	}
	if !strings.Contains(strings.Join(st.Errors, "; "), "supervisors: systemctl show") {
		t.Errorf("node errors: %q", st.Errors)
	}
}
