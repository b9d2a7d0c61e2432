package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

// TestHealthAndReady: healthz answers while the process is up; readyz
// only once a dispatcher leads, without credentials either way.
func TestHealthAndReady(t *testing.T) {
	f := newFixture(t, "sqlite", 1, withAuth)
	res, body := f.get(nil, "/healthz", nil)
	wantStatus(t, "healthz", res, body, http.StatusOK)
	res, body = f.get(nil, "/readyz", nil)
	wantStatus(t, "readyz without a leader", res, body, http.StatusServiceUnavailable)
	if !strings.Contains(body, "no dispatcher holds the lead") {
		t.Errorf("readyz body: %q", body)
	}
	f.run(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, body = f.get(nil, "/readyz", nil)
		if res.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantStatus(t, "readyz with a leader", res, body, http.StatusOK)
}

// TestJobTasks: the job page and /api/jobs/NAME/tasks list tasks by
// state, worker, key and error text, a page at a time; a task's page shows
// its columns; bad filters are 400s that say why.
func TestJobTasks(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 12)
		f.failForGood("Card DECLINED", 3, 9)
		f.failForGood("timeout", 10)
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.2', r_time = CURRENT_TIMESTAMP WHERE value IN (4, 11)`)
		list := func(query string) TaskList {
			t.Helper()
			res, body := f.get(nil, "/api/jobs/numbers/tasks?"+query, nil)
			wantStatus(t, "tasks?"+query, res, body, http.StatusOK)
			var l TaskList
			if err := json.Unmarshal([]byte(body), &l); err != nil {
				t.Fatal(err)
			}
			return l
		}
		keys := func(l TaskList) string {
			var ks []string
			for _, t := range l.Tasks {
				ks = append(ks, strings.Trim(string(must(json.Marshal(t.Key))), `"`))
			}
			return strings.Join(ks, ",")
		}
		for query, want := range map[string]string{
			"state=failed":                  "3,9,10",
			"state=failed&error=declined":   "3,9",
			"state=reserved&worker=local.2": "4,11",
			"key=9":                         "9",
			"state=pending&limit=3":         "1,2,5",
		} {
			if got := keys(list(query)); got != want {
				t.Errorf("tasks?%s = %s, want %s", query, got, want)
			}
		}
		// Paging walks every task once, 9 before 10.
		var all []string
		after := ""
		for range 10 {
			l := list("limit=5&after=" + url.QueryEscape(after))
			all = append(all, keys(l))
			if after = l.Next; after == "" {
				break
			}
		}
		if got := strings.Join(all, ","); got != "1,2,3,4,5,6,7,8,9,10,11,12" {
			t.Errorf("pages walked %s", got)
		}
		for query, why := range map[string]string{"state=done": `is not one of pending`, "limit=0": "limit", "limit=x": "limit",
			"key=seven": "not an integer", "after=1.5": "not an integer"} {
			res, body := f.get(nil, "/api/jobs/numbers/tasks?"+query, nil)
			wantStatus(t, "tasks?"+query, res, body, http.StatusBadRequest)
			if !strings.Contains(body, why) {
				t.Errorf("tasks?%s: the 400 does not say %q: %s", query, why, body)
			}
		}
		res, page := f.get(nil, "/jobs/numbers?state=failed&error=declined", nil)
		wantStatus(t, "job page with a filter", res, page, http.StatusOK)
		if !strings.Contains(page, `href="/jobs/numbers/tasks/3"`) || strings.Contains(page, `href="/jobs/numbers/tasks/10"`) {
			t.Error("the job page does not list what its filter selects")
		}
		res, page = f.get(nil, "/jobs/numbers/tasks/9", nil)
		wantStatus(t, "task page", res, page, http.StatusOK)
		for _, s := range []string{"Card DECLINED", "note 9", ">note<", `class="task failed"`} {
			if !strings.Contains(page, s) {
				t.Errorf("the task page lacks %q", s)
			}
		}
		res, body := f.get(nil, "/api/jobs/numbers/tasks/99", nil)
		wantStatus(t, "missing task", res, body, http.StatusNotFound)
		res, body = f.get(nil, "/api/jobs/numbers/tasks/x", nil)
		wantStatus(t, "bad key", res, body, http.StatusBadRequest)
	})
}

