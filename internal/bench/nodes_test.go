package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/testdb"
)

// A burn under node dispatchers runs every task through the nodes'
// workers and reports the database's figures beside the burn's.
func TestRunNodes(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{pampa.DriverSQLite, pampa.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			url := testdb.SQLitePath(t)
			if driver == pampa.DriverPostgres {
				url = testdb.PostgresURL(t)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := Run(ctx, Config{Driver: driver, URL: url, Tasks: 400, Workers: 3, Nodes: 2, QueueSize: 5, Out: &out})
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			if r.Nodes != 2 || r.BurnTasksPerS <= 0 || r.BurnRounds == 0 || r.BurnCommitsPerS <= 0 || r.BurnReservedPerRound <= 0 {
				t.Errorf("figures: %+v", r)
			}
			if driver == pampa.DriverPostgres && r.BurnPgXactsPerS <= 0 {
				t.Errorf("no transactions counted at the database: %+v", r)
			}
			if !strings.Contains(out.String(), "6 workers as 2 nodes × 3") {
				t.Errorf("progress does not describe the nodes:\n%s", out.String())
			}
			// Every task was run by a worker of a node, not by its node
			// dispatcher.
			c, err := Cluster(driver, url, 3, JobSettings{QueueSize: 5})
			if err != nil {
				t.Fatal(err)
			}
			client, err := pampa.Connect(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var n int
			if err := client.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM bench_tasks WHERE ok = TRUE AND rid LIKE 'bench_.%' AND rid NOT LIKE '%.0'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 400 {
				t.Errorf("%d of 400 tasks recorded as run by a worker of a node", n)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Driver: pampa.DriverSQLite, URL: testdb.SQLitePath(t), Tasks: 10, Nodes: 2, Processes: true}); err == nil ||
		!strings.Contains(err.Error(), "nodes = 2 with processes") {
		t.Errorf("nodes with processes: err = %v", err)
	}
}
