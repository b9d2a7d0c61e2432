package cli

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var servingMetrics = regexp.MustCompile(`serving metrics addr=(\S+)`)

// metricsURL waits for p to log the address it serves metrics on.
func (e *procEnv) metricsURL(p *proc) string {
	e.t.Helper()
	var addr string
	e.waitFor(30*time.Second, p.name+" to serve metrics", func() bool {
		if m := servingMetrics.FindStringSubmatch(p.out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return "http://" + addr
}

// fetch sends GET url with an Authorization header (none when "").
func fetch(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics scrapes url/metrics and parses it.
func scrapeMetrics(t *testing.T, url, auth string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := fetch(t, url+"/metrics", auth)
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d\n%s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", url, err)
	}
	return fams
}

// sample is the value of the first series of a counter or gauge whose
// label has the value given (any series when label is "").
func sample(fams map[string]*dto.MetricFamily, name, label, value string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		if label != "" && !hasLabel(m, label, value) {
			continue
		}
		if m.Counter != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// TestMetricsListen runs a dispatcher and a worker as processes with
// --metrics-listen, the dispatcher's behind a token: the dispatcher serves
// the database gauges, the worker only its own figures.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows, token = 300, "tok-3f9a1c"
		e := newProcEnv(t, driver, rows)
		d := e.start("dispatcher", []string{envMetricsToken + "=" + token},
			append(fastDispatcherArgs, "--metrics-listen", "127.0.0.1:0")...)
		// The original's key=value form, before the other flags.
		w := e.start("worker", nil, append([]string{"worker", "metrics-listen=127.0.0.1:0"}, workerArgs("local.1")[1:]...)...)
		durl, wurl := e.metricsURL(d), e.metricsURL(w)
		e.waitFor(90*time.Second, "all tasks done", func() bool { return e.report().Completed == rows })

		for _, c := range []struct {
			auth string
			want int
		}{{"", http.StatusUnauthorized}, {"Bearer wrong", http.StatusUnauthorized}, {"Bearer " + token, http.StatusOK}} {
			if code, body := fetch(t, durl+"/metrics", c.auth); code != c.want {
				t.Errorf("dispatcher GET /metrics with %q: %d, want %d\n%s", c.auth, code, c.want, body)
			}
		}
		if code, body := fetch(t, durl+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
			t.Errorf("dispatcher GET /healthz: %d %q", code, body)
		}
		ds := scrapeMetrics(t, durl, "Bearer "+token)
		if v, _ := sample(ds, "pampa_tasks", "state", "completed"); v != rows {
			t.Errorf("dispatcher: pampa_tasks{state=completed} = %g, want %d", v, rows)
		}
		if v, ok := sample(ds, "pampa_dispatcher_leader", "", ""); !ok || v != 1 {
			t.Errorf("dispatcher: pampa_dispatcher_leader = %g (%v), want 1", v, ok)
		}
		if v, ok := sample(ds, "pampa_tasks_reserved_total", "", ""); !ok || v < rows {
			t.Errorf("dispatcher: pampa_tasks_reserved_total = %g (%v), want at least %d", v, ok, rows)
		}

		ws := scrapeMetrics(t, wurl, "") // the worker has no token
		for _, name := range []string{"pampa_tasks", "pampa_workers", "pampa_leader_term", "pampa_dispatcher_leader"} {
			if _, ok := ws[name]; ok {
				t.Errorf("the worker serves %s: workers must not read the database gauges", name)
			}
		}
		// The worker's last outcomes may be recorded just after the report
		// saw them: wait for its counter to catch up.
		e.waitFor(10*time.Second, "the worker's counter", func() bool {
			v, _ := sample(scrapeMetrics(t, wurl, ""), "pampa_tasks_processed_total", "outcome", "succeeded")
			return v == rows
		})
		if _, ok := ws["pampa_worker_slots"]; !ok {
			t.Error("the worker does not serve pampa_worker_slots")
		}

		w.stop(t)
		d.stop(t)
		for _, p := range []*proc{d, w} {
			if strings.Contains(p.out.String(), token) {
				t.Errorf("%s logged the token:\n%s", p.name, p.out.String())
			}
		}
		if !strings.Contains(d.out.String(), "token_required=true") || !strings.Contains(w.out.String(), "token_required=false") {
			t.Errorf("the start-up lines do not say whether a token is required:\n%s\n%s", d.out.String(), w.out.String())
		}
	})
}

// TestRunMetricsListen runs `pampa run --metrics-listen`: one endpoint
// with the dispatcher's, the workers' and the database's series.
func TestRunMetricsListen(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		const rows = 200
		e := newProcEnv(t, driver, rows)
		r := e.start("run", nil, "run", "--workers", "2", "--delay", "50ms", "--progress=false", "--log-dir", "logs",
			"--metrics-listen", "127.0.0.1:0")
		url := e.metricsURL(r)
		e.waitFor(90*time.Second, "all tasks done", func() bool { return e.report().Completed == rows })
		// The workers share the process's series: one count for both.
		var s map[string]*dto.MetricFamily
		e.waitFor(10*time.Second, "the workers' counters", func() bool {
			s = scrapeMetrics(t, url, "")
			v, _ := sample(s, "pampa_tasks_processed_total", "outcome", "succeeded")
			return v == rows
		})
		for _, worker := range []string{"local.1", "local.2"} {
			if _, ok := sample(s, "pampa_worker_slots", "worker", worker); !ok {
				t.Errorf("no pampa_worker_slots for %s", worker)
			}
		}
		if v, _ := sample(s, "pampa_tasks", "state", "completed"); v != rows {
			t.Errorf("pampa_tasks{state=completed} = %g, want %d", v, rows)
		}
		if v, _ := sample(s, "pampa_workers", "state", "running"); v != 2 {
			t.Errorf("pampa_workers{state=running} = %g, want 2", v)
		}
		r.stop(t)
	})
}
