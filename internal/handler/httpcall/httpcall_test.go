package httpcall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bundle is a real server and a Caller posting to it.
type bundle struct {
	srv    *httptest.Server
	caller *Caller
	conns  atomic.Int32 // connections the server accepted
}

// setup starts a server answering with h and a Caller for its /try path;
// edit, if given, changes the Spec first.
func setup(t testing.TB, h http.HandlerFunc, edit ...func(*Spec)) *bundle {
	t.Helper()
	b := &bundle{srv: httptest.NewUnstartedServer(h)}
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	spec := Spec{URL: b.srv.URL + "/try"}
	for _, e := range edit {
		e(&spec)
	}
	c, err := New(spec, nil)
	if err != nil {
		t.Fatalf("New(%+v): %v", spec, err)
	}
	t.Cleanup(c.Close)
	b.caller = c
	return b
}

func input() handler.Input {
	return handler.Input{Job: "odd", Key: int64(42), Try: 3, Worker: "local.1",
		Deadline: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Row: map[string]any{"value": int64(42)}}
}

func call(t *testing.T, b *bundle) handler.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.caller.Call(ctx, input())
}

func answer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code      int
		body      string
		wantErr   string // "" for success
		wantFinal bool
	}{
		{200, "", "", false},
		{201, `{"is_odd": false}`, "", false},
		{204, "", "", false},
		{400, "no value", `answered 400 Bad Request: body "no value" (a 4xx: not tried again)`, true},
		{404, "", "answered 404 Not Found: body empty (a 4xx: not tried again)", true},
		{422, "bad row", "422 Unprocessable Entity", true},
		{408, "slow", `answered 408 Request Timeout: body "slow"`, false},
		{429, "later", "answered 429 Too Many Requests", false},
		{500, "boom\n", `answered 500 Internal Server Error: body "boom\n"`, false},
		{503, "", "503 Service Unavailable", false},
	}
	for _, tc := range cases {
		b := setup(t, answer(tc.code, tc.body))
		out := call(t, b)
		if tc.wantErr == "" {
			if out.Err != nil || out.Final {
				t.Errorf("%d: outcome = %+v, want success", tc.code, out)
			}
			continue
		}
		if out.Err == nil || !strings.Contains(out.Err.Error(), tc.wantErr) {
			t.Errorf("%d: err = %v, want it to contain %q", tc.code, out.Err, tc.wantErr)
		}
		if out.Final != tc.wantFinal || errors.Is(out.Err, handler.ErrFinal) != tc.wantFinal {
			t.Errorf("%d: Final = %v, errors.Is(ErrFinal) = %v, want %v", tc.code, out.Final, errors.Is(out.Err, handler.ErrFinal), tc.wantFinal)
		}
		if !strings.Contains(out.Err.Error(), "POST "+b.srv.URL+"/try") {
			t.Errorf("%d: err = %v, want the URL in it", tc.code, out.Err)
		}
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	out := call(t, b)
	if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), `answered 307 Temporary Redirect to "/elsewhere": redirects are not followed`) {
		t.Errorf("outcome = %+v, want a failed try naming the redirect", out)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want 0", n)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body    string
		wantSet map[string]any
		wantErr string
	}{
		{"", nil, ""},
		{" \n\t", nil, ""},
		{"{}", nil, ""},
		{`{"is_odd": true, "n": 7, "ratio": 0.5, "big": 12345678901234, "name": "x", "gone": null}`,
			map[string]any{"is_odd": true, "n": int64(7), "ratio": 0.5, "big": int64(12345678901234), "name": "x", "gone": nil}, ""},
		{`[1, 2]`, nil, `its body is not a JSON object of columns to set; body "[1, 2]"`},
		{`true`, nil, "not a JSON object"},
		{`{"a": 1`, nil, `its body is not valid JSON: unexpected EOF; body "{\"a\": 1"`},
		{`{"a": 1} {"b": 2}`, nil, "more than one JSON value"},
		{`{"a": {"b": 1}}`, nil, `column "a" is a nested JSON value: send it as a string`},
		{`{"a": 1e999}`, nil, `column "a": the number 1e999 is out of range`},
		{"<html>" + strings.Repeat("x", 1000), nil, `"<html>xxx`},
	}
	for _, tc := range cases {
		out := call(t, setup(t, answer(200, tc.body)))
		if tc.wantErr != "" {
			if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), tc.wantErr) {
				t.Errorf("body %q: outcome = %+v, want a failed try with %q", tc.body, out, tc.wantErr)
			}
			continue
		}
		if out.Err != nil {
			t.Errorf("body %q: err = %v", tc.body, out.Err)
		}
		if !equalJSON(out.Set, tc.wantSet) {
			t.Errorf("body %q: Set = %#v, want %#v", tc.body, out.Set, tc.wantSet)
		}
	}
}

