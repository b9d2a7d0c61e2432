// Package dashboard serves Pampa's web dashboard, its JSON API and its
// Prometheus metrics over a [pampa.Client]: jobs and their tasks, failed
// tasks, workers and nodes, with the operator's actions (pause, resume,
// cancel, retry, discard, drain).
//
// Everything it shows or does goes through the Client's own methods, the
// ones the CLI uses; it has no SQL of its own. Its pages are rendered on the
// server with html/template, so that text from user code (error
// descriptions, column values) is always escaped; the one script, served
// from the binary, only refreshes the page.
//
//	srv, err := dashboard.New(dashboard.Options{Client: client, Users: users})
//	err = srv.Serve(ctx, "127.0.0.1:8080")
//
// A program that mounts the handler in a server of its own runs
// [Server.Run] beside it, for the throughput samples.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pampa-go/pampa"
)

// Options configure a dashboard.
type Options struct {
	Client *pampa.Client // required
	// Users and Tokens are who may sign in. With none, the dashboard
	// serves loopback addresses only, and every visitor is an admin.
	Users  []User
	Tokens []Token
	// ReadOnly refuses every action, whoever asks.
	ReadOnly bool
	// NodeStatus reads the nodes' state over SSH for the Nodes page; nil
	// leaves the page without it.
	NodeStatus func(ctx context.Context) ([]NodeStatus, error)
	// Metrics, when set, is served at /metrics (to every signed-in role).
	Metrics http.Handler
	// SampleEvery is how often Run samples the jobs' counts for the
	// throughput figures and charts; default 5 s.
	SampleEvery time.Duration
	Logger      *slog.Logger // default slog.Default()
	Version     string       // shown in the footer
}

// Server is the dashboard: an http.Handler.
type Server struct {
	opts    Options
	client  *pampa.Client
	auth    *auth
	log     *slog.Logger
	mux     *http.ServeMux
	handler http.Handler
	samples *sampler
	nodes   nodeCache
	pages   map[string]*template.Template
}

// New checks the options and builds the dashboard.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("dashboard: Options.Client is required")
	}
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a, err := newAuth(opts.Users, opts.Tokens)
	if err != nil {
		return nil, err
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	s := &Server{opts: opts, client: opts.Client, auth: a, log: opts.Logger,
		mux: http.NewServeMux(), samples: newSampler(opts.SampleEvery), pages: pages}
	s.routes()
	s.handler = s.secure(s.mux)
	return s, nil
}

// ServeHTTP serves the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Run samples the jobs' counts until ctx ends, for throughput and charts.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.SampleEvery)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.SampleEvery)
	defer cancel()
	reports, err := s.client.Report(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("dashboard: sample the jobs' counts", "error", err)
		}
		return
	}
	s.samples.add(time.Now(), reports)
}

// Serve listens on addr and serves until ctx ends, then shuts down,
// letting requests in flight finish for up to 5 s. It refuses an address
// that is not loopback when no user or token is configured.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if err := s.CheckListen(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	s.log.Info("dashboard listening", "url", "http://"+ln.Addr().String()+"/", "auth", s.auth.enabled())
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends; Serve's checks are the
// caller's.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sampled := make(chan struct{})
	go func() { defer close(sampled); _ = s.Run(ctx) }()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
		err = hs.Shutdown(stop)
		cancelStop()
		<-served
	}
	cancel()
	<-sampled
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// CheckListen refuses addr when it is not a loopback address and no one
// is configured to sign in: an open dashboard may pause jobs and cancel
// tasks.
func (s *Server) CheckListen(addr string) error {
	if s.auth.enabled() || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("dashboard: refusing to listen on %q without authentication: listen on a loopback address "+
		"(such as 127.0.0.1:8080), or configure users or tokens (see docs/dashboard.md)", addr)
}

// isLoopback says whether addr ("host:port") listens on loopback only.
// An empty host listens on every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
