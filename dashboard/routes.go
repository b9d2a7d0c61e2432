package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// routes: pages (HTML), the API (the same data as JSON), and actions. An
// action is a POST under /api/: a JSON request gets a JSON answer; a form
// of the pages gets redirected back to the page it came from.
func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	m.Handle("GET /static/", staticHandler())
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.loginPost)
	m.HandleFunc("POST /logout", s.read(s.withCSRF(s.logoutPost)))

	// Each page, and its data as JSON.
	type loader = func(*http.Request) (any, error)
	filtered := func(load func(*http.Request, TaskQuery) (any, error)) loader {
		return func(r *http.Request) (any, error) {
			q, err := taskQuery(r)
			if err != nil {
				return nil, err
			}
			return load(r, q)
		}
	}
	for _, p := range []struct {
		page, api, template, title string
		refresh                    int // seconds; 0: not live
		load                       loader
	}{
		{"/{$}", "/api/overview", "overview", "Overview", 2, func(r *http.Request) (any, error) {
			return s.overview(r.Context())
		}},
		{"/jobs/{job}", "/api/jobs/{job}", "job", "Job", 2, filtered(func(r *http.Request, q TaskQuery) (any, error) {
			return s.jobPage(r.Context(), r.PathValue("job"), q)
		})},
		{"/jobs/{job}/tasks/{key}", "/api/jobs/{job}/tasks/{key}", "task", "Task", 0, func(r *http.Request) (any, error) {
			return s.taskPage(r.Context(), r.PathValue("job"), r.PathValue("key"))
		}},
		{"/failed", "/api/failed", "failed", "Failed tasks", 0, filtered(func(r *http.Request, q TaskQuery) (any, error) {
			return s.failedPage(r.Context(), r.URL.Query().Get("job"), q)
		})},
		{"/workers", "/api/workers", "workers", "Workers", 2, func(r *http.Request) (any, error) {
			return s.workersPage(r.Context())
		}},
		{"/nodes", "/api/nodes", "nodes", "Nodes", 0, func(r *http.Request) (any, error) {
			return s.nodes.page(s.opts.NodeStatus != nil), nil
		}},
	} {
		m.HandleFunc("GET "+p.page, s.read(s.show(p.template, p.title, p.refresh, p.load)))
		m.HandleFunc("GET "+p.api, s.read(s.api(p.load)))
	}
	m.HandleFunc("GET /api/jobs/{job}/tasks", s.read(s.api(filtered(func(r *http.Request, q TaskQuery) (any, error) {
		if s.client.Cluster().Job(r.PathValue("job")) == nil {
			return nil, notFoundf("no job is named %q", r.PathValue("job"))
		}
		return s.taskList(r.Context(), r.PathValue("job"), q)
	}))))
	// Reading the nodes costs SSH round trips: a POST, so that no page
	// load or crawler sets it off, but open to every role.
	m.HandleFunc("POST /api/nodes/refresh", s.read(s.withCSRF(s.refreshNodes)))

	m.HandleFunc("GET /api/session", s.read(func(w http.ResponseWriter, r *http.Request, p principal) {
		writeJSON(w, http.StatusOK, Session{User: p.name, Role: p.role, CSRFToken: p.csrf})
	}))
	m.HandleFunc("/api/", s.read(func(w http.ResponseWriter, r *http.Request, _ principal) {
		s.fail(w, r, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (docs/dashboard-api.md lists them)")
	}))
	for _, a := range s.actions() {
		m.HandleFunc("POST "+a.path, s.act(s.perform(a)))
	}
	if s.opts.Metrics != nil {
		m.Handle("GET /metrics", s.read(func(w http.ResponseWriter, r *http.Request, _ principal) {
			s.opts.Metrics.ServeHTTP(w, r)
		}))
	}
}

// show serves a page: the data load gives, rendered by the template name,
// refreshed every refresh seconds while live (0: never).
func (s *Server) show(name, title string, refresh int, load func(*http.Request) (any, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		data, err := load(r)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.render(w, r, name, view{Title: title, Page: name, Refresh: refresh, Data: data}, p)
	}
}

// api serves load's data as JSON.
func (s *Server) api(load func(*http.Request) (any, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, _ principal) {
		data, err := load(r)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, data)
	}
}

// withCSRF checks a browser identity's CSRF token before h.
func (s *Server) withCSRF(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		if p.csrf != "" && !csrfOK(r, p.csrf) {
			s.fail(w, r, http.StatusForbidden, "the form is stale or forged (missing or wrong CSRF token): reload the page")
			return
		}
		h(w, r, p)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when the database answers within 2 s and a dispatcher
// holds the leader lease, 503 otherwise, with the reason (the database's
// error is logged, not shown).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if why := s.notReady(ctx); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (s *Server) notReady(ctx context.Context) string {
	l, err := s.client.Leader(ctx)
	switch {
	case err != nil:
		s.log.Warn("dashboard: not ready: the database does not answer", "error", err)
		return "the database does not answer"
	case l.Holder == "" || l.ExpiresIn <= 0:
		return "no dispatcher holds the lead"
	}
	return ""
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if !s.auth.enabled() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.renderLogin(w, http.StatusOK, localPath(r.URL.Query().Get("next")), "")
}

// loginPost checks a name and password from the login form and opens a
// session. A failure is logged with the name tried, never the password.
func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.PostFormValue("next"))
	if !s.auth.enabled() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	name := r.PostFormValue("name")
	u, err := s.auth.checkPassword(name, r.PostFormValue("password"))
	if err != nil {
		s.log.Warn("dashboard: failed login", "user", name, "remote", r.RemoteAddr)
		time.Sleep(250 * time.Millisecond) // slows guessing a little
		s.renderLogin(w, http.StatusUnauthorized, next, "Wrong name or password.")
		return
	}
	s.log.Info("dashboard: login", "user", u.Name, "role", u.Role, "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.auth.login(u), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logoutPost(w http.ResponseWriter, r *http.Request, _ principal) {
	s.auth.logout(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath keeps a redirect on this site: a path, not "//host" or a URL.
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") ||
		u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return p
}
