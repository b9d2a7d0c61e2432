package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

// The stock binary on a node runs a job whose processing function is a
// script the job ships (files:): deployed beside the config, found there
// by exec, over a real OpenSSH server, with the database on this machine.
func TestNodesExecJob(t *testing.T) {
	t.Parallel()
	e := newNodesEnv(t, 120)
	script := "in=$(cat)\nv=$(printf '%s' \"$in\" | sed -n 's/.*\"value\":\\([0-9]*\\).*/\\1/p')\n" +
		"if [ $((v % 2)) = 1 ]; then echo '{\"is_odd\": true}'; else echo '{\"is_odd\": false}'; fi\n"
	if err := os.WriteFile(filepath.Join(e.dir, "odd.sh"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.jobPart = strings.TrimRight(e.jobPart, "\n") + "\n    exec: [./odd.sh]\n    files: [odd.sh]\n"
	n1 := nodestest.Start(t, nodestest.Options{IP: "127.0.0.2"})
	knownHosts := n1.WriteKnownHosts(t)
	// Every command here, and the workers on the node, run the stock
	// program: no Go processing function at all.
	e.secrets = []string{"NODE1_PASSWORD=" + n1.Password, envTestProgram + "=" + stockProgram}
	e.writeConfig(nodeYAML("n1", n1, knownHosts, "    ssh_password_env: NODE1_PASSWORD\n"))

	out := e.must("nodes", "deploy", "n1", "--env", envTestProgram+"="+stockProgram, "--env", "PAMPA_TEST_DRIVER=postgres")
	if !strings.Contains(out, "n1: release ") {
		t.Fatalf("deploy:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(n1.Home, "pampa", "current", "odd.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("odd.sh on the node: %v %v", fi, err)
	}
	e.start("dispatcher", []string{envTestProgram + "=" + stockProgram}, fastDispatcherArgs...)
	e.must("nodes", "start", "n1", "--heartbeat", "1s", "--delay", "50ms", "--grace", "5s", "--settle", "500ms")
	t.Cleanup(func() { e.run("nodes", "stop", "n1") })
	e.waitFor(60*time.Second, "the node's workers to run the script on every task", func() bool {
		return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE AND is_odd = (value % 2 = 1)`) == 120
	})
	if n := e.count(`SELECT COUNT(DISTINCT odd_checking_reservation_id) FROM numbers WHERE odd_checking_reservation_id LIKE 'n1.%'`); n == 0 {
		t.Error("no task was run by a worker of n1")
	}
}
