package pampa

import (
	"errors"
	"fmt"
	"time"

	"github.com/pampa-go/pampa/internal/handler/httpcall"
)

// HTTPSpec runs a job's processing function behind a URL: each try is one
// POST of the task as JSON, signed, and the answer's status and body are
// the outcome (docs/handlers-http.md). The stock `pampa` binary runs such
// jobs with no Go code. In a config file: the job keys http (the URL),
// http_secret_env, http_timeout and http_headers.
type HTTPSpec struct {
	// URL receives the POSTs: http or https, with a host.
	URL string
	// SecretEnv names the environment variable holding the HMAC-SHA256
	// secret the requests are signed with; "" sends them unsigned. A
	// worker refuses to start when it names a variable that is unset.
	SecretEnv string
	// Timeout bounds each request; 0: the try's deadline (the job's
	// max duration) alone.
	Timeout time.Duration
	// Headers are added to each request; Pampa's own cannot be replaced.
	Headers map[string]string
}

func (h *HTTPSpec) spec() httpcall.Spec {
	return httpcall.Spec{URL: h.URL, SecretEnv: h.SecretEnv, Timeout: h.Timeout, Headers: h.Headers}
}

// validate checks the spec's form; the secret itself is read when a
// worker starts, so that a config can be checked where it is not set.
func (h *HTTPSpec) validate(bad func(field string, value any, why string) error) error {
	var e *httpcall.SpecError
	if err := h.spec().Validate(); errors.As(err, &e) {
		return bad(e.Key, e.Value, e.Reason)
	} else if err != nil {
		return bad("http", h.URL, err.Error())
	}
	return nil
}

// newHTTPCaller makes a worker's caller of an http job: one client, its
// connections kept alive across tries, as many as the worker runs at once.
func newHTTPCaller(j *Job, opts WorkerOptions) (caller, error) {
	c, err := httpcall.New(j.HTTP.spec(), httpcall.NewClient(max(opts.Concurrency, 1)))
	var e *httpcall.SpecError
	if errors.As(err, &e) {
		return nil, &ConfigError{Job: j.Name, Field: e.Key, Value: e.Value, Reason: e.Reason}
	}
	if err != nil {
		return nil, fmt.Errorf("job %q: http: %w", j.Name, err)
	}
	return c, nil
}
