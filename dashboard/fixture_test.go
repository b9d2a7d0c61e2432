package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

var drivers = []string{pampa.DriverSQLite, pampa.DriverPostgres}

// eachDriver runs fn in a parallel subtest per database.
func eachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// fixture is a dashboard over a job `numbers` of a fresh database, served
// by an httptest server on loopback.
type fixture struct {
	t      *testing.T
	client *pampa.Client
	srv    *Server
	http   *httptest.Server
	logs   *syncBuffer
}

const (
	adminPassword = "admin-password-1"
	readPassword  = "read-password-1"
	adminToken    = "admin-token-0123456789"
	readToken     = "read-token-0123456789"
)

// config is what a fixture is built with: the dashboard's options and the
// job's processing function.
type config struct {
	Options
	process pampa.ProcessFunc
}

// withAuth configures an admin and a read-only user and token.
func withAuth(o *config) {
	o.Users = []User{{Name: "ada", Password: adminPassword, Role: RoleAdmin}, {Name: "rob", Password: readPassword, Role: RoleRead}}
	o.Tokens = []Token{{Name: "ci", Token: adminToken, Role: RoleAdmin}, {Name: "grafana", Token: readToken, Role: RoleRead}}
}

func numbersJob(process pampa.ProcessFunc) pampa.Job {
	return pampa.Job{
		Name: "numbers", Table: "numbers", PrimaryKey: "value",
		Fields: pampa.TrackingFields{ReservationID: "r_id", ReservationTime: "r_time", ReservationTimes: "r_times",
			StartTime: "r_start", EndTime: "r_end", Success: "r_success", ErrorDescription: "r_error"},
		QueueSize: 5, MaxTryTimes: 2, Process: process,
	}
}

func newFixture(t *testing.T, driver string, rows int, configure ...func(*config)) *fixture {
	t.Helper()
	ctx := context.Background()
	db := pampa.Database{Driver: driver, URL: testdb.SQLitePath(t)}
	if driver == pampa.DriverPostgres {
		db.URL = testdb.PostgresURL(t)
	}
	c := &pampa.Cluster{Database: db}
	if err := c.AddNode(pampa.Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := config{Options: Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), SampleEvery: 100 * time.Millisecond},
		process: func(context.Context, *pampa.Task) error { return nil }}
	for _, f := range configure {
		f(&cfg)
	}
	if err := c.AddJob(numbersJob(cfg.process)); err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec(t, client, `CREATE TABLE numbers (value integer PRIMARY KEY, note text)`)
	for v := 1; v <= rows; v++ {
		exec(t, client, `INSERT INTO numbers (value, note) VALUES (?, ?)`, v, fmt.Sprintf("note %d", v))
	}
	if _, err := pampa.Setup(ctx, c, pampa.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg.Client = client
	srv, err := New(cfg.Options)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &fixture{t: t, client: client, srv: srv, http: hs, logs: logs}
}

// run starts a dispatcher and n workers in this process, with short
// intervals, and the dashboard's sampler; all stop when the test ends.
func (f *fixture) run(n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				f.t.Errorf("%s: %v", name, err)
			}
		}()
	}
	f.t.Cleanup(func() { cancel(); wg.Wait() })
	d := f.client.NewDispatcher(pampa.DispatcherOptions{Delay: 20 * time.Millisecond, MaintenanceEvery: 50 * time.Millisecond,
		LeaseTTL: 2 * time.Second, WorkerTTL: 30 * time.Second, ReleaseAfter: time.Minute})
	start("dispatcher", d.Run)
	for i := 1; i <= n; i++ {
		w, err := f.client.NewWorker(pampa.WorkerID("local", i), pampa.WorkerOptions{Delay: 20 * time.Millisecond,
			HeartbeatInterval: 200 * time.Millisecond, HeartbeatTTL: 30 * time.Second, GracePeriod: 2 * time.Second})
		if err != nil {
			f.t.Fatal(err)
		}
		start(pampa.WorkerID("local", i), w.Run)
	}
	start("sampler", f.srv.Run)
}

// exec runs SQL with '?' placeholders on either database.
func exec(t *testing.T, c *pampa.Client, query string, args ...any) {
	t.Helper()
	if c.Driver() == pampa.DriverPostgres {
		for i := 1; strings.Contains(query, "?"); i++ {
			query = strings.Replace(query, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	if _, err := c.DB().Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// failForGood makes tasks failed for good, with an error text.
func (f *fixture) failForGood(msg string, keys ...int) {
	f.t.Helper()
	for _, k := range keys {
		exec(f.t, f.client, `UPDATE numbers SET r_id = 'local.1', r_times = 2, r_start = CURRENT_TIMESTAMP,
			r_end = CURRENT_TIMESTAMP, r_success = FALSE, r_error = ? WHERE value = ?`, msg, k)
	}
}

// browser is an HTTP client with a cookie jar, like a browser's.
func (f *fixture) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request; mod may set headers.
func (f *fixture) do(c *http.Client, method, path string, body io.Reader, mod func(*http.Request)) (*http.Response, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	if c == nil {
		c = f.browser()
	}
	res, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (f *fixture) get(c *http.Client, path string, mod func(*http.Request)) (*http.Response, string) {
	f.t.Helper()
	return f.do(c, http.MethodGet, path, nil, mod)
}

// postForm posts a form as the pages do.
func (f *fixture) postForm(c *http.Client, path string, form url.Values, mod func(*http.Request)) (*http.Response, string) {
	f.t.Helper()
	return f.do(c, http.MethodPost, path, strings.NewReader(form.Encode()), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if mod != nil {
			mod(r)
		}
	})
}

// postJSON posts a JSON body as a program does.
func (f *fixture) postJSON(c *http.Client, path, body string, mod func(*http.Request)) (*http.Response, string) {
	f.t.Helper()
	return f.do(c, http.MethodPost, path, strings.NewReader(body), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/json")
		if mod != nil {
			mod(r)
		}
	})
}

// login signs a browser in and returns the CSRF token of its pages.
func (f *fixture) login(c *http.Client, name, password string) string {
	f.t.Helper()
	res, _ := f.postForm(c, "/login", url.Values{"name": {name}, "password": {password}, "next": {"/"}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("login %s: status %d, want 303", name, res.StatusCode)
	}
	return f.csrf(c)
}

// csrf reads the CSRF token from the overview page.
func (f *fixture) csrf(c *http.Client) string {
	f.t.Helper()
	res, body := f.get(c, "/", nil)
	if res.StatusCode != http.StatusOK {
		f.t.Fatalf("GET /: status %d", res.StatusCode)
	}
	_, rest, ok := strings.Cut(body, `name="csrf-token" content="`)
	if !ok {
		f.t.Fatal("no csrf-token meta on the page")
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func wantStatus(t *testing.T, what string, res *http.Response, body string, want int) {
	t.Helper()
	if res.StatusCode != want {
		t.Fatalf("%s: status %d, want %d; body: %.300s", what, res.StatusCode, want, body)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func pampaFailed() pampa.TaskFilter { return pampa.TaskFilter{State: pampa.StateFailed} }
