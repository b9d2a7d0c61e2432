package cli

import (
	"encoding/json"
	"testing"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/testdb"
)

// TestBenchProcesses runs `pampa bench --processes`: the burn's workers are
// this test binary started again as `bench-worker` processes, woken across
// processes (pg_notify on PostgreSQL, polling on SQLite); the figures
// include their peak memory.
func TestBenchProcesses(t *testing.T) {
	// The worker processes are this binary: TestMain runs the CLI in them.
	t.Setenv(envTestProgram, "1")
	for _, driver := range []string{pampa.DriverSQLite, pampa.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			url := testdb.SQLitePath(t)
			if driver == pampa.DriverPostgres {
				url = testdb.PostgresURL(t)
			}
			out, errOut, code := runCLI(t, nil, "bench", "--db", driver, "--database-url", url, "--processes",
				"--tasks", "400", "--workers", "3", "--queue-size", "20",
				"--trickle", "0", "--scale-small", "0", "--scale-large", "0", "--json")
			if code != 0 {
				t.Fatalf("bench --processes: exit %d\n%s%s", code, out, errOut)
			}
			var r struct {
				Processes     bool    `json:"processes"`
				Workers       int     `json:"workers"`
				BurnTasksPerS float64 `json:"burn_tasks_per_s"`
				WorkerRSSMB   float64 `json:"worker_rss_mb"`
				DispatcherMB  float64 `json:"dispatcher_rss_mb"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("bench --json output %q: %v", out, err)
			}
			if !r.Processes || r.Workers != 3 || r.BurnTasksPerS <= 0 {
				t.Errorf("bench --processes figures: %+v", r)
			}
			if r.WorkerRSSMB <= 0 || r.DispatcherMB <= 0 {
				t.Errorf("peak RSS: worker %.1f MB, dispatcher %.1f MB", r.WorkerRSSMB, r.DispatcherMB)
			}
		})
	}
}
