package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server timeouts: long enough for a scrape whose database reads take
// their full ScrapeTimeout, short enough that idle or stalled clients do
// not hold connections.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = ScrapeTimeout + 10*time.Second
	idleTimeout       = time.Minute
	shutdownTimeout   = 5 * time.Second
)

// NewServer serves GET /metrics with metrics, behind a bearer token when
// token is not empty, and GET /healthz ("ok", never behind the token, for
// liveness probes).
func NewServer(metrics http.Handler, token string) *http.Server {
	mux := http.NewServeMux()
	if token != "" {
		metrics = requireToken(metrics, token)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
}

// requireToken lets through requests with "Authorization: Bearer
// <token>" (the scheme in any case, as HTTP has it). The digests of the two tokens are compared in constant time,
// so neither the token's bytes nor its length show in response times.
func requireToken(next http.Handler, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pampa"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Serve runs srv on ln until ctx ends, then shuts it down: scrapes in
// progress get shutdownTimeout to finish, then their connections are
// closed. It returns once the server has stopped.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err // the listener failed
	case <-ctx.Done():
	}
	shCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shCtx)
	if err != nil {
		err = errors.Join(err, srv.Close())
	}
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
