package httpcall

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Spec{URL: "https://handlers.example.com:8443/odd?v=2", SecretEnv: "PAMPA_HTTP_SECRET", Timeout: time.Minute,
		Headers: map[string]string{"Authorization": "Bearer x", "X-Trace": "a\tb"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", ok, err)
	}
	if err := (Spec{URL: "http://127.0.0.1:8099/odd"}).Validate(); err != nil {
		t.Errorf("a bare URL: %v", err)
	}
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "http: the URL is missing"},
		{Spec{URL: "ftp://host/x"}, `http = "ftp://host/x": must start with http:// or https://`},
		{Spec{URL: "127.0.0.1:8099/odd"}, `http = "127.0.0.1:8099/odd"`},
		{Spec{URL: "http:///odd"}, `http = "http:///odd": has no host`},
		{Spec{URL: "http://:80/odd"}, "has no host"},
		{Spec{URL: "http://h/odd#x"}, "a #fragment is never sent"},
		{Spec{URL: "http://h\n/odd"}, `http = "http://h\n/odd": parse`},
		{Spec{URL: "http://h", SecretEnv: "9LIVES"}, `http_secret_env = "9LIVES": not an environment variable name`},
		{Spec{URL: "http://h", SecretEnv: "$SECRET"}, `"$SECRET": not an environment variable name`},
		{Spec{URL: "http://h", Timeout: -time.Second}, `http_timeout = "-1s": must be positive, or 0`},
		{Spec{URL: "http://h", Headers: map[string]string{"Bad Name": "x"}}, `http_headers = "Bad Name": not a header name`},
		{Spec{URL: "http://h", Headers: map[string]string{"": "x"}}, `http_headers: not a header name`},
		{Spec{URL: "http://h", Headers: map[string]string{"content-type": "text/plain"}}, `"content-type": set by Pampa`},
		{Spec{URL: "http://h", Headers: map[string]string{"Idempotency-Key": "k"}}, "may not be replaced"},
		{Spec{URL: "http://h", Headers: map[string]string{"x-pampa-signature": "s"}}, "may not be replaced"},
		{Spec{URL: "http://h", Headers: map[string]string{"X-Note": "a\r\nEvil: 1"}}, `"X-Note": its value holds a control character`},
	}
	for _, tc := range cases {
		err := tc.spec.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
		if _, newErr := New(tc.spec, nil); newErr == nil {
			t.Errorf("New(%+v) accepted a spec Validate refuses", tc.spec)
		}
	}
}

func TestNewReadsTheSecret(t *testing.T) {
	t.Setenv("TEST_HTTPCALL_EMPTY", "")
	for _, env := range []string{"TEST_HTTPCALL_UNSET", "TEST_HTTPCALL_EMPTY"} {
		_, err := New(Spec{URL: "http://h", SecretEnv: env}, nil)
		if err == nil || !strings.Contains(err.Error(), `http_secret_env = "`+env+`": the environment variable is not set`) {
			t.Errorf("New with %s: err = %v, want it to name the variable", env, err)
		}
	}
	t.Setenv("TEST_HTTPCALL_SET", "s3cret")
	c, err := New(Spec{URL: "http://h", SecretEnv: "TEST_HTTPCALL_SET"}, nil)
	if err != nil || string(c.secret) != "s3cret" {
		t.Errorf("New with a set secret: %v", err)
	}
}

func TestErrorsHideTheURLsPassword(t *testing.T) {
	t.Parallel()
	c, err := New(Spec{URL: "http://user:hunter2@127.0.0.1:1/x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := c.Call(context.Background(), input())
	if out.Err == nil || strings.Contains(out.Err.Error(), "hunter2") || !strings.Contains(out.Err.Error(), "POST http://user:xxxxx@127.0.0.1:1/x: ") {
		t.Errorf("err = %v, want the URL with its password hidden", out.Err)
	}
}
