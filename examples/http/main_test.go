package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
	"github.com/pampa-go/pampa/internal/handler/httpcall"
)

const secret = "s3cret"

func server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(routes([]byte(secret)))
	t.Cleanup(srv.Close)
	return srv
}

// caller posts as a worker does, signing with the given secret.
func caller(t *testing.T, url, withSecret string) *httpcall.Caller {
	t.Setenv("EXAMPLE_HTTP_SECRET", withSecret)
	c, err := httpcall.New(httpcall.Spec{URL: url, SecretEnv: "EXAMPLE_HTTP_SECRET"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func try(value any) handler.Input {
	return handler.Input{Job: "search_odd_numbers", Key: value, Try: 1, Worker: "local.1",
		Deadline: time.Now().Add(time.Minute), Row: map[string]any{"value": value, "is_odd": nil}}
}

func TestTheTransportsTriesAreAnswered(t *testing.T) {
	srv := server(t)
	c := caller(t, srv.URL+"/odd", secret)
	for value, odd := range map[int64]bool{7: true, 8: false, -3: true, 0: false} {
		out := c.Call(context.Background(), try(value))
		if out.Err != nil || len(out.Set) != 1 || out.Set["is_odd"] != odd {
			t.Errorf("value %d: outcome = %+v, want is_odd = %v", value, out, odd)
		}
	}
	out := c.Call(context.Background(), try("seven"))
	if !out.Final || !strings.Contains(out.Err.Error(), "422 Unprocessable Entity") {
		t.Errorf("a text value: outcome = %+v, want failed for good", out)
	}
}

func TestAnotherSecretFailsForGood(t *testing.T) {
	out := caller(t, server(t).URL+"/odd", "not the server's").Call(context.Background(), try(int64(7)))
	if !out.Final || !strings.Contains(out.Err.Error(), "401 Unauthorized") || !strings.Contains(out.Err.Error(), "does not match the body") {
		t.Errorf("outcome = %+v, want refused for good", out)
	}
}

func TestTamperedRequestsAreRefused(t *testing.T) {
	srv := server(t)
	body := `{"job":"search_odd_numbers","try":1,"row":{"value":7}}`
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	cases := []struct {
		name, timestamp, signature, body string
		want                             int
	}{
		{"signed as the transport signs", now, httpcall.Sign([]byte(secret), now, []byte(body)), body, http.StatusOK},
		{"body changed", now, httpcall.Sign([]byte(secret), now, []byte(body)), strings.Replace(body, "7", "8", 1), http.StatusUnauthorized},
		{"timestamp changed", old, httpcall.Sign([]byte(secret), now, []byte(body)), body, http.StatusUnauthorized},
		{"replayed an hour later", old, httpcall.Sign([]byte(secret), old, []byte(body)), body, http.StatusUnauthorized},
		{"another secret", now, httpcall.Sign([]byte("other"), now, []byte(body)), body, http.StatusUnauthorized},
		{"unsigned", "", "", body, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/odd", strings.NewReader(tc.body))
		req.Header.Set(httpcall.HeaderTimestamp, tc.timestamp)
		req.Header.Set(httpcall.HeaderSignature, tc.signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s %q, want %d", tc.name, resp.Status, answer, tc.want)
		}
	}
}
