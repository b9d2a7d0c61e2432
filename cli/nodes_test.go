package cli

// `pampa nodes` end to end: two real OpenSSH servers on loopback addresses
// stand in for two machines, each with its own host key, user and port.
// The CLI deploys this test binary to them as the Pampa program, starts
// their workers, and a dispatcher running here hands them tasks from a
// PostgreSQL table.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/dashboard"
	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

// nodesEnv is a procEnv whose config defines SSH nodes.
type nodesEnv struct {
	*procEnv
	secrets []string // environment of every CLI run: the nodes' secrets
	dbPart  string   // the config's database section
	jobPart string   // and its jobs section
}

func newNodesEnv(t *testing.T, rows int) *nodesEnv {
	return newNodesEnvOn(t, pampa.DriverPostgres, rows)
}

// newNodesEnvOn is a nodesEnv on either database. A SQLite file is shared
// with the nodes' users by shareSQLite.
func newNodesEnvOn(t *testing.T, driver string, rows int) *nodesEnv {
	e := &nodesEnv{procEnv: newProcEnv(t, driver, rows)}
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, "nodes:\n"), strings.Index(s, "jobs:\n")
	if i < 0 || j < i {
		t.Fatalf("unexpected config layout:\n%s", s)
	}
	e.dbPart, e.jobPart = s[:i], s[j:]
	return e
}

// shareSQLite lets the node's user, who runs the node's processes, open
// the SQLite database: it gets the directory and the files in it, and may
// pass through the directories above. (SQLite run as root, as here, gives
// the -wal and -shm files it makes the owner of the database file.)
func (e *nodesEnv) shareSQLite(srv *nodestest.Server) {
	e.t.Helper()
	if e.driver != pampa.DriverSQLite {
		return
	}
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range append([]string{e.dir}, func() (names []string) {
		for _, en := range entries {
			names = append(names, filepath.Join(e.dir, en.Name()))
		}
		return names
	}()...) {
		if err := os.Chown(f, srv.UID, -1); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Dir(e.dir), 0o711); err != nil {
		e.t.Fatal(err)
	}
}

