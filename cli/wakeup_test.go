package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

// TestWakeUpsBetweenProcesses runs a dispatcher and a worker as separate
// processes that poll only once a minute, and hands them 30 tasks in
// queues of 5, inserted after the worker started: the dispatcher reserves
// each queue when the worker's ran dry, and the worker claims it when the
// dispatcher has reserved it, so the run takes at least six wake-ups each
// way. Polling alone would leave the first queue a minute before the
// worker's next look. On SQLite and CockroachDB the wake-ups go through
// the sockets beside the database (notify.Local), on PostgreSQL through
// pg_notify.
func TestWakeUpsBetweenProcesses(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{pampa.DriverSQLite, pampa.DriverCockroach, pampa.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			const rows, poll = 30, "60s"
			e := newProcEnv(t, driver, 0)
			// A temporary directory of the test's own, short enough for
			// sockets' paths: CockroachDB's processes meet there.
			tmp, err := os.MkdirTemp("/tmp", "pw")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tmp) })
			env := []string{"TMPDIR=" + tmp}
			w := e.start("worker", env, "worker", "--id", "local.1", "--delay", poll, "--heartbeat", "1s", "--log-dir", "logs")
			e.waitFor(30*time.Second, "the worker to register", func() bool {
				return e.count(`SELECT COUNT(*) FROM pampa_workers WHERE id = 'local.1'`) == 1
			})
			values := make([]string, rows)
			for i := range values {
				values[i] = fmt.Sprintf("(%d)", i+1)
			}
			e.exec(`INSERT INTO numbers (value) VALUES ` + strings.Join(values, ", "))
			d := e.start("dispatcher", env, "dispatcher", "--delay", poll, "--lease-ttl", "120s", "--log-dir", "logs")
			// Well under the poll: only wake-ups can do it in time.
			e.waitFor(20*time.Second, "every task done by wake-ups, the processes polling once a minute", func() bool {
				return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE`) == rows
			})
			// The two processes meet in one directory: beside the SQLite
			// file, in the temporary directory for CockroachDB; PostgreSQL
			// needs none.
			signalDirs := func() []string {
				dirs, _ := filepath.Glob(filepath.Join(tmp, "pampa-signals-*"))
				beside, _ := filepath.Glob(filepath.Join(e.dir, "*.pampa-signals"))
				return append(dirs, beside...)
			}
			dirs := signalDirs()
			want := map[string]int{pampa.DriverSQLite: 1, pampa.DriverCockroach: 1, pampa.DriverPostgres: 0}[driver]
			if len(dirs) != want {
				t.Fatalf("signals directories %v, want %d", dirs, want)
			}
			for _, dir := range dirs {
				if socks, err := os.ReadDir(dir); err != nil || len(socks) != 2 {
					t.Errorf("signals directory %s: %v, %v; want the two processes' sockets", dir, socks, err)
				}
			}
			w.stop(t)
			d.stop(t)
			e.checkOutcome(rows)
			// Each removed its socket on its way out, the last one the
			// directory.
			if dirs := signalDirs(); len(dirs) != 0 {
				t.Errorf("signals directories left after the processes stopped: %v", dirs)
			}
		})
	}
}
