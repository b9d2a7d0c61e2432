package cli

// `pampa nodes deploy` with release files, against a real OpenSSH server:
// the files of the node and of the jobs its workers may serve, taken from
// the config file's directory and found beside the deployed pampa.yaml;
// every file checked before anything is uploaded.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

// deployFilesConfig is a config with node n1 and two jobs: odd (any
// worker) and only_n9 (workers of a node n9, which is not n1).
func deployFilesConfig(srv *nodestest.Server, knownHosts, nodeFiles, oddFiles string) string {
	job := func(name, filter, files string) string {
		return fmt.Sprintf(`  - name: %s
    table: numbers
    field_primary_key: value
    field_id: rid
    field_time: rtime
    field_times: rtimes
    field_start_time: stime
    field_end_time: etime
    field_success: ok
    field_error_description: err
    filter_worker_id: '%s'
    files: %s
`, name, filter, files)
	}
	return fmt.Sprintf(`database:
  url: pampa.db
nodes:
  - name: n1
    net_remote_ip: %s
    ssh_port: %d
    ssh_username: %s
    ssh_password: %s
    ssh_known_hosts_file: %s
    max_workers: 2
    files: %s
jobs:
`, srv.IP, srv.Port, srv.User, srv.Password, knownHosts, nodeFiles) +
		job("odd", ".*", oddFiles) + job("only_n9", `^n9\.`, "[n9/missing.txt]")
}

func TestNodesDeployFiles(t *testing.T) {
	t.Parallel()
	srv := nodestest.Start(t, nodestest.Options{IP: "127.0.0.2"})
	dir := t.TempDir()
	knownHosts := srv.WriteKnownHosts(t)
	for name, mode := range map[string]os.FileMode{"odd.py": 0o644, "scripts/run.sh": 0o755, "certs/ca.pem": 0o600} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("content of "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	config := filepath.Join(dir, "pampa.yaml")
	write := func(nodeFiles, oddFiles string) {
		t.Helper()
		doc := deployFilesConfig(srv, knownHosts, nodeFiles, oddFiles)
		if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nodeDir := filepath.Join(srv.Home, "pampa")
	// Run from elsewhere: paths are the config's, not the working
	// directory's.
	deploy := func() (string, string, int) {
		t.Helper()
		return runCLI(t, nil, "nodes", "deploy", "--config", config)
	}

	// A missing file, of the job or of the node: an error naming which,
	// the field and the path, and nothing uploaded.
	for _, tt := range []struct {
		nodeFiles, oddFiles, want string
	}{
		{"[certs/]", "[odd.py, scripts/missing.py]", `job "odd": files = "scripts/missing.py": ` + filepath.Join(dir, "scripts", "missing.py") + " does not exist"},
		{"[certs/ca.pem, certs/gone.pem]", "[odd.py]", `node "n1": files = "certs/gone.pem": ` + filepath.Join(dir, "certs", "gone.pem") + " does not exist"},
		{"[pampa.yaml]", "[odd.py]", "release file pampa.yaml: pampa.yaml is the release's config"},
	} {
		write(tt.nodeFiles, tt.oddFiles)
		out, errOut, code := deploy()
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("deploy with %s and %s: exit %d, stdout %q, stderr %q; want %q", tt.nodeFiles, tt.oddFiles, code, out, errOut, tt.want)
		}
		if _, err := os.Stat(nodeDir); !os.IsNotExist(err) {
			t.Fatalf("the node directory exists after a refused deploy: %v", err)
		}
	}

	// The node's files and odd's, not only_n9's (whose file is missing:
	// n1's workers never serve it).
	write("[certs/]", "[odd.py, ./scripts/run.sh]")
	out, errOut, code := deploy()
	if code != 0 || !strings.Contains(out, "n1: release ") {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errOut)
	}
	current := filepath.Join(nodeDir, "current")
	deployed, err := os.ReadFile(filepath.Join(current, "pampa.yaml"))
	if err != nil || strings.Contains(string(deployed), srv.Password) {
		t.Fatalf("deployed config: %v\n%s", err, deployed)
	}
	for name, mode := range map[string]os.FileMode{"odd.py": 0o644, "scripts/run.sh": 0o755, "certs/ca.pem": 0o600} {
		// Where a job's dir relative to the config would look for it.
		at := filepath.Join(filepath.Dir(filepath.Join(current, "pampa.yaml")), name)
		fi, err := os.Stat(at)
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s on the node: %v, %v; want mode %v", name, fi, err, mode)
			continue
		}
		if data, _ := os.ReadFile(at); string(data) != "content of "+name+"\n" {
			t.Errorf("%s on the node holds %q", name, data)
		}
	}
	if _, err := os.Stat(filepath.Join(current, "n9")); !os.IsNotExist(err) {
		t.Errorf("only_n9's files were shipped to n1: %v", err)
	}

	// A changed script is a new release, switched to.
	first, _ := os.Readlink(current)
	os.WriteFile(filepath.Join(dir, "odd.py"), []byte("changed\n"), 0o644)
	out, errOut, code = deploy()
	second, _ := os.Readlink(current)
	if code != 0 || second == first || !strings.Contains(out, "(was: "+filepath.Base(first)+")") {
		t.Fatalf("redeploy: exit %d, current %s (was %s)\n%s%s", code, second, first, out, errOut)
	}
	if data, _ := os.ReadFile(filepath.Join(current, "odd.py")); string(data) != "changed\n" {
		t.Errorf("odd.py after the redeploy: %q", data)
	}
}
