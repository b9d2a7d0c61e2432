package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeSource answers with fixed figures, or errors.
type fakeSource struct {
	jobs     []JobTasks
	workers  []Worker
	leader   Leader
	jobsErr  error
	blocking bool // each read waits for its context to end
}

func (s *fakeSource) wait(ctx context.Context) error {
	if !s.blocking {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *fakeSource) Jobs(ctx context.Context) ([]JobTasks, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.jobs, s.jobsErr
}

func (s *fakeSource) Workers(ctx context.Context) ([]Worker, error) {
	return s.workers, s.wait(ctx)
}

func (s *fakeSource) Leader(ctx context.Context) (Leader, error) { return s.leader, s.wait(ctx) }

func healthySource() *fakeSource {
	return &fakeSource{
		jobs: []JobTasks{
			{Job: "mail", Pending: 5, Scheduled: 6, Reserved: 4, Running: 3, Completed: 2, Failed: 1, Paused: true},
			{Job: "big", Completed: 2_000_000, Estimated: true},
		},
		workers: []Worker{{State: "running", Alive: true}, {State: "running", Alive: false}, {State: "dead"}, {State: "stopping"}},
		leader:  Leader{Holder: "host:1:abc", Term: 7, ExpiresIn: 3 * time.Second},
	}
}

func TestDatabaseGauges(t *testing.T) {
	m := New()
	if err := m.CollectDatabase(healthySource(), nil); err != nil {
		t.Fatal(err)
	}
	if err := m.CollectDatabase(healthySource(), nil); err == nil {
		t.Error("a second CollectDatabase was accepted; its gauges would clash with the first's")
	}
	fams := families(t, m)
	for name, want := range map[string]map[string]float64{
		"pampa_tasks": {
			"job=mail,state=pending": 5, "job=mail,state=scheduled": 6, "job=mail,state=reserved": 4, "job=mail,state=running": 3,
			"job=mail,state=completed": 2, "job=mail,state=failed": 1,
			"job=big,state=pending": 0, "job=big,state=scheduled": 0, "job=big,state=reserved": 0, "job=big,state=running": 0,
			"job=big,state=completed": 2_000_000, "job=big,state=failed": 0,
		},
		"pampa_tasks_estimated":                {"job=mail": 0, "job=big": 1},
		"pampa_job_paused":                     {"job=mail": 1, "job=big": 0},
		"pampa_workers":                        {"state=running": 2, "state=stopping": 1, "state=stopped": 0, "state=dead": 1},
		"pampa_workers_alive":                  {"": 1},
		"pampa_leader_term":                    {"": 7},
		"pampa_leader_lease_remaining_seconds": {"": 3},
		"pampa_leader_info":                    {"holder=host:1:abc": 1},
		"pampa_database_scrape_success":        {"": 1},
	} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType().String() != "GAUGE" {
			t.Errorf("%s is a %s, want a gauge", name, f.GetType())
		}
		if got := values(f); !equalMaps(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if _, ok := fams["pampa_database_scrape_duration_seconds"]; !ok {
		t.Error("pampa_database_scrape_duration_seconds missing")
	}
}

func TestDatabaseGaugesNoLeader(t *testing.T) {
	src := healthySource()
	src.leader = Leader{Holder: "gone:1:abc", Term: 3, ExpiresIn: -time.Second}
	m := New()
	if err := m.CollectDatabase(src, nil); err != nil {
		t.Fatal(err)
	}
	fams := families(t, m)
	if f, ok := fams["pampa_leader_info"]; ok {
		t.Errorf("pampa_leader_info for a lapsed lease = %v, want none", values(f))
	}
	if got := values(fams["pampa_leader_lease_remaining_seconds"])[""]; got != -1 {
		t.Errorf("pampa_leader_lease_remaining_seconds = %g, want -1", got)
	}
}

// A failed read is the scrape's error, and leaves the other reads' gauges.
func TestDatabaseReadFails(t *testing.T) {
	src := healthySource()
	src.jobsErr = errors.New("relation \"mail\" does not exist")
	var logged strings.Builder
	m := New()
	if err := m.CollectDatabase(src, slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err == nil || !strings.Contains(err.Error(), "task counts") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("gather error = %v, want the task counts' error", err)
	}
	got := byName(fams)
	if _, ok := got["pampa_tasks"]; ok {
		t.Error("pampa_tasks served although its read failed")
	}
	if values(got["pampa_workers_alive"])[""] != 1 || values(got["pampa_database_scrape_success"])[""] != 0 {
		t.Errorf("workers alive %v, scrape success %v; want 1 and 0",
			values(got["pampa_workers_alive"]), values(got["pampa_database_scrape_success"]))
	}
	if !strings.Contains(logged.String(), "does not exist") {
		t.Errorf("log = %q, want the error", logged.String())
	}

	// Over HTTP the scrape still answers, with the process's own series;
	// the handler counts the failed scrape (shown from the next one on).
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get(t, srv.URL, "")
	body, code := get(t, srv.URL, "")
	if code != http.StatusOK || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "pampa_database_scrape_success 0") ||
		!strings.Contains(body, `promhttp_metric_handler_errors_total{cause="gathering"} 1`) {
		t.Errorf("GET /metrics with a failed read: %d\n%s", code, body)
	}
}

// The reads of a scrape are bounded by its timeout.
func TestDatabaseScrapeTimeout(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newDBCollector(&fakeSource{blocking: true}, slog.New(slog.DiscardHandler), 100*time.Millisecond))
	start := time.Now()
	fams, err := reg.Gather()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a scrape of a hanging database took %s, want about 100ms", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) && (err == nil || !strings.Contains(err.Error(), "deadline exceeded")) {
		t.Errorf("gather error = %v, want a deadline", err)
	}
	if values(byName(fams)["pampa_database_scrape_success"])[""] != 0 {
		t.Error("pampa_database_scrape_success is not 0 after a timeout")
	}
}

// client keeps no idle connection, whose goroutines would outlive a test.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// get sends GET url with an Authorization header (none when "").
func get(t *testing.T, url, auth string) (string, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.StatusCode
}
