package httpcall

import (
	"errors"
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

// Validate checks the spec without reading the environment, so that a
// config can be checked on a machine that does not hold the secret. Its
// errors name the key and the value; the caller adds the job.
func (s Spec) Validate() error {
	if err := validateURL(s.URL); err != nil {
		return err
	}
	if s.SecretEnv != "" && !isEnvName(s.SecretEnv) {
		return fmt.Errorf("http.secret_env = %q: not an environment variable name (letters, digits and _, not starting with a digit)", s.SecretEnv)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("http.timeout = %s: must be positive, or 0 for the try's deadline", s.Timeout)
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
		return errors.New("http.url is missing: the address each try is posted to, such as http://127.0.0.1:8099/odd")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("http.url = %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("http.url = %q: must start with http:// or https://", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("http.url = %q: has no host", raw)
	}
	if u.Fragment != "" {
		return fmt.Errorf("http.url = %q: a #fragment is never sent to the server; remove it", raw)
	}
	return nil
}

func validateHeader(name, value string) error {
	if !isToken(name) {
		return fmt.Errorf("http.headers: %q is not a header name", name)
	}
	if reservedHeader(name) {
		return fmt.Errorf("http.headers: %q is set by Pampa on every request and may not be replaced", name)
	}
	if strings.ContainsFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return fmt.Errorf("http.headers: the value of %q holds a control character (a newline?)", name)
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