// equalJSON compares sets by value and Go type (int64 is not float64).
func equalJSON(got, want map[string]any) bool {
	if (got == nil) != (want == nil) || len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

func TestQuotedBodyIsCapped(t *testing.T) {
	t.Parallel()
	out := call(t, setup(t, answer(500, strings.Repeat("y", 10_000))))
	if out.Err == nil || len(out.Err.Error()) > 400 || !strings.HasSuffix(out.Err.Error(), `yyy"…`) {
		t.Errorf("err = %v (%d bytes), want the body's start quoted and cut", out.Err, len(out.Err.Error()))
	}
}

// endless answers a body that never ends, until the client goes.
func endless(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		chunk := []byte(strings.Repeat("z", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

func TestHugeBodyIsNotReadToItsEnd(t *testing.T) {
	t.Parallel()
	out := call(t, setup(t, endless(200)))
	if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), "answered 200 OK with a body of more than 1048576 bytes: response too large") {
		t.Errorf("200 endless: outcome = %+v, want a failed try, response too large", out)
	}
	out = call(t, setup(t, endless(404)))
	if !out.Final || !strings.Contains(out.Err.Error(), `answered 404 Not Found: body "zzz`) || !strings.Contains(out.Err.Error(), `zzz"…`) {
		t.Errorf("404 endless: outcome = %+v, want failed for good quoting the body's start", out)
	}
}

// hang never answers: it returns when the client goes away. (The server
// notices that only once the request's body is read.)
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func TestSlowServerFailsTheTryInTime(t *testing.T) {
	t.Parallel()
	b := setup(t, hang)
	check := func(ctx context.Context, limit time.Duration, want string) {
		t.Helper()
		start := time.Now()
		out := b.caller.Call(ctx, input())
		took := time.Since(start)
		if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), want) {
			t.Errorf("outcome = %+v, want a failed try with %q", out, want)
		}
		if took < limit || took > limit+2*time.Second {
			t.Errorf("Call took %s, want about %s", took, limit)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	check(ctx, 300*time.Millisecond, "(the try's deadline)")

	short := setup(t, hang, func(s *Spec) { s.Timeout = 200 * time.Millisecond })
	b.caller = short.caller
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check(ctx, 200*time.Millisecond, "no answer within 200ms (http_timeout)")
}

func TestCancelledTry(t *testing.T) {
	t.Parallel()
	b := setup(t, hang)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(errors.New("the worker stops")) })
	out := b.caller.Call(ctx, input())
	if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), "cancelled before the answer: the worker stops") {
		t.Errorf("outcome = %+v, want a failed try saying it was cancelled", out)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New(Spec{URL: "http://" + addr + "/try"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := c.Call(context.Background(), input())
	if out.Err == nil || out.Final || !strings.Contains(out.Err.Error(), "POST http://"+addr+"/try: dial tcp "+addr) {
		t.Errorf("outcome = %+v, want a retryable dial error", out)
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var body []byte
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body) // a short body fails to decode below
	}, func(s *Spec) { s.Headers = map[string]string{"authorization": "Bearer t0ken"} })
	if out := call(t, b); out.Err != nil {
		t.Fatal(out.Err)
	}
	want := map[string]string{
		"Content-Type": "application/json", "Idempotency-Key": "odd:42:3", "X-Pampa-Job": "odd",
		"X-Pampa-Try": "3", "Authorization": "Bearer t0ken", "X-Pampa-Signature": "",
	}
	for name, value := range want {
		if g := got.Header.Get(name); g != value {
			t.Errorf("header %s = %q, want %q", name, g, value)
		}
	}
	if got.Method != http.MethodPost || got.URL.Path != "/try" {
		t.Errorf("request = %s %s, want POST /try", got.Method, got.URL.Path)
	}
	var in handler.Input
	if err := json.Unmarshal(body, &in); err != nil || in.Job != "odd" || in.Try != 3 || in.Worker != "local.1" ||
		in.Key != float64(42) || in.Row["value"] != float64(42) || !in.Deadline.Equal(input().Deadline) {
		t.Errorf("body %s decodes to %+v (%v), want the input back", body, in, err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		job  string
		key  any
		try  int
		want string
	}{
		{"odd", int64(42), 1, "odd:42:1"},
		{"odd", "abc", 2, "odd:abc:2"},
		{"odd", "a b:c%\n", 3, "odd:a%20b:c%25%0A:3"},
		{"my job", 1.5, 1, "my%20job:1.5:1"},
		{"odd", "número", 1, "odd:n%C3%BAmero:1"},
		{"odd", nil, 1, "odd:null:1"},
	}
	for _, tc := range cases {
		if got := idempotencyKey(handler.Input{Job: tc.job, Key: tc.key, Try: tc.try}); got != tc.want {
			t.Errorf("idempotencyKey(%q, %#v, %d) = %q, want %q", tc.job, tc.key, tc.try, got, tc.want)
		}
	}
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 { // successes and failures alike leave the connection open
		case 0:
			answer(200, `{"is_odd": true}`)(w, r)
		case 1:
			answer(404, strings.Repeat("n", 5000))(w, r)
		default:
			answer(503, "")(w, r)
		}
	})
	for range 30 {
		call(t, b)
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("30 sequential calls opened %d connections, want 1", got)
	}
}

