package cli

import (
	"encoding/json"
	"regexp"
	"strings"
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

// TestBenchScaleOnly runs the scale scenario alone (--tasks 0 skips the
// burn, --trickle 0 the trickle): the text output has its lines, the
// dashboard's pages and the scrape included, and none of the burn's.
func TestBenchScaleOnly(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCLI(t, nil, "bench", "--db", "sqlite", "--database-url", testdb.SQLitePath(t),
		"--tasks", "0", "--trickle", "0", "--workers", "2", "--scale-small", "300", "--scale-large", "0")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{`round / report, 300 rows +[0-9.]+ / [0-9.]+ ms`,
		`dashboard, 300 rows +/ [0-9.]+, /jobs/bench [0-9.]+, /jobs/bench\?state=pending [0-9.]+, /failed\?job=bench [0-9.]+, /api/overview [0-9.]+ ms`,
		`/metrics scrape, 300 rows +[0-9.]+ ms +\([0-9]+ bytes\)`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no %s in:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"burn", "peak RSS", "trickle"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("%q in:\n%s", unwanted, out)
		}
	}
}
