package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConnectRefusedOnce: a PostgreSQL server that refuses connections is
// named once, with its host and port and without the password, though pgx
// tries twice when sslmode is unset.
func TestConnectRefusedOnce(t *testing.T) {
	t.Parallel()
	port := closedPort(t, "127.0.0.1")
	config := filepath.Join(t.TempDir(), "pampa.yaml")
	doc := fmt.Sprintf("database: {driver: postgres, url: \"postgres://app:hunter2-secret@127.0.0.1:%d/app\"}\n", port)
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, nil, "report", "--config", config)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if code != 1 || strings.Count(errOut, "connection refused") != 1 || !strings.Contains(errOut, addr) || strings.Contains(errOut, "hunter2") {
		t.Errorf("report against a closed port: exit %d, stderr %q; want exit 1, %s and \"connection refused\" once, no password", code, errOut, addr)
	}
}