// writeConfig rewrites the config file with these nodes (YAML list items).
func (e *nodesEnv) writeConfig(nodes ...string) {
	e.t.Helper()
	doc := e.dbPart + "nodes:\n" + strings.Join(nodes, "") + e.jobPart
	if err := os.WriteFile(e.config, []byte(doc), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// addRows enqueues tasks from..to (a plain INSERT, as an application
// would).
func (e *nodesEnv) addRows(from, to int) {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("INSERT INTO numbers (value) VALUES ")
	for v := from; v <= to; v++ {
		if v > from {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "(%d)", v)
	}
	e.exec(b.String())
}

// run runs a CLI command to its end, with the secrets in its environment.
func (e *nodesEnv) run(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := e.command(args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Env = append(append(os.Environ(), envTestProgram+"=1", "PAMPA_TEST_DRIVER="+e.driver), e.secrets...)
	cmd.Dir = e.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		e.t.Fatalf("%v: %v", args, err)
	}
	return string(out), 0
}

// must runs a command that must succeed.
func (e *nodesEnv) must(args ...string) string {
	e.t.Helper()
	out, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func (e *nodesEnv) status(names ...string) statusJSON {
	e.t.Helper()
	st, _ := e.statusRaw(names...)
	return st
}

// statusRaw is status, with the JSON as printed.
func (e *nodesEnv) statusRaw(names ...string) (statusJSON, string) {
	e.t.Helper()
	out := e.must(append([]string{"nodes", "status", "--json", "--sample", "100ms"}, names...)...)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st, out
}

func findNode(t *testing.T, st statusJSON, name string) *nodeStatusJSON {
	t.Helper()
	for _, n := range st.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("node %s missing from status", name)
	return nil
}

func findWorker(t *testing.T, n *nodeStatusJSON, id string) workerStatusJSON {
	t.Helper()
	for _, w := range n.Workers {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("worker %s missing from status of %s", id, n.Name)
	return workerStatusJSON{}
}

func nodeYAML(name string, s *nodestest.Server, knownHosts, auth string) string {
	return fmt.Sprintf(`  - name: %s
    net_remote_ip: %s
    ssh_port: %d
    ssh_username: %s
    ssh_known_hosts_file: %s
%s    max_workers: 2
    max_ram: 1024
    max_cpu: 80
`, name, s.IP, s.Port, s.User, knownHosts, auth)
}

// closedPort returns a port nothing listens on at ip.
func closedPort(t *testing.T, ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestNodesEndToEnd(t *testing.T) {
	t.Parallel()
	// Tasks come in batches, one per phase, so that each phase has work
	// whatever the machine's speed: n1 alone, n1 and n2, n1 and n2 while
	// n1.1 is killed, n2 alone, n1 alone again once n2 has vanished.
	const batch1, batch2, batchKill, batch3, batch4 = 200, 400, 700, 900, 1100
	e := newNodesEnv(t, batch1)
	n1 := nodestest.Start(t, nodestest.Options{IP: "127.0.0.2"})
	n2 := nodestest.Start(t, nodestest.Options{IP: "127.0.0.3", Passphrase: "n2-key-passphrase"})
	knownHosts := filepath.Join(e.dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(n1.KnownHostsLine()+"\n"+n2.KnownHostsLine()+"\n"), 0o600)
	// A known_hosts file that vouches n2's key for n1's address: n1 is then
	// an impostor.
	wrongHosts := filepath.Join(e.dir, "wrong_known_hosts")
	os.WriteFile(wrongHosts, []byte(strings.Replace(n2.KnownHostsLine(), n2.IP+"]:"+strconv.Itoa(n2.Port), n1.IP+"]:"+strconv.Itoa(n1.Port), 1)+"\n"), 0o600)
	const wrongPassword = "wrong-Pa55word"
	e.secrets = []string{"NODE1_PASSWORD=" + n1.Password, "NODE2_PASSPHRASE=n2-key-passphrase", "BAD_PASSWORD=" + wrongPassword}

	node1 := nodeYAML("n1", n1, knownHosts, "    ssh_password_env: NODE1_PASSWORD\n")
	node2 := nodeYAML("n2", n2, knownHosts, "    ssh_private_key_file: "+n2.KeyFile+"\n    ssh_private_key_passphrase_env: NODE2_PASSPHRASE\n")
	gone := fmt.Sprintf("  - name: gone\n    net_remote_ip: 127.0.0.4\n    ssh_port: %d\n    ssh_username: nobody\n    ssh_password: x\n    ssh_known_hosts_file: %s\n    max_workers: 1\n", closedPort(t, "127.0.0.4"), knownHosts)
	wrongPw := nodeYAML("wrongpw", n1, knownHosts, "    ssh_password_env: BAD_PASSWORD\n")
	impostor := nodeYAML("impostor", n1, wrongHosts, "    ssh_password_env: NODE1_PASSWORD\n")
	e.writeConfig(node1, gone, wrongPw, impostor)

	deployEnv := []string{"--env", envTestProgram + "=1", "--env", "PAMPA_TEST_DRIVER=postgres", "--env", "PAMPA_TEST_SLEEP=40ms"}
	startFlags := []string{"--heartbeat", "1s", "--delay", "50ms", "--grace", "5s", "--settle", "500ms",
		"--restart-delay", "100ms", "--restart-max-delay", "400ms", "--restart-limit", "3"}

	// Deploy to n1, run a dispatcher here, start n1's workers.
	out := e.must(append([]string{"nodes", "deploy", "n1"}, deployEnv...)...)
	if !strings.Contains(out, "n1: release ") || !strings.Contains(out, "leaves out 1 ssh_password") || strings.Contains(out, n1.Password) {
		t.Errorf("deploy n1:\n%s", out)
	}
	if deployed, err := os.ReadFile(filepath.Join(n1.Home, "pampa", "current", "pampa.yaml")); err != nil || strings.Contains(string(deployed), "ssh_password:") || !strings.Contains(string(deployed), "search_odd_numbers") {
		t.Errorf("the config on n1 (%v):\n%s", err, deployed)
	}
	e.start("dispatcher", nil, fastDispatcherArgs...)
	out = e.must(append([]string{"nodes", "start", "n1"}, startFlags...)...)
	for _, want := range []string{"n1.1: started and registered, pid", "n1.2: started and registered, pid", "limit ram 1024 MiB: applied (RLIMIT_DATA", "limit cpu 80% of a CPU: NOT applied",
		", supervised by pampa\n", "n1: supervisor pampa, one per worker: restart after 100ms doubling to 400ms, give up after 3 restarts within 1m0s; after a reboot, run `nodes start` again (systemd is not used: PID 1 is not systemd"} {
		if !strings.Contains(out, want) {
			t.Errorf("start n1: no %q in\n%s", want, out)
		}
	}
	e.waitFor(30*time.Second, "n1's workers to process tasks", func() bool {
		return e.count(`SELECT COUNT(DISTINCT worker) FROM executions WHERE worker LIKE 'n1.%'`) == 2
	})

	// Status: n1 reachable with its workers running and alive; the other
	// nodes unreachable, each with its reason.
	st, raw := e.statusRaw()
	if strings.Contains(raw, wrongPassword) || strings.Contains(raw, n1.Password) {
		t.Errorf("a secret leaked into status --json:\n%s", raw)
	}
	s1 := findNode(t, st, "n1")
	if !s1.Reachable || s1.Release == nil || s1.Usage == nil || s1.Usage.CPUs < 1 || s1.Usage.RAMTotal == 0 || s1.Usage.DiskTotal == 0 {
		t.Errorf("status of n1: %+v", s1)
	}
	pids := map[string]int{}
	for _, id := range []string{"n1.1", "n1.2"} {
		w := findWorker(t, s1, id)
		if w.Process == nil || !w.Process.Running || w.Registry == nil || !w.Registry.Alive || w.Registry.PID != w.Process.PID {
			t.Fatalf("status of %s: process %+v, registry %+v", id, w.Process, w.Registry)
		}
		pids[id] = w.Process.PID
		// The RAM limit start reported applied is in force.
		limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", w.Process.PID))
		if !strings.Contains(string(limits), fmt.Sprintf("Max data size             %d", 1024<<20)) {
			t.Errorf("%s's limits:\n%s", id, limits)
		}
	}
	for name, why := range map[string]string{"gone": "refused", "wrongpw": "authenticate", "impostor": "host key verification failed"} {
		if n := findNode(t, st, name); n.Reachable || !strings.Contains(n.Error, why) {
			t.Errorf("status of %s: reachable %v, error %q; want unreachable: %s", name, n.Reachable, n.Error, why)
		}
	}
	text, _ := e.run("nodes", "status")
	if !strings.Contains(text, "n1.1") || !strings.Contains(text, "running, alive") || !strings.Contains(text, "gone: connect: unreachable: 127.0.0.4") {
		t.Errorf("status:\n%s", text)
	}
	// The dashboard's Nodes page reads the same, on request.
	const token = "dashboard-token-0123456789"
	dash, base := startDashboard(t, e.procEnv, append([]string{"PAMPA_DASHBOARD_READ_TOKEN=" + token}, e.secrets...))
	if code, body := dashboardRequest(t, http.MethodGet, base+"/api/nodes", token); code != http.StatusOK || !strings.Contains(body, `"checked_at": null`) {
		t.Errorf("the dashboard read the nodes before being asked: %d %s", code, body)
	}
	status, body := dashboardRequest(t, http.MethodPost, base+"/api/nodes/refresh", token)
	var page dashboard.NodesPage
	if err := json.Unmarshal([]byte(body), &page); status != http.StatusOK || err != nil || len(page.Nodes) != 4 {
		t.Fatalf("refresh the dashboard's nodes: %d %v %s", status, err, body)
	}
	for _, n := range page.Nodes {
		switch n.Name {
		case "n1":
			if !n.Reachable || n.Release == "" || n.CPU < 0 || n.Memory <= 0 || len(n.Workers) != 2 ||
				n.Workers[0].Process != "running" || n.Workers[0].State != "running" || !strings.HasPrefix(n.Workers[0].Supervisor, "pampa") {
				t.Errorf("the dashboard's n1: %+v", n)
			}
		case "gone":
			if n.Reachable || !strings.Contains(n.Error, "refused") {
				t.Errorf("the dashboard's gone: %+v", n)
			}
		}
	}
	if strings.Contains(body, n1.Password) || strings.Contains(body, wrongPassword) {
		t.Errorf("a secret leaked into the dashboard's nodes:\n%s", body)
	}
	dash.stop(t)

	// A drained worker says so in the status, and not once undrained.
	if out := e.must("drain", "n1.1"); !strings.Contains(out, "worker n1.1: drained") {
		t.Errorf("drain n1.1:\n%s", out)
	}
	if w := findWorker(t, findNode(t, e.status(), "n1"), "n1.1"); w.Registry == nil || !w.Registry.Drained || !w.Registry.Alive {
		t.Errorf("status of drained n1.1: registry %+v", w.Registry)
	}
	if text, _ := e.run("nodes", "status"); !strings.Contains(text, "running, alive, drained") {
		t.Errorf("status with n1.1 drained:\n%s", text)
	}
	e.must("undrain", "n1.1")
	if w := findWorker(t, findNode(t, e.status(), "n1"), "n1.1"); w.Registry == nil || w.Registry.Drained {
		t.Errorf("status of undrained n1.1: registry %+v", w.Registry)
	}
	if out, code := e.run("drain", "n9.1"); code != 1 || !strings.Contains(out, `worker "n9.1" is not registered`) {
		t.Errorf("drain of an unregistered worker: exit %d\n%s", code, out)
	}
	out, code := e.run("nodes", "start", "wrongpw")
	if code == 0 || !strings.Contains(out, "authenticate") || strings.Contains(out, wrongPassword) {
		t.Errorf("start on a node with a wrong password: exit %d\n%s", code, out)
	}

	// Join: add n2 to the config; the running dispatcher gives it tasks.
	e.writeConfig(node1, node2, gone, wrongPw, impostor)
	e.must(append([]string{"nodes", "deploy", "n2"}, deployEnv...)...)
	out = e.must(append([]string{"nodes", "start", "n2"}, startFlags...)...)
	if !strings.Contains(out, "n2.1: started and registered") || !strings.Contains(out, "n2.2: started and registered") {
		t.Errorf("start n2:\n%s", out)
	}
	e.addRows(batch1+1, batch2)
	e.waitFor(30*time.Second, "n2's workers to process tasks", func() bool {
		return e.count(`SELECT COUNT(DISTINCT worker) FROM executions WHERE worker LIKE 'n2.%'`) == 2
	})

	// A worker killed behind Pampa's back, in the middle of tasks, comes
	// back by itself: a new process, registered, processing tasks.
	e.addRows(batch2+1, batchKill)
	e.waitFor(30*time.Second, "n1.1 to hold tasks of the kill batch", func() bool {
		return e.count(fmt.Sprintf(`SELECT COUNT(*) FROM numbers WHERE value > %d AND odd_checking_reservation_id = 'n1.1' AND odd_checking_end_time IS NULL`, batch2)) > 0
	})
	killedAt := time.Now().UnixNano()
	if err := syscall.Kill(pids["n1.1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var back workerStatusJSON
	e.waitFor(15*time.Second, "n1.1 to come back and register", func() bool {
		back = findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.1")
		return back.Process != nil && back.Process.Running && back.Process.PID != pids["n1.1"] &&
			back.Registry != nil && back.Registry.Alive && back.Registry.PID == back.Process.PID
	})
	if sup := back.Supervisor; sup == nil || sup.Kind != "pampa" || !sup.Alive || sup.Restarts != 1 || sup.LastExit == nil || sup.LastExit.Signal != "SIGKILL" || sup.GaveUp {
		t.Errorf("n1.1's supervisor after a kill: %+v", sup)
	}
	e.waitFor(30*time.Second, "the restarted n1.1 to process tasks", func() bool {
		return e.count(fmt.Sprintf(`SELECT COUNT(*) FROM executions WHERE worker = 'n1.1' AND started_ns > %d`, killedAt)) > 0
	})
	if text, _ := e.run("nodes", "status", "n1"); !regexp.MustCompile(`n1\.1 .* pampa +1 +killed by SIGKILL, [0-9.]+m?s ago`).MatchString(text) {
		t.Errorf("status after n1.1 came back:\n%s", text)
	}

	// Killed again and again: past --restart-limit, its supervisor gives
	// up, and status says so.
	pids["n1.1"] = back.Process.PID
	for restarts := 2; restarts <= 4; restarts++ {
		if err := syscall.Kill(pids["n1.1"], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.waitFor(15*time.Second, fmt.Sprintf("n1.1's supervisor to act on kill %d", restarts), func() bool {
			back = findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.1")
			if restarts == 4 {
				return back.Supervisor != nil && !back.Supervisor.Alive
			}
			return back.Process.Running && back.Process.PID != pids["n1.1"] && back.Supervisor.Restarts == restarts
		})
		pids["n1.1"] = back.Process.PID
	}
	st, raw = e.statusRaw("n1")
	if w := findWorker(t, findNode(t, st, "n1"), "n1.1"); w.Process.Running || w.Supervisor.Restarts != 3 || !w.Supervisor.GaveUp ||
		w.Supervisor.State != "gave-up" || !strings.Contains(w.Supervisor.Reason, "crash loop: restarted 3 times within 1m0s, and it ended again (killed by SIGKILL)") ||
		!strings.Contains(raw, `"gave_up": true`) {
		t.Errorf("n1.1 past the crash-loop limit: process %+v, supervisor %+v", w.Process, w.Supervisor)
	}
	text, _ = e.run("nodes", "status", "n1")
	if !regexp.MustCompile(`n1\.1 +not running: .* pampa, GAVE UP +3 +killed by SIGKILL`).MatchString(text) ||
		!strings.Contains(text, "\nn1.1: supervisor: gave up: crash loop: restarted 3 times") {
		t.Errorf("status after the crash loop:\n%s", text)
	}
	if out, err := os.ReadFile(filepath.Join(n1.Home, "pampa", "logs", "worker.n1.1.out")); err != nil || !strings.Contains(string(out), "pampa supervisor: GAVE UP on worker n1.1: crash loop") {
		t.Errorf("n1.1's .out file (%v):\n%s", err, out)
	}
	// A start starts it afresh, and leaves the other alone.
	out = e.must(append([]string{"nodes", "start", "n1"}, startFlags...)...)
	if !strings.Contains(out, "n1.1: started and registered") || !strings.Contains(out, fmt.Sprintf("n1.2: already running, pid %d, supervised by pampa", pids["n1.2"])) {
		t.Errorf("start n1 after n1.1's supervisor gave up:\n%s", out)
	}

	// Logs.
	out = e.must("nodes", "logs", "n2", "--worker", "n2.1", "-n", "5")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) > 5 || !strings.Contains(out, `msg="worker started" component="worker n2.1"`) {
		t.Errorf("logs n2 --worker n2.1 -n 5:\n%s", out)
	}

	// Leave: while n1's workers hold tasks, stop n1; the tasks are handed
	// back and n2 finishes the job.
	e.addRows(batchKill+1, batch3)
	e.waitFor(30*time.Second, "n1's workers to hold tasks of the last batch", func() bool {
		return e.count(fmt.Sprintf(`SELECT COUNT(DISTINCT odd_checking_reservation_id) FROM numbers
			WHERE value > %d AND odd_checking_reservation_id LIKE 'n1.%%' AND odd_checking_end_time IS NULL`, batchKill)) == 2
	})
	out = e.must("nodes", "stop", "n1")
	if !strings.Contains(out, "n1.1: stopped its supervisor first (pampa, pid") || !strings.Contains(out, "n1.1: stopped, pid") || !strings.Contains(out, "n1.2: stopped, pid") {
		t.Errorf("stop n1:\n%s", out)
	}
	// Stopped, it stays stopped: no supervisor is left to start it again.
	if procs := n1.ProcessesLeft(); len(procs) != 0 {
		t.Errorf("processes of %s left after stop: %v", n1.User, procs)
	}
	time.Sleep(time.Second) // over twice --restart-max-delay
	if procs := n1.Processes(); len(procs) != 0 {
		t.Errorf("processes of %s started after stop: %v", n1.User, procs)
	}
	if w := findWorker(t, findNode(t, e.status("n1"), "n1"), "n1.1"); w.Process.Running || w.Supervisor == nil || w.Supervisor.Alive || w.Supervisor.State != "stopped" {
		t.Errorf("n1.1 after stop: process %+v, supervisor %+v", w.Process, w.Supervisor)
	}
	if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id LIKE 'n1.%' AND state = 'stopped'`); n != 2 {
		t.Errorf("n1's workers stopped in the registry: %d, want 2", n)
	}
	if n := e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_reservation_id LIKE 'n1.%' AND odd_checking_end_time IS NULL`); n != 0 {
		t.Errorf("%d tasks still held by n1's stopped workers", n)
	}
	if out := e.must("nodes", "stop", "n1"); !strings.Contains(out, "n1.1: not running: no pid file") {
		t.Errorf("stopping n1 again:\n%s", out)
	}
	before := e.count(`SELECT COUNT(*) FROM executions WHERE worker LIKE 'n1.%'`)
	e.waitFor(60*time.Second, "the third batch done", func() bool { return e.report().Completed == batch3 })
	if after := e.count(`SELECT COUNT(*) FROM executions WHERE worker LIKE 'n1.%'`); after != before {
		t.Errorf("n1's workers ran %d tasks after they were stopped", after-before)
	}

	// The machine vanishing: n2 goes away while its workers hold tasks;
	// n1, started again (restart starts stopped workers), finishes them
	// once the dispatcher has declared n2's workers dead.
	out = e.must(append([]string{"nodes", "restart", "n1"}, startFlags...)...)
	if !strings.Contains(out, "n1.1: not running: no pid file") || !strings.Contains(out, "n1.1: started and registered") {
		t.Errorf("restart n1:\n%s", out)
	}
	e.addRows(batch3+1, batch4)
	e.waitFor(30*time.Second, "n2's workers to hold tasks of the last batch", func() bool {
		return e.count(fmt.Sprintf(`SELECT COUNT(DISTINCT odd_checking_reservation_id) FROM numbers
			WHERE value > %d AND odd_checking_reservation_id LIKE 'n2.%%' AND odd_checking_end_time IS NULL`, batch3)) == 2
	})
	n2.Vanish()
	if n := findNode(t, e.status("n2"), "n2"); n.Reachable || !strings.Contains(n.Error, "refused") {
		t.Errorf("status of the vanished n2: %+v", n)
	}
	const rows = batch4
	e.waitFor(60*time.Second, "all tasks done", func() bool { return e.report().Completed == rows })
	e.checkOutcome(rows)
	if r := e.report(); r.Failed != 0 || r.Pending != 0 || r.Reserved != 0 || r.Running != 0 {
		t.Errorf("report at the end: %+v", r)
	}
	if n := e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id LIKE 'n2.%' AND state = 'dead'`); n != 2 {
		t.Errorf("n2's workers dead in the registry: %d, want 2", n)
	}
	var stopped []struct {
		Node    string `json:"node"`
		Error   string `json:"error"`
		Workers []struct {
			ID         string `json:"id"`
			WasRunning bool   `json:"was_running"`
			TookMS     int64  `json:"took_ms"`
		} `json:"workers"`
	}
	out = e.must("nodes", "stop", "n1", "--json")
	if err := json.Unmarshal([]byte(out), &stopped); err != nil || len(stopped) != 1 || len(stopped[0].Workers) != 2 ||
		!stopped[0].Workers[0].WasRunning || stopped[0].Workers[0].TookMS == 0 {
		t.Errorf("stop --json: %v\n%s", err, out)
	}
	if procs := n1.ProcessesLeft(); len(procs) != 0 {
		t.Errorf("processes of %s left after stop: %v", n1.User, procs)
	}
}

func TestNodesWithoutPasswords(t *testing.T) {
	doc := []byte(`x-defaults: &d
  ssh_username: me
  ssh_password: secret-one
nodes:
  - <<: *d
    name: a
    max_workers: 1
  - name: b
    ssh_password: secret-two # a comment
    max_workers: 2
`)
	out, n, err := withoutPasswords(doc)
	if err != nil || n != 2 || strings.Contains(string(out), "secret") {
		t.Fatalf("withoutPasswords: %d, %v\n%s", n, err, out)
	}
	c, err := pampa.ParseConfig(out, "stripped")
	if err != nil || len(c.Nodes()) != 2 || c.Node("a").User != "me" {
		t.Fatalf("the stripped config: %v", err)
	}
	plain := []byte("nodes:\n  - name: a\n    max_workers: 1 # kept as is\n")
	if out, n, err := withoutPasswords(plain); err != nil || n != 0 || string(out) != string(plain) {
		t.Errorf("a config without passwords changed: %q", out)
	}
}

func TestNodesTargetSecrets(t *testing.T) {
	n := &pampa.Node{Name: "a", Host: "h", Port: 22, User: "u", PasswordEnv: "PAMPA_TEST_NODE_PW", KeyFile: "~/k",
		KeyPassphraseEnv: "PAMPA_TEST_NODE_PP", MaxWorkers: 1}
	_, err := targetOf(n)
	if err == nil || !strings.Contains(err.Error(), "PAMPA_TEST_NODE_PW") || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("missing env var: %v", err)
	}
	t.Setenv("PAMPA_TEST_NODE_PW", "pw-value-1")
	t.Setenv("PAMPA_TEST_NODE_PP", "pp-value-2")
	tg, err := targetOf(n)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if tg.Password != "pw-value-1" || tg.KeyPassphrase != "pp-value-2" || tg.PasswordFrom != "$PAMPA_TEST_NODE_PW" ||
		tg.KeyFile != filepath.Join(home, "k") || tg.KnownHostsFile != filepath.Join(home, ".ssh", "known_hosts") {
		t.Errorf("target: %+v", tg)
	}
	if s := fmt.Sprintf("%+v", tg); strings.Contains(s, "pw-value") || strings.Contains(s, "pp-value") {
		t.Errorf("a secret prints: %s", s)
	}
}

func TestNodesStartBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"start", "--supervisor", "init"}, `--supervisor "init": want auto, systemd or pampa`},
		{[]string{"restart", "--restart-limit", "0"}, "--restart-limit >= 1 (got 0)"},
		{[]string{"start", "--restart-delay", "2s", "--restart-max-delay", "1s"}, "--restart-max-delay >= it (got 1s)"},
		{[]string{"start", "--restart-window", "0s"}, "--restart-window > 0 (got 0s)"},
		{[]string{"start", "--node-dispatcher", "--worker", "n1.2"}, "--worker n1.2 with --node-dispatcher: the node dispatcher runs all the node's workers in its one process"},
		{[]string{"restart", "n1", "--worker", "n1.1", "--node-dispatcher"}, "--worker n1.1 with --node-dispatcher"},
	} {
		out, errOut, code := runCLI(t, nil, append([]string{"nodes"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.says) {
			t.Errorf("nodes %v: exit %d, %s%s; want 2 and %q", tc.args, code, out, errOut, tc.says)
		}
	}
}
