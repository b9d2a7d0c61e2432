package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// TestRunSmall runs every scenario on a small scale and checks the
// figures are there and sane; the real figures come from `make bench`.
func TestRunSmall(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{pampa.DriverSQLite, pampa.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			url := testdb.SQLitePath(t)
			if driver == pampa.DriverPostgres {
				url = testdb.PostgresURL(t)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r, err := Run(ctx, Config{Driver: driver, URL: url, Tasks: 300, Workers: 3,
				TrickleEvery: 20 * time.Millisecond, TrickleFor: 400 * time.Millisecond,
				ScaleSmall: 1000, ScaleLarge: 2000, Rounds: 20, ScaleLimits: true, Explain: true, Out: &out})
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			if r.BurnTasksPerS <= 0 || r.BurnSeconds <= 0 {
				t.Errorf("burn = %.1f tasks/s in %.2fs", r.BurnTasksPerS, r.BurnSeconds)
			}
			// 20 inserts are planned; a loaded machine may get fewer in.
			if r.TrickleRows < 3 || r.TrickleP50ms <= 0 || r.TrickleP99ms < r.TrickleP50ms {
				t.Errorf("trickle: %d rows, p50 %.2f ms, p99 %.2f ms", r.TrickleRows, r.TrickleP50ms, r.TrickleP99ms)
			}
			if r.RoundMsSmall <= 0 || r.RoundMsLarge <= 0 || r.ReportMsSmall <= 0 || r.ReportMsLarge <= 0 ||
				r.RoundP95Small < r.RoundMsSmall || r.RoundP95Large < r.RoundMsLarge || r.Rounds != 20 {
				t.Errorf("scale: %+v", r)
			}
			checkLimits(t, r)
			if r.WorkerRSSMB <= 0 || r.DispatcherRSSMB <= 0 {
				t.Errorf("RSS: worker %.1f MB, dispatcher %.1f MB", r.WorkerRSSMB, r.DispatcherRSSMB)
			}
			for size, pages := range map[string]map[string]float64{"small": r.DashboardMsSmall, "large": r.DashboardMsLarge} {
				for _, page := range DashboardPages {
					if pages[page] <= 0 {
						t.Errorf("dashboard, %s table: %s took %v ms (all: %v)", size, page, pages[page], pages)
					}
				}
			}
			if r.ScrapeMsSmall <= 0 || r.ScrapeMsLarge <= 0 || r.ScrapeBytesSmall < 1000 || r.ScrapeBytesLarge < 1000 {
				t.Errorf("scrape: %.2f / %.2f ms, %d / %d bytes", r.ScrapeMsSmall, r.ScrapeMsLarge, r.ScrapeBytesSmall, r.ScrapeBytesLarge)
			}
			checkFailed(t, ctx, driver, url)
			for _, rows := range []int{1000, 2000} {
				p, ok := r.Plans[rows]["reserve_shares"]
				if !ok || len(p.Indexes) == 0 || (driver == pampa.DriverPostgres) != (p.ExecMs > 0) {
					t.Errorf("plans of %d rows: %+v", rows, r.Plans[rows])
				}
			}
			if !strings.Contains(out.String(), "burn:") || !strings.Contains(out.String(), "scale:") ||
				!strings.Contains(out.String(), "explain: 2000 rows: claim") {
				t.Errorf("no progress lines:\n%s", out.String())
			}
		})
	}
}

// checkLimits checks the rounds with limits on: timed, handing out rows
// every round (3 workers with 20 slots: at most 60 free), and their
// statements explained, none reading the whole table.
func checkLimits(t *testing.T, r Result) {
	t.Helper()
	for size, l := range map[int]*LimitsFigures{1000: r.LimitsSmall, 2000: r.LimitsLarge} {
		if l == nil {
			t.Errorf("no rounds with limits for %d rows", size)
			continue
		}
		if l.GroupsMs <= 0 || l.GroupsP95ms < l.GroupsMs || l.RateMs <= 0 || l.RateP95ms < l.RateMs {
			t.Errorf("rounds with limits, %d rows: %+v", size, *l)
		}
		for _, n := range []float64{l.GroupsReserved, l.RateReserved} {
			if n <= 0 || n > 60 {
				t.Errorf("rounds with limits, %d rows, reserved %.1f a round: %+v", size, n, *l)
			}
		}
		var names []string
		for name, p := range r.Plans[size] {
			if !strings.HasPrefix(name, "limits.") {
				continue
			}
			names = append(names, name)
			if p.ScansTable || name == "limits.other" {
				t.Errorf("plans of %d rows: %s: %+v", size, name, p)
			}
		}
		for _, want := range []string{"limits.lock", "limits.inflight_by_group", "limits.window_job", "limits.window_groups",
			"limits.walk_groups", "limits.pick_rows", "limits.reserve_keys", "limits.record_starts", "limits.note"} {
			if !slices.Contains(names, want) {
				t.Errorf("plans of %d rows: no %s in %v", size, want, names)
			}
		}
	}
}

// checkFailed checks the last scale table (2,000 rows, 1,980 done): key
// 1000, the one multiple of failEvery among the done keys, failed for
// good, and no other row failed.
func checkFailed(t *testing.T, ctx context.Context, driver, url string) {
	t.Helper()
	c, err := Cluster(driver, url, 3, JobSettings{QueueSize: 250})
	if err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for state, want := range map[string]int{pampa.StateFailed: 1, pampa.StateRetrying: 0} {
		tasks, err := client.Tasks(ctx, Job, pampa.TaskFilter{State: state})
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) != want {
			t.Fatalf("%d %s tasks, want %d: %+v", len(tasks), state, want, tasks)
		}
		if want > 0 && (fmt.Sprint(tasks[0].Key) != "1000" || tasks[0].Tries != pampa.DefaultMaxTryTimes ||
			tasks[0].Error != "bench: failed for good") {
			t.Errorf("the failed task: %+v", tasks[0])
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	xs := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ p, want float64 }{{0, 1}, {50, 3}, {99, 4}, {100, 5}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

// A burn of waiting tasks reports its ideal rate, which it cannot beat,
// and the CPU it took.
func TestRunTaskSleep(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, Config{Driver: pampa.DriverSQLite, URL: testdb.SQLitePath(t), Tasks: 200, Workers: 2, Concurrency: 5,
		QueueSize: 5, TaskSleep: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// 2 workers × 5 slots / 20 ms = 500 tasks/s at best.
	if r.BurnIdealPerS != 500 || r.BurnTasksPerS > r.BurnIdealPerS || r.BurnTasksPerS <= 0 || r.TaskSleepMs != 20 {
		t.Errorf("burn of 20ms tasks: %.0f tasks/s of an ideal %.0f (sleep %.0f ms)", r.BurnTasksPerS, r.BurnIdealPerS, r.TaskSleepMs)
	}
	if r.BurnCPUMsPer1000 <= 0 {
		t.Errorf("CPU per 1,000 tasks: %.1f ms", r.BurnCPUMsPer1000)
	}
}