// TestRetryMatching: "retry all" with an error text retries only the
// failed tasks whose error holds it; form keys are converted as the key
// column needs.
func TestRetryMatching(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 8)
		f.failForGood("card declined", 1, 2, 3)
		f.failForGood("timeout", 4, 5)
		b := f.browser()
		tok := f.csrf(b)
		res, body := f.postForm(b, "/api/jobs/numbers/retry", url.Values{"csrf": {tok}, "all": {"1"}, "error": {"DECLINED"},
			"back": {"/failed?job=numbers"}}, nil)
		wantStatus(t, "retry matching", res, body, http.StatusSeeOther)
		tasks, err := f.client.Tasks(context.Background(), "numbers", pampaFailed())
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) != 2 {
			t.Errorf("after retrying the declined ones, %d failed remain, want the 2 timeouts", len(tasks))
		}
		_, page := f.get(b, "/failed?job=numbers", nil)
		if !strings.Contains(page, "3 task(s) retried") {
			t.Error("the failed page does not say what was retried")
		}
		res, body = f.postForm(b, "/api/jobs/numbers/retry", url.Values{"csrf": {tok}, "key": {"04"}}, nil)
		wantStatus(t, "retry one by form", res, body, http.StatusSeeOther)
		res, body = f.postForm(b, "/api/jobs/numbers/retry", url.Values{"csrf": {tok}, "key": {"four"}}, nil)
		wantStatus(t, "retry a bad key by form", res, body, http.StatusBadRequest)
		if !strings.Contains(body, "not an integer") || !strings.Contains(body, "<html") {
			t.Errorf("a form's bad key is answered with a page that says why: %.300s", body)
		}
		tasks, _ = f.client.Tasks(context.Background(), "numbers", pampaFailed())
		if len(tasks) != 1 {
			t.Errorf("after retrying 04, %d failed remain, want 1", len(tasks))
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCancelAndDrain: the cancel and drain actions call the Client's, and
// the workers page shows a drained worker and the tasks each holds.
func TestCancelAndDrain(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		f := newFixture(t, driver, 4, withAuth)
		ctx := context.Background()
		exec(t, f.client, `UPDATE numbers SET r_id = 'local.1', r_time = CURRENT_TIMESTAMP, r_start = CURRENT_TIMESTAMP, r_times = 1,
			r_end = CURRENT_TIMESTAMP, r_success = TRUE WHERE value = 4`)
		res, body := f.postJSON(nil, "/api/jobs/numbers/cancel", `{"keys": ["2", 4]}`, bearer(adminToken))
		wantStatus(t, "cancel", res, body, http.StatusOK)
		if !strings.Contains(body, "1 task(s) cancelled") {
			t.Errorf("cancel answered %s; want one cancelled (4 had succeeded)", body)
		}
		task, err := f.client.Task(ctx, "numbers", "2")
		if err != nil || task.State != "failed" || task.Error != "cancelled by an operator" {
			t.Errorf("task 2 after cancel: %+v %v", task.TaskInfo, err)
		}
		res, body = f.postJSON(nil, "/api/jobs/numbers/cancel", `{}`, bearer(adminToken))
		wantStatus(t, "cancel nothing", res, body, http.StatusBadRequest)
		res, body = f.postJSON(nil, "/api/jobs/nope/cancel", `{"keys": [1]}`, bearer(adminToken))
		wantStatus(t, "cancel in an unknown job", res, body, http.StatusNotFound)

		f.run(1)
		eventually(t, 10*time.Second, "local.1 to register", func() bool {
			ws, _ := f.client.Workers(ctx)
			return len(ws) == 1 && ws[0].Alive
		})
		res, body = f.postJSON(nil, "/api/workers/local.1/drain", `{}`, bearer(adminToken))
		wantStatus(t, "drain", res, body, http.StatusOK)
		if ws, _ := f.client.Workers(ctx); !ws[0].Drained {
			t.Errorf("local.1 is not drained: %+v", ws[0])
		}
		res, page := f.get(nil, "/workers", bearer(readToken))
		wantStatus(t, "workers page", res, page, http.StatusOK)
		if !strings.Contains(page, `class="state draining"`) || !strings.Contains(page, `data-field="held">`) {
			t.Error("the workers page does not show the drained worker and the tasks held")
		}
		res, body = f.postJSON(nil, "/api/workers/local.1/undrain", `{}`, bearer(adminToken))
		wantStatus(t, "undrain", res, body, http.StatusOK)
		if ws, _ := f.client.Workers(ctx); ws[0].Drained {
			t.Error("local.1 is still drained")
		}
		res, body = f.postJSON(nil, "/api/workers/local.9/drain", `{}`, bearer(adminToken))
		wantStatus(t, "drain an unknown worker", res, body, http.StatusNotFound)
		if !strings.Contains(body, "local.9") {
			t.Errorf("the 404 does not name the worker: %s", body)
		}
	})
}

