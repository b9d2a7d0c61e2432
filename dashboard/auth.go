package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Role is what a signed-in user may do.
type Role string

const (
	// RoleRead sees every page and endpoint, and may take no action.
	RoleRead Role = "read"
	// RoleAdmin may also pause, resume, cancel, retry, discard and drain.
	RoleAdmin Role = "admin"
)

// User signs in with a name and password: on the login page (a session
// cookie follows) or with HTTP basic auth.
type User struct {
	Name     string
	Password string
	Role     Role
}

// Token is a bearer token for programs (`Authorization: Bearer ...`).
type Token struct {
	Name  string // who holds it, for the log; never the token itself
	Token string
	Role  Role
}

// sessionTTL is how long a login lasts without being used.
const sessionTTL = 12 * time.Hour

const sessionCookie = "pampa_session"

// principal is who a request comes from.
type principal struct {
	name string
	role Role
	// csrf is the token the request's actions must carry ("" when they
	// need none: a bearer token is not sent by browsers on their own).
	csrf string
}

func (p principal) admin() bool { return p.role == RoleAdmin }

// session is a signed-in browser.
type session struct {
	user    string
	role    Role
	expires time.Time
}

// auth checks credentials and keeps sessions. With no users and no
// tokens, every visitor is an anonymous admin: allowed on loopback only
// (see Server.Serve).
type auth struct {
	users  map[string]User
	tokens []Token
	key    []byte // signs CSRF tokens; random per process

	mu       sync.Mutex
	sessions map[string]session // by session id
}

func newAuth(users []User, tokens []Token) (*auth, error) {
	a := &auth{users: map[string]User{}, sessions: map[string]session{}, key: randomBytes(32)}
	for _, u := range users {
		if err := checkRole(u.Role); err != nil {
			return nil, fmt.Errorf("dashboard user %q: %w", u.Name, err)
		}
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, ":\r\n"):
			return nil, fmt.Errorf("dashboard user %q: a name is required, without ':' or line breaks", u.Name)
		case u.Password == "":
			return nil, fmt.Errorf("dashboard user %q: the password is empty", u.Name)
		}
		if _, dup := a.users[u.Name]; dup {
			return nil, fmt.Errorf("dashboard user %q is given twice", u.Name)
		}
		a.users[u.Name] = u
	}
	for _, t := range tokens {
		if err := checkRole(t.Role); err != nil {
			return nil, fmt.Errorf("dashboard token %q: %w", t.Name, err)
		}
		if len(t.Token) < 16 {
			return nil, fmt.Errorf("dashboard token %q: it has %d characters; use at least 16 (e.g. openssl rand -hex 32)", t.Name, len(t.Token))
		}
		a.tokens = append(a.tokens, t)
	}
	return a, nil
}

func checkRole(r Role) error {
	if r != RoleRead && r != RoleAdmin {
		return fmt.Errorf("role %q is not %q or %q", r, RoleRead, RoleAdmin)
	}
	return nil
}

// enabled says whether any credential is configured.
func (a *auth) enabled() bool { return len(a.users) > 0 || len(a.tokens) > 0 }

// errBadCredentials is a failed login or a bad Authorization header.
var errBadCredentials = errors.New("bad credentials")

// identify tells who sent r: a bearer token, basic auth, or a session
// cookie, in that order. ok is false when r carries none of them (or a
// session that has ended); err is set when it carries wrong ones.
func (a *auth) identify(r *http.Request) (p principal, ok bool, err error) {
	if !a.enabled() {
		return principal{name: "anonymous", role: RoleAdmin, csrf: a.csrfFor("anonymous")}, true, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, isBearer := strings.CutPrefix(h, "Bearer "); isBearer {
			for _, t := range a.tokens {
				if secretEqual(tok, t.Token) {
					return principal{name: "token " + t.Name, role: t.Role}, true, nil
				}
			}
			return principal{}, false, errBadCredentials
		}
		name, pass, isBasic := r.BasicAuth()
		if !isBasic {
			return principal{}, false, errBadCredentials
		}
		u, err := a.checkPassword(name, pass)
		if err != nil {
			return principal{}, false, err
		}
		// Browsers resend basic credentials on their own, so actions
		// need the CSRF token as with a session.
		return principal{name: u.Name, role: u.Role, csrf: a.csrfFor("basic:" + u.Name)}, true, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return principal{}, false, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, found := a.sessions[c.Value]
	if !found || time.Now().After(s.expires) {
		delete(a.sessions, c.Value)
		return principal{}, false, nil
	}
	s.expires = time.Now().Add(sessionTTL)
	a.sessions[c.Value] = s
	return principal{name: s.user, role: s.role, csrf: a.csrfFor("session:" + c.Value)}, true, nil
}

// checkPassword finds the user and compares the password in constant
// time. An unknown user costs the same comparison as a known one.
func (a *auth) checkPassword(name, pass string) (User, error) {
	u, found := a.users[name]
	want := u.Password
	if !found {
		want = "\x00unknown user"
	}
	if !secretEqual(pass, want) || !found {
		return User{}, errBadCredentials
	}
	return u, nil
}

// login opens a session for a user whose password checked out and
// returns its id, the cookie's value.
func (a *auth) login(u User) string {
	id := hex.EncodeToString(randomBytes(32))
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for k, s := range a.sessions { // forget ended sessions as new ones come
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
	a.sessions[id] = session{user: u.Name, role: u.Role, expires: now.Add(sessionTTL)}
	return id
}

// logout ends the session r carries, if any.
func (a *auth) logout(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
}

// csrfFor is the CSRF token of a browser identity: an HMAC of it under the
// process's key, so that it needs no storage and a page of another origin
// cannot guess it.
func (a *auth) csrfFor(identity string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte("csrf\x00" + identity))
	return hex.EncodeToString(m.Sum(nil))
}

// secretEqual compares two secrets in constant time, their lengths
// included (both are hashed first).
func secretEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the OS cannot supply)
	return b
}
