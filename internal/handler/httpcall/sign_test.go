package httpcall

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scheme as docs/handlers-http.md states it, computed apart in Python:
// hmac.new(b"s3cret", b'1700000000.{"job":"j"}', hashlib.sha256).hexdigest()
func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()
	got := Sign([]byte("s3cret"), "1700000000", []byte(`{"job":"j"}`))
	if want := "sha256=b2114bb97d0d1108b498bef5bd611162dd271244e31a283400b00142dcbc73bd"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	secret, body := []byte("s3cret"), []byte(`{"job":"odd"}`)
	at := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }
	now, old := at(0), at(-10*time.Minute)
	cases := []struct {
		name           string
		secret         []byte
		timestamp, sig string
		body           []byte
		skew           time.Duration
		wantErr        string // "" for accepted
	}{
		{"signed now", secret, now, Sign(secret, now, body), body, 5 * time.Minute, ""},
		{"upper-case hex", secret, now, "sha256=" + strings.ToUpper(Sign(secret, now, body)[7:]), body, time.Minute, ""},
		{"old, no skew check", secret, old, Sign(secret, old, body), body, 0, ""},
		{"old", secret, old, Sign(secret, old, body), body, 5 * time.Minute, "signed 10m0s ago, more than 5m0s"},
		{"from the future", secret, at(time.Hour), Sign(secret, at(time.Hour), body), body, 5 * time.Minute, "ahead of this clock, more than 5m0s"},
		{"another secret", []byte("other"), now, Sign(secret, now, body), body, time.Minute, "does not match the body"},
		{"changed body", secret, now, Sign(secret, now, body), []byte(`{"job":"evil"}`), time.Minute, "does not match"},
		{"timestamp changed", secret, at(-time.Second), Sign(secret, now, body), body, time.Minute, "does not match"},
		{"no timestamp", secret, "", Sign(secret, now, body), body, time.Minute, "X-Pampa-Timestamp or X-Pampa-Signature is missing"},
		{"no signature", secret, now, "", body, time.Minute, "is missing"},
		{"timestamp not a number", secret, "yesterday", Sign(secret, "yesterday", body), body, 0, `X-Pampa-Timestamp = "yesterday" is not unix seconds`},
		{"no prefix", secret, now, Sign(secret, now, body)[7:], body, time.Minute, `does not start with "sha256="`},
	}
	for _, tc := range cases {
		err := Verify(tc.secret, tc.timestamp, tc.sig, tc.body, tc.skew)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: Verify = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature with %q", tc.name, err, tc.wantErr)
		}
	}
}

// verifying answers 401 to a request whose signature Verify refuses.
func verifying(secret string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify([]byte(secret), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"signed": true}`)
	}
}

func TestSignedRequests(t *testing.T) {
	t.Setenv("TEST_HTTPCALL_SECRET", "s3cret")
	t.Setenv("TEST_HTTPCALL_OTHER", "not the server's")
	signed := func(env string) func(*Spec) { return func(s *Spec) { s.SecretEnv = env } }

	out := call(t, setup(t, verifying("s3cret"), signed("TEST_HTTPCALL_SECRET")))
	if out.Err != nil || out.Set["signed"] != true {
		t.Errorf("right secret: outcome = %+v, want accepted", out)
	}
	out = call(t, setup(t, verifying("s3cret"), signed("TEST_HTTPCALL_OTHER")))
	if !out.Final || !strings.Contains(out.Err.Error(), "401 Unauthorized") || !strings.Contains(out.Err.Error(), "does not match the body") {
		t.Errorf("wrong secret: outcome = %+v, want refused for good", out)
	}
	out = call(t, setup(t, verifying("s3cret")))
	if !out.Final || !strings.Contains(out.Err.Error(), "is missing") {
		t.Errorf("no secret: outcome = %+v, want refused as unsigned", out)
	}
}