func TestNewKeepsTheGivenClient(t *testing.T) {
	t.Parallel()
	client := &http.Client{}
	c, err := New(Spec{URL: "http://127.0.0.1:1/"}, client)
	if err != nil {
		t.Fatal(err)
	}
	if client.CheckRedirect != nil || c.client == client || c.client.CheckRedirect == nil {
		t.Errorf("New changed the given client, or did not refuse redirects on its copy")
	}
}

func TestConcurrentTries(t *testing.T) {
	t.Setenv("TEST_HTTPCALL_CONCURRENT", "s3cret")
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if Verify([]byte("s3cret"), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Minute) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"try": %s, "key": %q}`, r.Header.Get("X-Pampa-Try"), r.Header.Get("Idempotency-Key"))
	}
	b := setup(t, echo, func(s *Spec) { s.SecretEnv = "TEST_HTTPCALL_CONCURRENT" })
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Go(func() {
			for i := range 5 {
				in := input()
				in.Key, in.Try = int64(g), i+1
				out := b.caller.Call(context.Background(), in)
				if want := fmt.Sprintf("odd:%d:%d", g, i+1); out.Err != nil || out.Set["try"] != int64(i+1) || out.Set["key"] != want {
					t.Errorf("try %s: outcome = %+v", want, out)
				}
			}
		})
	}
	wg.Wait()
	// A try that finds no idle connection dials one, and keeps it even
	// if another frees up first: a few more than 40, never one per call.
	if n := b.conns.Load(); n >= 200 {
		t.Errorf("200 calls from 40 callers opened %d connections, want them reused", n)
	}
}
