package cli

// `pampa nodes start --node-dispatcher` end to end: a real OpenSSH server
// stands in for the node, this test binary deployed to it runs the node
// dispatcher and its workers in one process, and a dispatcher here hands
// them tasks, on SQLite and on PostgreSQL.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

func TestNodesStartNodeDispatcher(t *testing.T) {
	processDrivers(t, func(t *testing.T, driver string) {
		const batch1, batch2 = 40, 100
		e := newNodesEnvOn(t, driver, batch1)
		srv := nodestest.Start(t, nodestest.Options{IP: "127.0.0.5"})
		e.shareSQLite(srv)
		knownHosts := filepath.Join(e.dir, "known_hosts")
		os.WriteFile(knownHosts, []byte(srv.KnownHostsLine()+"\n"), 0o600)
		e.secrets = []string{"NODE1_PASSWORD=" + srv.Password}
		e.writeConfig(nodeYAML("n1", srv, knownHosts, "    ssh_password_env: NODE1_PASSWORD\n"))
		e.must("nodes", "deploy", "n1", "--env", envTestProgram+"=1", "--env", "PAMPA_TEST_DRIVER="+driver, "--env", "PAMPA_TEST_SLEEP=40ms")
		flags := []string{"--heartbeat", "1s", "--delay", "50ms", "--grace", "5s", "--settle", "500ms", "--restart-delay", "100ms"}
		start := func(args ...string) (string, int) {
			return e.run(append(append([]string{"nodes"}, args...), flags...)...)
		}

		// Its workers live in its process: none can be asked for alone.
		if out, code := start("start", "n1", "--node-dispatcher", "--worker", "n1.2"); code != 2 || !strings.Contains(out, "--worker n1.2 with --node-dispatcher") {
			t.Errorf("--node-dispatcher with --worker: exit %d\n%s", code, out)
		}
		if out, code := start("start", "n1", "--worker", "n1.0"); code != 2 || !strings.Contains(out, "--worker n1.0 is node n1's node dispatcher, not a worker: start it with --node-dispatcher") {
			t.Errorf("--worker n1.0 without --node-dispatcher: exit %d\n%s", code, out)
		}

		e.start("dispatcher", nil, fastDispatcherArgs...)
		out, code := start("start", "n1", "--node-dispatcher")
		for _, want := range []string{"n1: node dispatcher n1.0 runs the node's 2 workers (n1.1, n1.2) in its one process; the limits apply to that process as a whole, each times 2",
			"n1: limit ram 2048 MiB: applied (RLIMIT_DATA", "n1: supervisor pampa, one for the node dispatcher", "n1.0: started and registered, pid ", "n1.0: its workers n1.1, n1.2 registered"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("start --node-dispatcher: exit %d, no %q in\n%s", code, want, out)
			}
		}
		if strings.Contains(out, "n1.1: started") {
			t.Errorf("start --node-dispatcher started a worker of its own:\n%s", out)
		}
		// One node process (and its supervisor): the registry's n1.0 and
		// its two workers, all with its pid.
		st := e.status("n1")
		nd := findWorker(t, findNode(t, st, "n1"), "n1.0")
		if nd.Process == nil || !nd.Process.Running || nd.Registry == nil || !nd.Registry.Alive || nd.Registry.PID != nd.Process.PID || nd.Registry.Members != 2 ||
			nd.Supervisor == nil || !nd.Supervisor.Alive {
			t.Fatalf("status of n1.0: process %+v, registry %+v, supervisor %+v", nd.Process, nd.Registry, nd.Supervisor)
		}
		pid := nd.Process.PID
		// The status command's own session may take a moment to go.
		procs := srv.Processes()
		for deadline := time.Now().Add(5 * time.Second); len(procs) > 2 && time.Now().Before(deadline); procs = srv.Processes() {
			time.Sleep(50 * time.Millisecond)
		}
		if len(procs) != 2 {
			t.Errorf("the node runs %d processes, want 2 (the node dispatcher and its supervisor): %v", len(procs), srv.ProcessesLeft())
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		// The worker flags are passed on.
		if args := strings.Split(string(cmdline), "\x00"); len(args) < 6 || strings.Join(args[1:6], " ") != "node --node n1 --workers 2" ||
			!strings.Contains(string(cmdline), "\x00--grace\x005s\x00") || !strings.Contains(string(cmdline), "\x00--heartbeat=1s\x00") || !strings.Contains(string(cmdline), "\x00--delay=50ms\x00") {
			t.Errorf("the node process's command line: %q", args)
		}
		for _, id := range []string{"n1.1", "n1.2"} {
			w := findWorker(t, findNode(t, st, "n1"), id)
			if w.In != "n1.0" || w.Process == nil || !w.Process.Running || w.Process.PID != pid || w.Supervisor != nil ||
				w.Registry == nil || !w.Registry.Alive || w.Registry.PID != pid || w.Registry.Via != "n1.0" {
				t.Errorf("status of %s: in %q, process %+v, supervisor %+v, registry %+v", id, w.In, w.Process, w.Supervisor, w.Registry)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id IN ('n1.1', 'n1.2') AND via = 'n1.0' AND state = 'running'`); n != 2 {
			t.Errorf("%d of n1.0's workers in the registry, want 2", n)
		}
		text, _ := e.run("nodes", "status", "n1")
		for _, re := range []string{`\nn1\.0 +running +` + strconv.Itoa(pid) + ` .* running, alive .* pampa +0 `, `\nn1\.1 +running in n1\.0 +` + strconv.Itoa(pid) + ` .* running, alive`} {
			if !regexp.MustCompile(re).MatchString(text) {
				t.Errorf("status: no match for %s in\n%s", re, text)
			}
		}

		// Its workers process the tasks.
		e.waitFor(30*time.Second, "the first batch done by n1's workers", func() bool { return e.report().Completed == batch1 })
		if n := e.count(`SELECT COUNT(DISTINCT worker) FROM executions WHERE worker IN ('n1.1', 'n1.2')`); n != 2 {
			t.Errorf("%d of n1.0's workers ran tasks, want 2", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM executions WHERE worker NOT IN ('n1.1', 'n1.2')`); n != 0 {
			t.Errorf("%d tasks run by others than n1.0's workers", n)
		}

		// Killed, its supervisor starts it again: a new process, which
		// takes its ids and its workers' back at once.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.waitFor(20*time.Second, "n1.0 and its workers to come back", func() bool {
			n := findNode(t, e.status("n1"), "n1")
			nd = findWorker(t, n, "n1.0")
			if nd.Process == nil || !nd.Process.Running || nd.Process.PID == pid || nd.Registry == nil || !nd.Registry.Alive || nd.Registry.PID != nd.Process.PID {
				return false
			}
			for _, id := range []string{"n1.1", "n1.2"} {
				if w := findWorker(t, n, id); w.Process == nil || w.Process.PID != nd.Process.PID || w.Registry == nil || !w.Registry.Alive || w.Registry.PID != nd.Process.PID {
					return false
				}
			}
			return true
		})
		if sup := nd.Supervisor; sup == nil || !sup.Alive || sup.Restarts != 1 || sup.LastExit == nil || sup.LastExit.Signal != "SIGKILL" {
			t.Errorf("n1.0's supervisor after a kill: %+v", sup)
		}
		pid = nd.Process.PID

		// Workers of their own are refused beside it, by start and restart
		// alike, and it is left running.
		for _, cmd := range []string{"start", "restart"} {
			out, code := start(cmd, "n1")
			if code == 0 || !strings.Contains(out, fmt.Sprintf("n1: error: node n1 runs its node dispatcher n1.0 (pid %d)", pid)) || strings.Contains(out, "n1.1: started") {
				t.Errorf("%s n1 beside the node dispatcher: exit %d\n%s", cmd, code, out)
			}
			if cmd == "restart" && !strings.Contains(out, "n1.1: not running: has no process of its own: it runs in the node dispatcher n1.0 (pid ") {
				t.Errorf("restart n1 beside the node dispatcher says nothing of what n1.1 is:\n%s", out)
			}
		}
		if nd := findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.0"); nd.Process == nil || !nd.Process.Running || nd.Process.PID != pid {
			t.Errorf("n1.0 after the refused starts: %+v", nd.Process)
		}

		// Its log is the node's log, shown by default while it runs.
		if out := e.must("nodes", "logs", "n1"); !strings.Contains(out, `msg="node dispatcher started" component="node n1" node_dispatcher=n1.0 workers=2`) {
			t.Errorf("logs n1:\n%s", out)
		}
		if out := e.must("nodes", "logs", "n1", "--worker", "n1.0", "--out"); !strings.Contains(out, "pampa: starting node dispatcher n1.0") {
			t.Errorf("logs n1 --worker n1.0 --out:\n%s", out)
		}
		if out, code := e.run("nodes", "logs", "n1", "--worker", "n1.1"); code == 0 || !strings.Contains(out, "n1.1 runs in node n1's node dispatcher n1.0, whose log holds its lines: --worker n1.0") {
			t.Errorf("logs of a worker of the node dispatcher: exit %d\n%s", code, out)
		}

		// Restarted, it is a new process, registered with its workers.
		out = e.must(append([]string{"nodes", "restart", "n1", "--node-dispatcher"}, flags...)...)
		if !strings.Contains(out, fmt.Sprintf("n1.0: stopped, pid %d", pid)) || !strings.Contains(out, "n1.0: started and registered, pid ") ||
			!strings.Contains(out, "n1.0: its workers n1.1, n1.2 registered") || strings.Contains(out, "n1.1: not running") {
			t.Errorf("restart --node-dispatcher:\n%s", out)
		}
		nd = findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.0")
		if nd.Process == nil || !nd.Process.Running || nd.Process.PID == pid {
			t.Fatalf("n1.0 after restart: %+v", nd.Process)
		}
		pid = nd.Process.PID

		// Stopped while its workers hold tasks: gracefully, the tasks
		// handed back, nothing left running.
		e.addRows(batch1+1, batch2)
		e.waitFor(30*time.Second, "n1's workers to hold tasks of the second batch", func() bool {
			return e.count(fmt.Sprintf(`SELECT COUNT(*) FROM numbers WHERE value > %d AND odd_checking_reservation_id IN ('n1.1', 'n1.2') AND odd_checking_end_time IS NULL`, batch1)) > 0
		})
		out = e.must("nodes", "stop", "n1")
		if !strings.Contains(out, "n1.0: stopped its supervisor first (pampa, pid") || !strings.Contains(out, fmt.Sprintf("n1.0: stopped, pid %d, in ", pid)) ||
			!strings.Contains(out, "n1.2: not running: runs in the node dispatcher n1.0, stopped with it") || strings.Contains(out, "killed") {
			t.Errorf("stop n1:\n%s", out)
		}
		if procs := srv.ProcessesLeft(); len(procs) != 0 {
			t.Errorf("processes left after stop: %v", procs)
		}
		if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id IN ('n1.0', 'n1.1', 'n1.2') AND state = 'stopped'`); n != 3 {
			t.Errorf("%d of n1.0 and its workers stopped in the registry, want 3", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id LIKE 'n1.%' AND odd_checking_end_time IS NULL`); n != 0 {
			t.Errorf("%d tasks still held by the stopped node", n)
		}
		data, _ := os.ReadFile(filepath.Join(srv.Home, "pampa", "logs", "node.n1.log"))
		if !strings.Contains(string(data), "stopping") {
			t.Errorf("n1.0's log does not show a graceful stop:\n%s", data)
		}
		if nd := findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.0"); nd.Process == nil || nd.Process.Running || nd.Supervisor == nil || nd.Supervisor.State != "stopped" {
			t.Errorf("n1.0 after stop: process %+v, supervisor %+v", nd.Process, nd.Supervisor)
		}

		// Switched to workers of their own, which finish the job; the node
		// dispatcher is then refused beside them.
		out = e.must(append([]string{"nodes", "start", "n1"}, flags...)...)
		if !strings.Contains(out, "n1.1: started and registered") || !strings.Contains(out, "n1.2: started and registered") {
			t.Errorf("start n1 after the node dispatcher stopped:\n%s", out)
		}
		st = e.status("n1")
		w1, w2 := findWorker(t, findNode(t, st, "n1"), "n1.1"), findWorker(t, findNode(t, st, "n1"), "n1.2")
		if w1.In != "" || w1.Process == nil || !w1.Process.Running || w1.Process.PID == pid {
			t.Errorf("n1.1 as a process of its own: in %q, process %+v", w1.In, w1.Process)
		}
		out, code = start("start", "n1", "--node-dispatcher")
		want := fmt.Sprintf("n1: error: node n1 runs workers as processes of their own: n1.1 (pid %d), n1.2 (pid %d)", w1.Process.PID, w2.Process.PID)
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("start --node-dispatcher beside workers: exit %d, want %q in\n%s", code, want, out)
		}
		e.waitFor(60*time.Second, "the second batch done", func() bool { return e.report().Completed == batch2 })
		e.checkOutcome(batch2)
		e.must("nodes", "stop", "n1")
		if procs := srv.ProcessesLeft(); len(procs) != 0 {
			t.Errorf("processes left after stop: %v", procs)
		}
	})
}