// TestAPIEdges: what a script meets at the API's edges.
func TestAPIEdges(t *testing.T) {
	f := newFixture(t, "sqlite", 3, withAuth)
	res, body := f.get(nil, "/api/session", func(r *http.Request) { r.SetBasicAuth("ada", adminPassword) })
	wantStatus(t, "session", res, body, http.StatusOK)
	var s Session
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.User != "ada" || s.Role != RoleAdmin || len(s.CSRFToken) != 64 {
		t.Fatalf("session: %+v %v", s, err)
	}
	// The token it gives is the one basic auth's actions need.
	res, body = f.postJSON(nil, "/api/jobs/numbers/pause", `{}`, func(r *http.Request) {
		r.SetBasicAuth("ada", adminPassword)
		r.Header.Set("X-CSRF-Token", s.CSRFToken)
	})
	wantStatus(t, "basic auth with the session's token", res, body, http.StatusOK)
	if !strings.Contains(body, `"keys": []`) {
		t.Errorf("an action with no keys must answer keys: []: %s", body)
	}
	for name, c := range map[string]struct {
		body string
		want int
	}{
		"misspelt field":    {`{"all": true, "erorr": "timeout"}`, http.StatusBadRequest},
		"keys and all":      {`{"keys": [1], "all": true}`, http.StatusBadRequest},
		"keys and an error": {`{"keys": [1], "error": "x"}`, http.StatusBadRequest},
	} {
		res, body := f.postJSON(nil, "/api/jobs/numbers/retry", c.body, bearer(adminToken))
		wantStatus(t, name, res, body, c.want)
	}
	res, body = f.get(nil, "/api/nope", bearer(readToken))
	wantStatus(t, "unknown endpoint", res, body, http.StatusNotFound)
	if !strings.Contains(body, `"error": "no such endpoint: GET /api/nope`) {
		t.Errorf("unknown endpoint: %s", body)
	}
}

// With field_run_at, the overview shows the tasks scheduled for later
// beside the pending ones, as the report counts them.
func TestOverviewScheduled(t *testing.T) {
	f := newFixture(t, "sqlite", 5)
	exec(t, f.client, `ALTER TABLE numbers ADD COLUMN run_at TIMESTAMP`)
	c := f.client.Cluster()
	j := *c.Job("numbers")
	j.RunAt = "run_at"
	c2 := &pampa.Cluster{Database: c.Database}
	if err := c2.AddNode(pampa.Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	if err := c2.AddJob(j); err != nil {
		t.Fatal(err)
	}
	if _, err := pampa.Setup(context.Background(), c2, pampa.SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Open(context.Background(), c2)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec(t, client, `UPDATE numbers SET run_at = datetime('now', '+1 day') WHERE value IN (4, 5)`)
	srv, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	res, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if r, _ := client.JobReport(context.Background(), "numbers"); r.Scheduled != 2 || r.Pending != 3 {
		t.Fatalf("report %+v, want 3 pending and 2 scheduled", r)
	}
	if !strings.Contains(string(b), `data-field="pending">3 <span class="muted" data-field="scheduled"`) || !strings.Contains(string(b), "+2 later") {
		t.Errorf("the overview does not show 3 pending and 2 later:\n%s", b)
	}
}

// A job whose limits hold free slots back says so beside its running
// count, the reason in the cell's title, escaped.
func TestCountsShowLimited(t *testing.T) {
	t.Parallel()
	ts, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	js := JobSummary{JobReport: pampa.JobReport{Job: "scrape", Running: 4, Limited: 6, LimitReason: `3 groups at max_running_per_group <b>`}}
	if err := ts["overview"].ExecuteTemplate(&b, "counts", js); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, `data-field="limited"`) || !strings.Contains(out, "6 held back") ||
		!strings.Contains(out, "3 groups at max_running_per_group &lt;b&gt;") {
		t.Errorf("counts of a limited job:\n%s", out)
	}
	b.Reset()
	js.Limited, js.LimitReason = 0, ""
	if err := ts["overview"].ExecuteTemplate(&b, "counts", js); err != nil || strings.Contains(b.String(), "held back") {
		t.Errorf("counts of an unlimited job: %v\n%s", err, b.String())
	}
}
