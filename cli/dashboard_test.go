package cli

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDashboardCommand: `pampa dashboard` as a process serves the pages,
// the API and /metrics; it refuses an open address without credentials,
// takes them from the environment, and never prints them.
func TestDashboardCommand(t *testing.T) {
	e := newProcEnv(t, "sqlite", 20)
	out, code := e.cli("dashboard", "--listen", "0.0.0.0:0", "--log=false")
	if code == 0 || !strings.Contains(out, `refusing to listen on "0.0.0.0:0" without authentication`) {
		t.Fatalf("an open address without credentials: exit %d\n%s", code, out)
	}

	const token = "s3cret-token-0123456789abcdef"
	p, base := startDashboard(t, e, []string{"PAMPA_DASHBOARD_READ_TOKEN=" + token})
	get := func(path string, auth bool) (int, string) {
		tok := ""
		if auth {
			tok = token
		}
		return dashboardRequest(t, http.MethodGet, base+path, tok)
	}
	if code, _ := get("/api/overview", false); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	code, body := get("/api/overview", true)
	if code != http.StatusOK || !strings.Contains(body, `"job": "search_odd_numbers"`) || !strings.Contains(body, `"pending": 20`) {
		t.Errorf("/api/overview: %d %s", code, body)
	}
	code, body = get("/metrics", true)
	if code != http.StatusOK || !strings.Contains(body, `pampa_tasks{job="search_odd_numbers",state="pending"} 20`) {
		t.Errorf("/metrics: %d %.500s", code, body)
	}
	if code, _ := get("/healthz", false); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	p.stop(t)
	if strings.Contains(p.out.String(), token) {
		t.Error("the token is in the dashboard's output")
	}
}

// startDashboard runs `pampa dashboard` on a free loopback port and
// returns it and its address (no trailing slash).
func startDashboard(t *testing.T, e *procEnv, env []string) (*proc, string) {
	t.Helper()
	p := e.start("dashboard", env, "dashboard", "--listen", "127.0.0.1:0", "--log=false")
	url := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)/`)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m := url.FindStringSubmatch(p.out.String()); m != nil {
			return p, m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard did not say where it listens:\n%s", p.out.String())
		}
	}
}

// dashboardRequest sends a request, with a bearer token unless it is "".
func dashboardRequest(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
