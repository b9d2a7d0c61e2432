package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pampa-go/pampa"
)

// `pampa run --nodes 1` runs the node's workers under a node dispatcher:
// every task is done, each recorded as run by a worker of the node, and
// the node dispatcher has a log of its own.
func TestRunWithNodeDispatcher(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	if _, errOut, code := runCLI(t, nil, "setup", "--config", config); code != 0 {
		t.Fatalf("setup: exit %d: %s", code, errOut)
	}
	prog := &Program{Handlers: map[string]pampa.ProcessFunc{
		"search_odd_numbers": func(ctx context.Context, t *pampa.Task) error {
			v, err := t.Int64("value")
			t.Set("is_odd", v%2 == 1)
			return err
		},
	}}
	logDir := t.TempDir()
	out, errOut, code := runCLI(t, prog, "run", "--config", config, "--nodes", "1", "--workers", "2", "delay=0.05", "--until-done", "--log-dir", logDir, "--progress=false")
	if code != 0 {
		t.Fatalf("run --nodes 1: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(logDir, "node.local.log")); err != nil {
		t.Errorf("node dispatcher's log: %v", err)
	}
	c, err := pampa.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var done, byWorkers int
	if err := client.DB().QueryRow(`SELECT COUNT(*), SUM(CASE WHEN rid IN ('local.1', 'local.2') THEN 1 ELSE 0 END) FROM numbers WHERE ok = TRUE`).Scan(&done, &byWorkers); err != nil {
		t.Fatal(err)
	}
	if done != 5 || byWorkers != 5 {
		t.Fatalf("%d tasks done, %d of them recorded as run by local.1 or local.2; want 5 and 5", done, byWorkers)
	}
	ws, err := client.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var node *pampa.WorkerStatus
	for i := range ws {
		if ws[i].ID == "local.0" {
			node = &ws[i]
		}
	}
	if node == nil || node.Members != 2 || node.State != "stopped" {
		t.Fatalf("registry: node dispatcher's entry %+v in %+v", node, ws)
	}
}

func TestNodeUsageErrors(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", config, "--nodes", "3"}, "--nodes 3: the config defines 1 nodes"},
		{[]string{"run", "--config", config, "--nodes", "1", "--workers", "9"}, `--workers 9: node "local" has max_workers = 2`},
		{[]string{"run", "--config", config, "--nodes", "2", "--node", "local"}, "--node names one node"},
		{[]string{"node", "--config", config}, "--node is required"},
		{[]string{"node", "--config", config, "--node", "elsewhere"}, `--node "elsewhere": no such node`},
	} {
		_, errOut, code := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
}
