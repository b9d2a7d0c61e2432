package dashboard

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"

	"github.com/pampa-go/pampa"
)

// csp lets the page load only what the binary serves: no inline script or
// style, no other origin, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure wraps every response: security headers, a refusal of cross-origin
// writes (the standard library's CrossOriginProtection, from the
// Sec-Fetch-Site and Origin headers), a Host check against DNS rebinding
// while no one needs to sign in, and a recovery that shows no stack trace.
func (s *Server) secure(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("dashboard: refused a cross-origin request", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		s.fail(w, r, http.StatusForbidden, "cross-origin requests are refused")
	}))
	guarded := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("dashboard: handler panicked", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				s.fail(w, r, http.StatusInternalServerError, "internal error (the dashboard's log has the details)")
			}
		}()
		if !s.auth.enabled() && !loopbackHost(r.Host) {
			s.fail(w, r, http.StatusMisdirectedRequest, "this dashboard answers to loopback host names only")
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// loopbackHost says whether a request's Host names this machine's loopback.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// handler is a route that knows who is asking.
type handler func(w http.ResponseWriter, r *http.Request, p principal)

// read serves any signed-in role.
func (s *Server) read(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.signedIn(w, r)
		if ok {
			h(w, r, p)
		}
	}
}

// act serves admins only, and checks the CSRF token of browser identities.
func (s *Server) act(h handler) http.HandlerFunc {
	checked := s.withCSRF(h)
	return s.read(func(w http.ResponseWriter, r *http.Request, p principal) {
		switch {
		case s.opts.ReadOnly:
			s.fail(w, r, http.StatusForbidden, "this dashboard is read-only")
		case !p.admin():
			s.log.Warn("dashboard: refused an action to a read-only user", "user", p.name, "path", r.URL.Path)
			s.fail(w, r, http.StatusForbidden, "your role is read-only: actions need the admin role")
		default:
			checked(w, r, p)
		}
	})
}

func csrfOK(r *http.Request, want string) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// signedIn identifies the request, or answers it: a sign-in page for a
// browser, 401 for the API.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (principal, bool) {
	p, ok, err := s.auth.identify(r)
	if err != nil {
		s.log.Warn("dashboard: refused credentials", "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	if ok {
		return p, true
	}
	if wantsJSON(r) || err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="pampa", charset="UTF-8"`)
		s.fail(w, r, http.StatusUnauthorized, "sign in first: a session, basic auth or a bearer token")
		return principal{}, false
	}
	http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return principal{}, false
}

// wantsJSON: a request of the API, not a form of the pages posted to it.
func wantsJSON(r *http.Request) bool {
	if isForm(r) {
		return false
	}
	return strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics" ||
		r.Header.Get("Accept") == "application/json"
}

// fail answers with an error: JSON for the API, a page otherwise. msg is
// shown as it is: never put a database error in it (see failInternal).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = s.pages["error"].Execute(w, errorPage{Status: status, Text: http.StatusText(status), Message: msg})
}

// failInternal logs err and answers without it: database errors may hold
// SQL, table names or values.
func (s *Server) failInternal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("dashboard: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	s.fail(w, r, http.StatusInternalServerError, "internal error (the dashboard's log has the details)")
}

// failErr answers with err: its text when it is the request's fault
// (notFound, badRequest, pampa.ErrNotFound), a generic one otherwise.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	var nf notFound
	var br badRequest
	switch {
	case errors.As(err, &nf):
		s.fail(w, r, http.StatusNotFound, nf.msg)
	case errors.Is(err, pampa.ErrNotFound): // names what is missing, nothing more
		s.fail(w, r, http.StatusNotFound, err.Error())
	case errors.As(err, &br):
		s.fail(w, r, http.StatusBadRequest, br.msg)
	default:
		s.failInternal(w, r, err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
