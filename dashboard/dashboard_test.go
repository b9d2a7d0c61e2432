package dashboard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestOverviewMatchesReport: the overview page and /api/overview give the
// same counts as Client.Report, on both databases.
func TestOverviewMatchesReport(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 30)
		f.failForGood("boom", 1, 2, 3)
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.1', r_time = CURRENT_TIMESTAMP WHERE value IN (4, 5)`)
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.1', r_time = CURRENT_TIMESTAMP, r_start = CURRENT_TIMESTAMP, r_times = 1 WHERE value = 6`)
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.2', r_times = 1, r_start = CURRENT_TIMESTAMP, r_end = CURRENT_TIMESTAMP, r_success = TRUE WHERE value > 20`)
		want, err := f.client.JobReport(context.Background(), "numbers")
		if err != nil {
			t.Fatal(err)
		}
		if want.Failed != 3 || want.Reserved != 2 || want.Running != 1 || want.Completed != 10 || want.Pending != 14 {
			t.Fatalf("the fixture's counts are off: %+v", want)
		}
		res, body := f.get(nil, "/api/overview", nil)
		wantStatus(t, "GET /api/overview", res, body, http.StatusOK)
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var o Overview
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatal(err)
		}
		if len(o.Jobs) != 1 || o.Jobs[0].JobReport != want {
			t.Errorf("overview jobs = %+v, want the report %+v", o.Jobs, want)
		}
		for _, field := range []string{`"job"`, `"total"`, `"completed"`, `"pending"`, `"failed"`, `"reserved"`, `"running"`,
			`"estimated"`, `"paused"`, `"tasks_per_second"`, `"failed_per_minute"`, `"series"`, `"workers"`, `"generated_at"`} {
			if !strings.Contains(body, field) {
				t.Errorf("/api/overview has no field %s", field)
			}
		}
		res, page := f.get(nil, "/", nil)
		wantStatus(t, "GET /", res, page, http.StatusOK)
		for _, s := range []string{`href="/jobs/numbers"`, ">30<", ">10<", ">14<"} {
			if !strings.Contains(page, s) {
				t.Errorf("the overview page lacks %q", s)
			}
		}
	})
}

// TestPagesRender: every page and its API twin answer 200 with the
// security headers; an unknown job is a 404 that names it.
func TestPagesRender(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 5)
		f.failForGood("boom", 2)
		for _, path := range []string{"/", "/jobs/numbers", "/failed", "/failed?job=numbers", "/workers", "/nodes",
			"/api/overview", "/api/jobs/numbers", "/api/failed?job=numbers", "/api/workers", "/api/nodes"} {
			res, body := f.get(nil, path, nil)
			wantStatus(t, "GET "+path, res, body, http.StatusOK)
			h := res.Header
			if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
				!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
				h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: security headers missing: %v", path, h)
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, " onclick=") {
				t.Errorf("GET %s: inline script or style, which the CSP forbids", path)
			}
		}
		res, body := f.get(nil, "/jobs/nope%3Cb%3E", nil)
		wantStatus(t, "unknown job", res, body, http.StatusNotFound)
		if !strings.Contains(body, `no job is named &#34;nope&lt;b&gt;&#34;`) {
			t.Errorf("the 404 does not name the job, escaped: %s", body)
		}
		res, body = f.get(nil, "/api/jobs/nope", nil)
		wantStatus(t, "unknown job (API)", res, body, http.StatusNotFound)
		if !strings.Contains(body, `"error": "no job is named \"nope\""`) {
			t.Errorf("API 404 body: %s", body)
		}
	})
}

// TestInjectionIsInert: an error text from user code, holding HTML, a
// script and terminal escapes, is shown as text.
func TestInjectionIsInert(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 3)
		evil := "<script>alert('x')</script><img src=x onerror=alert(1)> \x1b[31mred\x1b]0;title\x07 \u202eevil"
		f.failForGood(evil, 1)
		res, page := f.get(nil, "/failed?job=numbers", nil)
		wantStatus(t, "GET /failed", res, page, http.StatusOK)
		for _, bad := range []string{"<script>alert", "<img src=x", "\x1b", "\u202e"} {
			if strings.Contains(page, bad) {
				t.Errorf("the failed page holds %q as it is", bad)
			}
		}
		for _, shown := range []string{"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", `\x1b[31mred`, `\u202eevil`} {
			if !strings.Contains(page, shown) {
				t.Errorf("the failed page does not show %q", shown)
			}
		}
		_, api := f.get(nil, "/api/failed?job=numbers", nil)
		var p FailedPage
		if err := json.Unmarshal([]byte(api), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Failed.Tasks) != 1 || p.Failed.Tasks[0].Error != evil {
			t.Errorf("the API must give the error text exactly: %+v", p.Failed)
		}
	})
}

// TestInternalErrorsHideDetails: a database error is logged, and the
// answer says only that something failed.
func TestInternalErrorsHideDetails(t *testing.T) {
	f := newFixture(t, "sqlite", 3)
	exec(t, f.client, `DROP TABLE numbers`)
	for _, path := range []string{"/", "/api/overview"} {
		res, body := f.get(nil, path, nil)
		wantStatus(t, "GET "+path, res, body, http.StatusInternalServerError)
		for _, leak := range []string{"numbers", "SELECT", "no such table", "goroutine"} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s: the answer shows %q: %s", path, leak, body)
			}
		}
	}
	if !strings.Contains(f.logs.String(), "no such table") {
		t.Errorf("the error is not in the log: %s", f.logs.String())
	}
}

