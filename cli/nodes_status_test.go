package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pampa-go/pampa"
)

// TestNodesStatusExitStatus: `nodes status --json` exits 1 when neither
// the database nor any node answers, and 0 when the database does though
// the node does not; the JSON is printed either way.
func TestNodesStatusExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	node := fmt.Sprintf(`nodes:
  - name: n1
    net_remote_ip: 127.0.0.1
    ssh_port: %d
    ssh_username: nobody
    ssh_password: x
    ssh_known_hosts_file: %s
    max_workers: 1
`, closedPort(t, "127.0.0.1"), filepath.Join(dir, "known_hosts"))
	write := func(name, database string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(database+node), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	status := func(config string) (statusJSON, string, int) {
		out, errOut, code := runCLI(t, nil, "nodes", "status", "--json", "--sample", "10ms", "--config", config)
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) != 1 || st.Nodes[0].Reachable {
			t.Fatalf("status --json: %v\n%s%s", err, out, errOut)
		}
		return st, errOut, code
	}

	nothing := write("nothing.yaml", fmt.Sprintf("database: {driver: postgres, url: \"postgres://app@127.0.0.1:%d/app\"}\n", closedPort(t, "127.0.0.1")))
	st, errOut, code := status(nothing)
	if code != 1 || st.RegistryError == "" || !strings.Contains(errOut, "nothing could be reached") {
		t.Errorf("nothing reachable: exit %d, registry error %q, stderr %q; want exit 1", code, st.RegistryError, errOut)
	}

	sqlite := writeSQLiteConfig(t) // a database that answers, with a registry
	if out, errOut, code := runCLI(t, nil, "setup", "--config", sqlite); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	c, err := pampa.LoadConfig(sqlite)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	data, err := os.ReadFile(sqlite)
	if err != nil {
		t.Fatal(err)
	}
	dbPart, _, _ := strings.Cut(string(data), "nodes:")
	st, errOut, code = status(write("db.yaml", dbPart))
	if code != 0 || st.RegistryError != "" {
		t.Errorf("database reachable, node not: exit %d, registry error %q, stderr %q; want exit 0", code, st.RegistryError, errOut)
	}
}
