package pampa

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/handler/httpcall"
)

// oddReceiver answers the README job over HTTP, checking each request's
// signature; value 1 is refused for good (422), value 2 is answered 503
// on its first try, value 3 sets a column the table lacks.
func oddReceiver(t *testing.T, secret string) (*httptest.Server, func(v int64) int) {
	var mu sync.Mutex
	calls := map[int64]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := httpcall.Verify([]byte(secret), r.Header.Get(httpcall.HeaderTimestamp), r.Header.Get(httpcall.HeaderSignature), body, time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var in struct {
			Key int64
			Try int
			Row map[string]any
		}
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		calls[in.Key]++
		mu.Unlock()
		if want := "search_odd_numbers:" + strings.TrimSpace(string(mustJSON(in.Key))) + ":" + strings.TrimSpace(string(mustJSON(in.Try))); r.Header.Get("Idempotency-Key") != want {
			http.Error(w, "idempotency key "+r.Header.Get("Idempotency-Key")+", want "+want, http.StatusBadRequest)
			return
		}
		switch {
		case in.Key == 1:
			http.Error(w, "no such number", http.StatusUnprocessableEntity)
		case in.Key == 2 && in.Try == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case in.Key == 3:
			_, _ = io.WriteString(w, `{"nope": 1}`)
		default:
			_, _ = io.WriteString(w, `{"is_odd": `+map[bool]string{true: "true", false: "false"}[in.Key%2 == 1]+`}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func(v int64) int { mu.Lock(); defer mu.Unlock(); return calls[v] }
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// An http job runs with no Go function: each try is a signed POST, the
// answer's JSON sets columns, a 4xx fails the task for good at once, a
// 5xx is retried.
func TestHTTPJob(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const secret = "http-job-secret"
		srv, calls := oddReceiver(t, secret)
		job := oddJob()
		job.Process = nil
		job.MaxTryTimes = 3
		env := "PAMPA_TEST_HTTP_SECRET_" + strings.ToUpper(driver)
		// Parallel tests cannot t.Setenv: a name of this test's own.
		os.Setenv(env, secret)
		t.Cleanup(func() { os.Unsetenv(env) })
		job.HTTP = &HTTPSpec{URL: srv.URL + "/odd", SecretEnv: env}
		e := newEnv(t, driver, 30, job)
		r := e.start(2)
		rep := e.waitDone(job.Name, 30, 60*time.Second)
		r.stop(t)
		if rep.Completed != 28 || rep.Failed != 2 {
			t.Errorf("report = %+v, want 28 completed and 2 failed (1, 3)", rep)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE is_odd = (value % 2 = 1)`); n != 28 {
			t.Errorf("%d rows with is_odd right, want 28", n)
		}
		for v, want := range map[int64]int{1: 1, 2: 2, 3: 3, 4: 1} {
			if got := calls(v); got != want {
				t.Errorf("task %d was posted %d times, want %d", v, got, want)
			}
		}
		if st := e.rowState(1); !strings.Contains(st, "422") || !strings.Contains(st, "no such number") {
			t.Errorf("task 1: %s; want the 422 and its body", st)
		}
	})
}

// A wrong secret is refused for good by the receiver (401); an unset
// secret variable keeps the worker from starting.
func TestHTTPJobSecrets(t *testing.T) {
	srv, _ := oddReceiver(t, "the-right-secret")
	job := oddJob()
	job.Process = nil
	t.Setenv("PAMPA_TEST_HTTP_WRONG", "a-wrong-secret")
	job.HTTP = &HTTPSpec{URL: srv.URL, SecretEnv: "PAMPA_TEST_HTTP_WRONG"}
	e := newEnv(t, DriverSQLite, 3, job)
	r := e.start(1)
	rep := e.waitDone(job.Name, 3, 30*time.Second)
	r.stop(t)
	if rep.Failed != 3 {
		t.Errorf("report = %+v, want all 3 failed for good", rep)
	}
	if st := e.rowState(2); !strings.Contains(st, "401") || !strings.Contains(st, "| 3 |") {
		t.Errorf("task 2: %s; want 401, failed for good on its first try (count raised to 3)", st)
	}
	job.HTTP = &HTTPSpec{URL: srv.URL, SecretEnv: "PAMPA_TEST_HTTP_UNSET"}
	e2 := newEnv(t, DriverSQLite, 1, job)
	if _, err := e2.client.NewWorker("local.1", fastWorker()); err == nil || !strings.Contains(err.Error(), "PAMPA_TEST_HTTP_UNSET") {
		t.Errorf("a worker with the secret's variable unset: %v; want an error naming it", err)
	}
}

func TestHTTPJobValidation(t *testing.T) {
	for name, tt := range map[string]struct {
		mod  func(*Job)
		want string
	}{
		"bad scheme":   {func(j *Job) { j.HTTP = &HTTPSpec{URL: "ftp://x/y"} }, `http = "ftp://x/y": must start with http://`},
		"no host":      {func(j *Job) { j.HTTP = &HTTPSpec{URL: "http:///odd"} }, `http = "http:///odd"`},
		"with Process": {func(j *Job) { j.HTTP = &HTTPSpec{URL: "http://h/"} }, "Go processing function (Process) too"},
		"with exec": {func(j *Job) {
			j.Process = nil
			j.HTTP = &HTTPSpec{URL: "http://h/"}
			j.Exec = &ExecSpec{Command: []string{"true"}}
		}, "runs a command (exec) too"},
	} {
		j := oddJob()
		if name != "with Process" {
			j.Process = nil
		}
		tt.mod(&j)
		j = j.WithDefaults()
		if err := j.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "search_odd_numbers") {
			t.Errorf("%s: Validate = %v; want an error naming the job and %q", name, err, tt.want)
		}
	}
}
