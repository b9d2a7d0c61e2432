package httpcall

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Spec is a job's `http:` section: where each try is posted and how.
type Spec struct {
	// URL receives one POST per try; http or https, with a host.
	URL string
	// SecretEnv names the environment variable that holds the secret the
	// requests are signed with (X-Pampa-Signature). Empty: requests are
	// not signed. Set but the variable unset or empty where the worker
	// starts: New fails, naming it.
	SecretEnv string
	// Timeout bounds each request. 0: the try's deadline (the job's max
	// duration); a Timeout longer than what is left of the try is cut to it.
	Timeout time.Duration
	// Headers are added to every request, such as an Authorization. They
	// may not replace the headers Pampa sets itself (reservedHeader).
	Headers map[string]string
}

// SpecError is a bad Spec: the config key (http, http_secret_env,
// http_timeout, http_headers), its value and why.
type SpecError struct {
	Key, Value, Reason string
}

func (e *SpecError) Error() string {
	if e.Value == "" {
		return e.Key + ": " + e.Reason
	}
	return fmt.Sprintf("%s = %q: %s", e.Key, e.Value, e.Reason)
}

func specError(key, value, format string, args ...any) error {
	return &SpecError{Key: key, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks the spec without reading the environment, so that a
// config can be checked on a machine that does not hold the secret. Its
// errors are *SpecError, naming the key and the value; the caller adds
// the job.
func (s Spec) Validate() error {
	if err := validateURL(s.URL); err != nil {
		return err
	}
	if s.SecretEnv != "" && !isEnvName(s.SecretEnv) {
		return specError("http_secret_env", s.SecretEnv, "not an environment variable name (letters, digits and _, not starting with a digit)")
	}
	if s.Timeout < 0 {
		return specError("http_timeout", s.Timeout.String(), "must be positive, or 0 for the try's deadline")
	}
	for name, value := range s.Headers {
		if err := validateHeader(name, value); err != nil {
			return err
		}
	}
	return nil
}

func validateURL(raw string) error {
	if raw == "" {
		return specError("http", "", "the URL is missing: the address each try is posted to, such as http://127.0.0.1:8099/odd")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return specError("http", raw, "%v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return specError("http", raw, "must start with http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return specError("http", raw, "has no host")
	}
	if u.Fragment != "" {
		return specError("http", raw, "a #fragment is never sent to the server; remove it")
	}
	return nil
}

func validateHeader(name, value string) error {
	if !isToken(name) {
		return specError("http_headers", name, "not a header name")
	}
	if reservedHeader(name) {
		return specError("http_headers", name, "set by Pampa on every request; it may not be replaced")
	}
	if strings.ContainsFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return specError("http_headers", name, "its value holds a control character (a newline?)")
	}
	return nil
}

// reservedHeader names the headers a request's meaning or signature rests
// on, and those net/http manages itself.
func reservedHeader(name string) bool {
	c := http.CanonicalHeaderKey(name)
	switch c {
	case "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding",
		"Host", "Connection", "Idempotency-Key":
		return true
	}
	return strings.HasPrefix(c, "X-Pampa-")
}

func isEnvName(s string) bool {
	for i, r := range s {
		letter := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	for _, r := range s {
		alnum := (r >= '0' && r <= '9') || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", r) {
			return false
		}
	}
	return s != ""
}