// TestLoopbackOnlyWithoutAuth: with no one to sign in, the dashboard
// listens on loopback only and answers loopback host names only (DNS
// rebinding); with credentials, any address.
func TestLoopbackOnlyWithoutAuth(t *testing.T) {
	f := newFixture(t, "sqlite", 1)
	for addr, ok := range map[string]bool{"127.0.0.1:8080": true, "localhost:0": true, "[::1]:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "192.168.1.5:80": false, "example.com:80": false} {
		err := f.srv.CheckListen(addr)
		if (err == nil) != ok {
			t.Errorf("CheckListen(%q) = %v, want allowed=%v", addr, err, ok)
		}
	}
	res, body := f.get(nil, "/", func(r *http.Request) { r.Host = "attacker.example:8080" })
	wantStatus(t, "foreign Host", res, body, http.StatusMisdirectedRequest)

	g := newFixture(t, "sqlite", 1, withAuth)
	if err := g.srv.CheckListen("0.0.0.0:8080"); err != nil {
		t.Errorf("with users configured, any address: %v", err)
	}
	res, body = g.get(nil, "/healthz", func(r *http.Request) { r.Host = "pampa.example.com" })
	wantStatus(t, "named host with auth", res, body, http.StatusOK)
}

// TestFormActionRedirectsBack: a page's form posts to the API and comes
// back to its page, which shows what was done.
func TestFormActionRedirectsBack(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 3)
		b := f.browser()
		tok := f.csrf(b)
		res, body := f.postForm(b, "/api/jobs/numbers/pause", url.Values{"csrf": {tok}, "back": {"/jobs/numbers"}}, nil)
		wantStatus(t, "pause", res, body, http.StatusSeeOther)
		if loc := res.Header.Get("Location"); loc != "/jobs/numbers" {
			t.Errorf("redirected to %q", loc)
		}
		_, page := f.get(b, "/jobs/numbers", nil)
		if !strings.Contains(page, "job numbers paused") || !strings.Contains(page, `class="badge paused"`) {
			t.Errorf("the job page does not show the pause")
		}
		r, err := f.client.JobReport(context.Background(), "numbers")
		if err != nil || !r.Paused {
			t.Fatalf("the job is not paused: %+v %v", r, err)
		}
		res, _ = f.postForm(b, "/api/jobs/numbers/resume", url.Values{"csrf": {tok}, "back": {"https://evil.example/"}}, nil)
		if loc := res.Header.Get("Location"); loc != "/" {
			t.Errorf("a foreign back address must not be followed: redirected to %q", loc)
		}
		if r, _ := f.client.JobReport(context.Background(), "numbers"); r.Paused {
			t.Error("the job is still paused")
		}
	})
}

// TestRetryAndDiscard through the JSON API, on both databases.
func TestRetryAndDiscard(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 6, withAuth)
		f.failForGood("boom", 1, 2, 3)
		res, body := f.postJSON(nil, "/api/jobs/numbers/retry", `{"keys": [1, "2"]}`, bearer(adminToken))
		wantStatus(t, "retry", res, body, http.StatusOK)
		var out ActionResult
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Keys) != 2 {
			t.Errorf("retried %v, want keys 1 and 2", out.Keys)
		}
		r, _ := f.client.JobReport(context.Background(), "numbers")
		if r.Failed != 1 {
			t.Errorf("failed = %d after retrying two of three", r.Failed)
		}
		res, body = f.postJSON(nil, "/api/jobs/numbers/retry", `{}`, bearer(adminToken))
		wantStatus(t, "retry with nothing named", res, body, http.StatusBadRequest)
		res, body = f.postJSON(nil, "/api/jobs/numbers/retry", `{"all": true}`, bearer(adminToken))
		wantStatus(t, "retry all", res, body, http.StatusOK)
		if r, _ := f.client.JobReport(context.Background(), "numbers"); r.Failed != 0 {
			t.Errorf("failed = %d after retry all", r.Failed)
		}
		// A failed try with a try left: discard fails it for good.
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.1', r_times = 1, r_start = CURRENT_TIMESTAMP,
			r_end = CURRENT_TIMESTAMP, r_success = FALSE, r_error = 'once' WHERE value = 5`)
		res, body = f.postJSON(nil, "/api/jobs/numbers/discard", `{"keys": [5, 6]}`, bearer(adminToken))
		wantStatus(t, "discard", res, body, http.StatusOK)
		if !strings.Contains(body, `"keys": [`) || !strings.Contains(body, "1 task(s) failed for good") {
			t.Errorf("discard answer: %s", body)
		}
		res, body = f.postJSON(nil, "/api/jobs/numbers/retry", `{"keys": [1.5]}`, bearer(adminToken))
		wantStatus(t, "a key that is no integer", res, body, http.StatusBadRequest)
		res, body = f.postJSON(nil, "/api/jobs/numbers/retry", `not json`, bearer(adminToken))
		wantStatus(t, "a body that is no JSON", res, body, http.StatusBadRequest)
	})
}
