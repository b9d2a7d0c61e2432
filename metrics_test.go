package pampa

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricShapes are Pampa's metrics: type and label names. A metric added,
// renamed or relabelled shows here (and must show in docs/metrics.md).
var metricShapes = map[string]struct {
	typ    dto.MetricType
	labels string
}{
	"pampa_tasks_processed_total":             {dto.MetricType_COUNTER, "job,outcome"},
	"pampa_task_panics_total":                 {dto.MetricType_COUNTER, "job"},
	"pampa_task_duration_seconds":             {dto.MetricType_HISTOGRAM, "job"},
	"pampa_worker_slots":                      {dto.MetricType_GAUGE, "state,worker"},
	"pampa_tasks_reserved_total":              {dto.MetricType_COUNTER, "job"},
	"pampa_tasks_relaunched_total":            {dto.MetricType_COUNTER, "job"},
	"pampa_tasks_failed_by_dispatcher_total":  {dto.MetricType_COUNTER, "job"},
	"pampa_dispatcher_round_duration_seconds": {dto.MetricType_HISTOGRAM, ""},
	"pampa_dispatcher_round_errors_total":     {dto.MetricType_COUNTER, ""},
	"pampa_dispatcher_leader":                 {dto.MetricType_GAUGE, ""},
	"pampa_tasks":                             {dto.MetricType_GAUGE, "job,state"},
	"pampa_tasks_estimated":                   {dto.MetricType_GAUGE, "job"},
	"pampa_job_paused":                        {dto.MetricType_GAUGE, "job"},
	"pampa_workers":                           {dto.MetricType_GAUGE, "state"},
	"pampa_workers_alive":                     {dto.MetricType_GAUGE, ""},
	"pampa_leader_term":                       {dto.MetricType_GAUGE, ""},
	"pampa_leader_lease_remaining_seconds":    {dto.MetricType_GAUGE, ""},
	"pampa_leader_info":                       {dto.MetricType_GAUGE, "holder"},
	"pampa_database_scrape_duration_seconds":  {dto.MetricType_GAUGE, ""},
	"pampa_database_scrape_success":           {dto.MetricType_GAUGE, ""},
}

// scraped is one scrape, parsed.
type scraped map[string]*dto.MetricFamily

