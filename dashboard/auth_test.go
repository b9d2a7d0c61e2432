package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSignInAndOut: pages send a stranger to the login page, the API
// answers 401; a wrong password is refused and logged without it; a right
// one opens a session that signing out ends.
func TestSignInAndOut(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 2, withAuth)
		res, body := f.get(nil, "/jobs/numbers?x=1", nil)
		wantStatus(t, "page, signed out", res, body, http.StatusSeeOther)
		if loc := res.Header.Get("Location"); loc != "/login?next="+url.QueryEscape("/jobs/numbers?x=1") {
			t.Errorf("sent to %q", loc)
		}
		res, body = f.get(nil, "/api/overview", nil)
		wantStatus(t, "API, signed out", res, body, http.StatusUnauthorized)

		b := f.browser()
		res, body = f.postForm(b, "/login", url.Values{"name": {"ada"}, "password": {"wrong-password"}}, nil)
		wantStatus(t, "wrong password", res, body, http.StatusUnauthorized)
		if !strings.Contains(body, "Wrong name or password.") {
			t.Error("the login page does not say the password was wrong")
		}
		logs := f.logs.String()
		if !strings.Contains(logs, "failed login") || !strings.Contains(logs, "user=ada") || strings.Contains(logs, "wrong-password") {
			t.Errorf("the failed login is not logged right (named, without the secret): %s", logs)
		}
		tok := f.login(b, "ada", adminPassword)
		res, body = f.get(b, "/api/overview", nil)
		wantStatus(t, "API with the session", res, body, http.StatusOK)
		res, body = f.postForm(b, "/logout", url.Values{"csrf": {tok}}, nil)
		wantStatus(t, "logout", res, body, http.StatusSeeOther)
		res, body = f.get(b, "/api/overview", nil)
		wantStatus(t, "API after logout", res, body, http.StatusUnauthorized)
		if strings.Contains(f.logs.String(), adminPassword) {
			t.Error("a password is in the log")
		}
	})
}

// TestRoles: read-only users and tokens see everything and may do
// nothing; admins may act; unknown tokens are refused.
func TestRoles(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 2, withAuth)
		ctx := context.Background()
		for name, mod := range map[string]func(*http.Request){
			"read token": bearer(readToken),
			"read basic": func(r *http.Request) { r.SetBasicAuth("rob", readPassword) },
		} {
			res, body := f.get(nil, "/api/jobs/numbers", mod)
			wantStatus(t, name+" reads", res, body, http.StatusOK)
			res, body = f.postJSON(nil, "/api/jobs/numbers/pause", `{}`, mod)
			wantStatus(t, name+" acts", res, body, http.StatusForbidden)
			if !strings.Contains(body, "read-only") {
				t.Errorf("%s: the refusal does not say why: %s", name, body)
			}
		}
		if r, _ := f.client.JobReport(ctx, "numbers"); r.Paused {
			t.Fatal("a read-only request paused the job")
		}
		b := f.browser()
		tok := f.login(b, "rob", readPassword)
		res, body := f.postForm(b, "/api/jobs/numbers/pause", url.Values{"csrf": {tok}}, nil)
		wantStatus(t, "read-only session acts", res, body, http.StatusForbidden)

		res, body = f.postJSON(nil, "/api/jobs/numbers/pause", `{}`, bearer(adminToken))
		wantStatus(t, "admin token acts", res, body, http.StatusOK)
		if r, _ := f.client.JobReport(ctx, "numbers"); !r.Paused {
			t.Fatal("the admin's pause did not take")
		}
		for name, mod := range map[string]func(*http.Request){
			"unknown token":  bearer("not-a-token-0123456789"),
			"wrong password": func(r *http.Request) { r.SetBasicAuth("ada", "nope") },
			"unknown user":   func(r *http.Request) { r.SetBasicAuth("eve", adminPassword) },
			"other scheme":   func(r *http.Request) { r.Header.Set("Authorization", "Digest x") },
		} {
			res, body := f.get(nil, "/api/overview", mod)
			wantStatus(t, name, res, body, http.StatusUnauthorized)
		}
		if strings.Contains(f.logs.String(), "not-a-token") {
			t.Error("a token is in the log")
		}
	})
}

// TestCSRF: a browser identity's actions need the page's token, and
// cross-origin writes are refused whoever sends them.
func TestCSRF(t *testing.T) {
	f := newFixture(t, "sqlite", 2, withAuth)
	b := f.browser()
	tok := f.login(b, "ada", adminPassword)
	res, body := f.postForm(b, "/api/jobs/numbers/pause", url.Values{}, nil)
	wantStatus(t, "session, no token", res, body, http.StatusForbidden)
	res, body = f.postForm(b, "/api/jobs/numbers/pause", url.Values{"csrf": {tok + "0"}}, nil)
	wantStatus(t, "session, wrong token", res, body, http.StatusForbidden)
	res, body = f.postJSON(nil, "/api/jobs/numbers/pause", `{}`, func(r *http.Request) { r.SetBasicAuth("ada", adminPassword) })
	wantStatus(t, "basic auth, no token", res, body, http.StatusForbidden)
	res, body = f.postForm(b, "/api/jobs/numbers/pause", url.Values{"csrf": {tok}}, func(r *http.Request) {
		r.Header.Set("Sec-Fetch-Site", "cross-site")
	})
	wantStatus(t, "cross-site", res, body, http.StatusForbidden)
	res, body = f.postJSON(nil, "/api/jobs/numbers/pause", `{}`, func(r *http.Request) {
		bearer(adminToken)(r)
		r.Header.Set("Origin", "https://evil.example")
	})
	wantStatus(t, "foreign origin", res, body, http.StatusForbidden)
	if r, _ := f.client.JobReport(context.Background(), "numbers"); r.Paused {
		t.Fatal("a refused request paused the job")
	}
	res, body = f.postForm(b, "/api/jobs/numbers/pause", url.Values{"csrf": {tok}}, func(r *http.Request) {
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	wantStatus(t, "same origin with the token", res, body, http.StatusSeeOther)
	if r, _ := f.client.JobReport(context.Background(), "numbers"); !r.Paused {
		t.Fatal("the pause did not take")
	}
}

func TestBadCredentialsConfig(t *testing.T) {
	f := newFixture(t, "sqlite", 1)
	for name, o := range map[string]Options{
		"short token": {Tokens: []Token{{Name: "x", Token: "short", Role: RoleRead}}},
		"bad role":    {Users: []User{{Name: "x", Password: "p", Role: "root"}}},
		"no password": {Users: []User{{Name: "x", Role: RoleRead}}},
		"colon name":  {Users: []User{{Name: "a:b", Password: "p", Role: RoleRead}}},
		"twice":       {Users: []User{{Name: "a", Password: "p", Role: RoleRead}, {Name: "a", Password: "q", Role: RoleAdmin}}},
	} {
		o.Client = f.client
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}
