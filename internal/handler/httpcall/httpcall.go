// Package httpcall is the http transport of processing functions: each
// try of a task is one signed POST of its handler.Input as JSON, and the
// answer's status and body are its handler.Outcome. docs/handlers-http.md
// describes the exchange for the authors of receivers.
package httpcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
)

const (
	// MaxResponse caps the body read from an answer; a 2xx body past it
	// fails the try, so that a runaway server cannot fill the worker's memory.
	MaxResponse = 1 << 20
	// DefaultConns is the idle connections kept to the server when New
	// builds the client: enough for any worker's concurrency in practice.
	DefaultConns = 64
	// DefaultTimeout bounds a request whose context has no deadline and
	// whose Spec has no Timeout (the worker's tries always have a deadline).
	DefaultTimeout = 15 * time.Minute
)

// Caller posts the tries of one job's tasks. It is safe for concurrent
// use; its client keeps connections alive between tries.
type Caller struct {
	url     string
	shown   string // url with any password hidden, for error texts
	secret  []byte // nil: unsigned requests
	timeout time.Duration
	headers http.Header
	client  *http.Client
	now     func() time.Time
}

// New checks s, reads its secret from the environment and returns the
// Caller. client nil: NewClient(DefaultConns). The client is copied, never
// changed, to refuse redirects.
func New(s Spec, client *http.Client) (*Caller, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(s.URL) // checked by Validate
	c := &Caller{url: s.URL, shown: u.Redacted(), timeout: s.Timeout, headers: http.Header{}, now: time.Now}
	if s.SecretEnv != "" {
		secret := os.Getenv(s.SecretEnv)
		if secret == "" {
			return nil, specError("http_secret_env", s.SecretEnv, "the environment variable is not set (or is empty) where this worker runs: it holds the secret the requests are signed with")
		}
		c.secret = []byte(secret)
	}
	for name, value := range s.Headers {
		c.headers.Set(name, value)
	}
	if client == nil {
		client = NewClient(DefaultConns)
	}
	own := *client
	own.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.client = &own
	return c, nil
}

// Close drops the idle connections to the server, for a worker that stops.
// The Caller stays usable: a later Call dials again.
func (c *Caller) Close() { c.client.CloseIdleConnections() }

// NewClient returns a client for one Caller: keep-alive with up to conns
// idle connections to the server (a worker's concurrency; 0 or less:
// DefaultConns), and bounded dial and TLS handshake. It sets no overall
// or response-header timeout: a handler may answer only when its work is
// done, so each request is bounded by the try's deadline instead.
func NewClient(conns int) *http.Client {
	if conns <= 0 {
		conns = DefaultConns
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// Call runs one try: it posts in and maps the answer to an Outcome. It
// returns once the answer is read or the request's time is up.
func (c *Caller) Call(ctx context.Context, in handler.Input) handler.Outcome {
	body, err := json.Marshal(in)
	if err != nil {
		return handler.Outcome{Err: fmt.Errorf("http: the task's input is not JSON: %w", err)}
	}
	ctx, cancel, limit := c.bound(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return handler.Outcome{Err: fmt.Errorf("POST %s: %w", c.shown, err)}
	}
	req.Header = c.headers.Clone() // shared by concurrent tries: never handed out
	c.setHeaders(req.Header, in, body)
	resp, err := c.client.Do(req)
	if err != nil {
		return handler.Outcome{Err: c.failure(ctx, limit, err)}
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body)
	if err != nil && !errors.Is(err, errTooLarge) {
		return handler.Outcome{Err: c.failure(ctx, limit, fmt.Errorf("reading the answer's body: %w", err))}
	}
	return c.outcome(resp, data, err != nil)
}

// bound gives the request its time: the try's deadline, or the Spec's
// Timeout if that comes first. limit describes it for a timeout's error.
func (c *Caller) bound(ctx context.Context) (context.Context, context.CancelFunc, string) {
	deadline, has := ctx.Deadline()
	switch {
	case c.timeout > 0 && (!has || time.Until(deadline) > c.timeout):
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		return ctx, cancel, fmt.Sprintf("%s (http_timeout)", c.timeout)
	case has:
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, fmt.Sprintf("%s (the try's deadline)", time.Until(deadline).Round(time.Millisecond))
	default:
		ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		return ctx, cancel, fmt.Sprintf("%s (the default timeout)", DefaultTimeout)
	}
}

func (c *Caller) setHeaders(h http.Header, in handler.Input, body []byte) {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "pampa")
	h.Set("Idempotency-Key", idempotencyKey(in))
	h.Set("X-Pampa-Job", escapeHeader(in.Job))
	h.Set("X-Pampa-Try", strconv.Itoa(in.Try))
	if c.secret != nil {
		ts := strconv.FormatInt(c.now().Unix(), 10)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, Sign(c.secret, ts, body))
	}
}

// failure describes a request that got no complete answer: a timeout, a
// cancelled try, or a network error. All are worth another try.
func (c *Caller) failure(ctx context.Context, limit string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("POST %s: no answer within %s", c.shown, limit)
	case ctx.Err() != nil:
		return fmt.Errorf("POST %s: cancelled before the answer: %w", c.shown, context.Cause(ctx))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the method and URL
	}
	return fmt.Errorf("POST %s: %w", c.shown, err)
}