func scrape(t *testing.T, url string) scraped {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// value is the value of name's series whose labels are k=v pairs.
func (s scraped) value(name string, kv ...string) (float64, bool) {
	want := strings.Join(kv, ",")
	for _, m := range s[name].GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(got)
		if strings.Join(got, ",") != want {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// must is value that fails the test when the series is missing.
func (s scraped) must(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	v, ok := s.value(name, kv...)
	if !ok {
		t.Fatalf("no series %s{%s} in the scrape", name, strings.Join(kv, ","))
	}
	return v
}

// checkShapes checks the type and labels of every pampa_ family, and
// that docs/metrics.md describes it.
func (s scraped) checkShapes(t *testing.T) {
	t.Helper()
	doc, err := os.ReadFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range s {
		if !strings.HasPrefix(name, "pampa_") {
			continue
		}
		want, ok := metricShapes[name]
		if !ok {
			t.Errorf("unexpected metric %s", name)
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s is a %s, want a %s", name, f.GetType(), want.typ)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			sort.Strings(names)
			if got := strings.Join(names, ","); got != want.labels {
				t.Errorf("%s has labels %q, want %q", name, got, want.labels)
			}
		}
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
}

// TestMetricsOfARun runs a dispatcher and two workers with metrics over
// a job some of whose tasks fail for good, scrapes /metrics over HTTP and
// checks the figures against the report and the outcomes.
func TestMetricsOfARun(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const rows, job = 60, "search_odd_numbers"
		j := withProcess(func(ctx context.Context, task *Task) error {
			k, err := task.Int64("value")
			switch {
			case err != nil:
				return err
			case k%10 == 0:
				return fmt.Errorf("no good: %d", k)
			case k == 7:
				panic("kaboom")
			}
			return isOdd(ctx, task)
		})
		j.MaxTryTimes = 2
		const failing = rows/10 + 1 // the multiples of 10, and 7
		e := newEnv(t, driver, rows, j)
		m := NewMetrics()
		if err := m.CollectDatabase(e.client, nil); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(m.Handler())
		defer srv.Close()
		if l, err := e.client.Leader(context.Background()); err != nil || l != (LeaderInfo{}) {
			t.Errorf("Leader before any dispatcher ran = %+v, %v; want the zero LeaderInfo", l, err)
		}
		dopts, wopts := steadyDispatcher(), steadyWorker()
		dopts.Metrics, wopts.Metrics, wopts.Concurrency = m, m, 2
		r, _ := e.startIDs(dopts, wopts, "local.1", "local.2")
		rep := e.waitJob(job, rows, 60*time.Second)
		if rep.Completed != rows-failing || rep.Failed != failing {
			t.Fatalf("report = %+v, want %d completed and %d failed", rep, rows-failing, failing)
		}

		s := scrape(t, srv.URL)
		s.checkShapes(t)
		t.Run("WhileRunning", func(t *testing.T) {
			for name := range metricShapes {
				if _, ok := s[name]; !ok {
					t.Errorf("%s missing from a process running a dispatcher and workers", name)
				}
			}
			for _, w := range []string{"local.1", "local.2"} {
				busy := s.must(t, "pampa_worker_slots", "state=busy", "worker="+w)
				idle := s.must(t, "pampa_worker_slots", "state=idle", "worker="+w)
				// Every task is done: a slot's try ends before its
				// outcome can be recorded.
				if busy != 0 || idle != 2 {
					t.Errorf("%s: %g busy and %g idle slots, want 0 and 2", w, busy, idle)
				}
			}
			if v := s.must(t, "pampa_workers", "state=running"); v != 2 {
				t.Errorf("running workers = %g, want 2", v)
			}
			if v := s.must(t, "pampa_workers_alive"); v != 2 {
				t.Errorf("alive workers = %g, want 2", v)
			}
			if v := s.must(t, "pampa_dispatcher_leader"); v != 1 {
				t.Errorf("pampa_dispatcher_leader = %g, want 1", v)
			}
			l, err := e.client.Leader(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if v := s.must(t, "pampa_leader_term"); v != float64(l.Term) || l.Term < 1 {
				t.Errorf("pampa_leader_term = %g, Client.Leader's term %d; want the same, at least 1", v, l.Term)
			}
			if _, ok := s.value("pampa_leader_info", "holder="+l.Holder); !ok || l.Holder == "" || l.ExpiresIn <= 0 {
				t.Errorf("Leader = %+v; want a live lease, shown in pampa_leader_info", l)
			}
			if v := s.must(t, "pampa_leader_lease_remaining_seconds"); v <= 0 || v > dopts.LeaseTTL.Seconds() {
				t.Errorf("pampa_leader_lease_remaining_seconds = %g, want within the lease's TTL %s", v, dopts.LeaseTTL)
			}
			if v := s.must(t, "pampa_dispatcher_round_duration_seconds"); v < 1 {
				t.Errorf("%g rounds observed, want some", v)
			}
			if v := s.must(t, "pampa_database_scrape_success"); v != 1 {
				t.Errorf("pampa_database_scrape_success = %g, want 1", v)
			}
		})

		r.stop(t)
		s = scrape(t, srv.URL)
		s.checkShapes(t)
		t.Run("Outcomes", func(t *testing.T) {
			want := map[string]float64{"succeeded": float64(rep.Completed), "failed": failing,
				"failed_final": float64(rep.Failed), "dropped": 0}
			tries := 0.0
			for outcome, n := range want {
				got := s.must(t, "pampa_tasks_processed_total", "job="+job, "outcome="+outcome)
				if got != n {
					t.Errorf("pampa_tasks_processed_total{outcome=%q} = %g, want %g", outcome, got, n)
				}
				tries += got
			}
			if v := s.must(t, "pampa_task_duration_seconds", "job="+job); v != tries {
				t.Errorf("pampa_task_duration_seconds counts %g tries, want %g", v, tries)
			}
			if v := s.must(t, "pampa_task_panics_total", "job="+job); v != 2 {
				t.Errorf("pampa_task_panics_total = %g, want 2 (key 7, both tries)", v)
			}
			if v := s.must(t, "pampa_tasks_reserved_total", "job="+job); v < tries {
				t.Errorf("pampa_tasks_reserved_total = %g, want at least the %g tries", v, tries)
			}
			if v := s.must(t, "pampa_tasks_relaunched_total", "job="+job); v != failing {
				t.Errorf("pampa_tasks_relaunched_total = %g, want the %d first tries that failed", v, failing)
			}
			if v := s.must(t, "pampa_tasks_failed_by_dispatcher_total", "job="+job); v != 0 {
				t.Errorf("pampa_tasks_failed_by_dispatcher_total = %g, want 0 with healthy workers", v)
			}
		})
		t.Run("Stopped", func(t *testing.T) {
			if f, ok := s["pampa_worker_slots"]; ok {
				t.Errorf("slots of stopped workers still shown: %v", f)
			}
			if v := s.must(t, "pampa_workers", "state=stopped"); v != 2 {
				t.Errorf("stopped workers = %g, want 2", v)
			}
			if v := s.must(t, "pampa_workers_alive"); v != 0 {
				t.Errorf("alive workers after the stop = %g, want 0", v)
			}
			if v := s.must(t, "pampa_dispatcher_leader"); v != 0 {
				t.Errorf("pampa_dispatcher_leader after the dispatcher stopped = %g, want 0", v)
			}
			if f, ok := s["pampa_leader_info"]; ok {
				t.Errorf("pampa_leader_info after the leader resigned: %v", f)
			}
			l, err := e.client.Leader(context.Background())
			if err != nil || l.Holder != "" || l.ExpiresIn > 0 || l.Term < 1 {
				t.Errorf("Leader after the leader resigned = %+v, %v; want no holder, no time left, its term kept", l, err)
			}
			if v := s.must(t, "pampa_leader_term"); v != float64(l.Term) {
				t.Errorf("pampa_leader_term after the resignation = %g, want %d", v, l.Term)
			}
		})

		// New rows, and the job paused: the gauges follow the database.
		e.exec(`INSERT INTO numbers (value) VALUES (1001), (1002), (1003)`)
		if err := e.client.Pause(context.Background(), job); err != nil {
			t.Fatal(err)
		}
		s = scrape(t, srv.URL)
		t.Run("TasksMatchTheReport", func(t *testing.T) {
			rep := e.report(job)
			for state, n := range map[string]int64{"pending": rep.Pending, "scheduled": rep.Scheduled, "reserved": rep.Reserved, "running": rep.Running,
				"completed": rep.Completed, "failed": rep.Failed} {
				if got := s.must(t, "pampa_tasks", "job="+job, "state="+state); got != float64(n) {
					t.Errorf("pampa_tasks{state=%q} = %g, the report says %d", state, got, n)
				}
			}
			if rep.Pending != 3 {
				t.Errorf("report = %+v, want the 3 new rows pending", rep)
			}
			if v := s.must(t, "pampa_tasks_estimated", "job="+job); v != 0 {
				t.Errorf("pampa_tasks_estimated = %g, want 0 on a small table", v)
			}
			if v := s.must(t, "pampa_job_paused", "job="+job); v != 1 {
				t.Errorf("pampa_job_paused = %g, want 1", v)
			}
		})
	})
}
