package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestRebindDollar(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"", ""},
		{"a = ?", "a = $1"},
		{"a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)"},
		{"??", "$1$2"},
		{
			"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		},
	}
	for _, c := range cases {
		if got := rebindDollar(c.in); got != c.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Past 100 placeholders, numbers stay right.
	q := strings.TrimSuffix(strings.Repeat("?,", 123), ",")
	got := strings.Split(rebindDollar(q), ",")
	for i, p := range got {
		if want := fmt.Sprintf("$%d", i+1); p != want {
			t.Fatalf("placeholder %d = %q, want %q", i+1, p, want)
		}
	}
	if (Postgres{}).Rebind("a = ?") != "a = $1" || (Cockroach{}).Rebind("a = ?") != "a = $1" {
		t.Error("PostgreSQL dialects do not rebind to $n")
	}
	if (SQLite{}).Rebind("a = ?") != "a = ?" {
		t.Error("SQLite rebinds '?'")
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"tasks", `"tasks"`},
		{"Mixed Case", `"Mixed Case"`},
		{`a"b`, `"a""b"`},
		{`"`, `""""`},
		{`x"; DROP TABLE t; --`, `"x""; DROP TABLE t; --"`},
		{"", `""`},
	}
	for _, c := range cases {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParseIdent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in             string
		want           Ident
		quoted, string string
	}{
		{"tasks", Ident{Name: "tasks"}, `"tasks"`, "tasks"},
		{"app.tasks", Ident{Schema: "app", Name: "tasks"}, `"app"."tasks"`, "app.tasks"},
		{`we"ird.ta"ble`, Ident{Schema: `we"ird`, Name: `ta"ble`}, `"we""ird"."ta""ble"`, `we"ird.ta"ble`},
	}
	for _, c := range cases {
		got := ParseIdent(c.in)
		if got != c.want {
			t.Errorf("ParseIdent(%q) = %#v, want %#v", c.in, got, c.want)
		}
		if q := got.Quoted(); q != c.quoted {
			t.Errorf("ParseIdent(%q).Quoted() = %s, want %s", c.in, q, c.quoted)
		}
		if s := got.String(); s != c.string {
			t.Errorf("ParseIdent(%q).String() = %s, want %s", c.in, s, c.string)
		}
	}
}

// pragmas returns a DSN's path and its _pragma values by name.
func parseSQLiteDSN(t *testing.T, dsn string) (string, map[string][]string, url.Values) {
	t.Helper()
	if !strings.HasPrefix(dsn, "file:") {
		t.Fatalf("DSN %q does not start with file:", dsn)
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("DSN %q: %v", dsn, err)
	}
	byName := map[string][]string{}
	for _, p := range q["_pragma"] {
		name, _, _ := strings.Cut(p, "(")
		name = strings.ToLower(strings.TrimSpace(name))
		byName[name] = append(byName[name], p)
	}
	return path, byName, q
}

func TestSQLiteDSN(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		path    string
		pragmas map[string]string // name → the one value expected
		others  map[string]string
	}{
		{
			in:      "/var/lib/pampa/pampa.db",
			path:    "/var/lib/pampa/pampa.db",
			pragmas: map[string]string{"busy_timeout": "busy_timeout(30000)", "journal_mode": "journal_mode(WAL)", "synchronous": "synchronous(NORMAL)"},
			others:  map[string]string{"_txlock": "immediate"},
		},
		{
			in:   "file:data/p.db?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)",
			path: "data/p.db",
			pragmas: map[string]string{"busy_timeout": "busy_timeout(5000)", "foreign_keys": "foreign_keys(1)",
				"journal_mode": "journal_mode(WAL)", "synchronous": "synchronous(NORMAL)"},
			others: map[string]string{"_txlock": "immediate"},
		},
		{
			in:   "file:p.db?_pragma=JOURNAL_MODE(DELETE)&_pragma=%20synchronous(FULL)&_txlock=exclusive&cache=shared",
			path: "p.db",
			pragmas: map[string]string{"busy_timeout": "busy_timeout(30000)", "journal_mode": "JOURNAL_MODE(DELETE)",
				"synchronous": " synchronous(FULL)"},
			others: map[string]string{"_txlock": "exclusive", "cache": "shared"},
		},
		{
			in:      "file:p.db",
			path:    "p.db",
			pragmas: map[string]string{"busy_timeout": "busy_timeout(30000)", "journal_mode": "journal_mode(WAL)", "synchronous": "synchronous(NORMAL)"},
			others:  map[string]string{"_txlock": "immediate"},
		},
	}
	for _, c := range cases {
		dsn, err := sqliteDSN(c.in)
		if err != nil {
			t.Errorf("sqliteDSN(%q): %v", c.in, err)
			continue
		}
		path, pragmas, q := parseSQLiteDSN(t, dsn)
		if path != c.path {
			t.Errorf("sqliteDSN(%q) path = %q, want %q", c.in, path, c.path)
		}
		if len(pragmas) != len(c.pragmas) {
			t.Errorf("sqliteDSN(%q) pragmas = %v, want %v", c.in, pragmas, c.pragmas)
		}
		for name, want := range c.pragmas {
			if got := pragmas[name]; !slices.Equal(got, []string{want}) {
				t.Errorf("sqliteDSN(%q) pragma %s = %q, want just %q", c.in, name, got, want)
			}
		}
		for k, want := range c.others {
			if got := q.Get(k); got != want {
				t.Errorf("sqliteDSN(%q) %s = %q, want %q", c.in, k, got, want)
			}
		}
	}
	for _, bad := range []string{"", "file:p.db?a=%zz"} {
		if dsn, err := sqliteDSN(bad); err == nil {
			t.Errorf("sqliteDSN(%q) = %q, want an error", bad, dsn)
		}
	}
}

func TestWithRuntimeParam(t *testing.T) {
	t.Parallel()
	const key = "default_transaction_isolation"
	cases := []struct {
		in   string
		want string // the value pgx will send
	}{
		{"postgres://u:p@db.example:5432/app", "serializable"},
		{"postgresql://u@db.example/app?sslmode=disable&search_path=s1", "serializable"},
		{"postgres://u@db.example/app?default_transaction_isolation=repeatable%20read", "repeatable read"},
		{"postgres://u@db.example/app?application_name=nightly%20reports", "serializable"},
		{"postgres://u@db.example/app?options=-c%20statement_timeout%3D5s", "serializable"},
		{"host=db.example user=u dbname=app", "serializable"},
		{"host=db.example default_transaction_isolation='read committed' dbname=app", "read committed"},
	}
	for _, c := range cases {
		out := withRuntimeParam(c.in, key, "serializable")
		cfg, err := pgx.ParseConfig(out)
		if err != nil {
			t.Errorf("withRuntimeParam(%q) = %q, which pgx cannot parse: %v", c.in, out, err)
			continue
		}
		if got := cfg.RuntimeParams[key]; got != c.want {
			t.Errorf("withRuntimeParam(%q) = %q: %s = %q, want %q", c.in, out, key, got, c.want)
		}
		// The rest of the connection settings survive.
		orig, err := pgx.ParseConfig(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != orig.Host || cfg.Database != orig.Database || cfg.User != orig.User || cfg.Password != orig.Password {
			t.Errorf("withRuntimeParam(%q) = %q changed the connection target", c.in, out)
		}
		for k, v := range orig.RuntimeParams {
			if k != key && cfg.RuntimeParams[k] != v {
				t.Errorf("withRuntimeParam(%q) lost runtime param %s=%s", c.in, k, v)
			}
		}
	}
}

func TestAgoArg(t *testing.T) {
	t.Parallel()
	sqliteCases := []struct {
		d    time.Duration
		want string
	}{
		{1500 * time.Millisecond, "-1.500 seconds"},
		{15 * time.Minute, "-900.000 seconds"},
		{-30 * time.Second, "+30.000 seconds"},
		{time.Millisecond, "-0.001 seconds"},
		{36 * time.Hour, "-129600.000 seconds"},
	}
	for _, c := range sqliteCases {
		if got := (SQLite{}).AgoArg(c.d); got != c.want {
			t.Errorf("SQLite AgoArg(%v) = %v, want %q", c.d, got, c.want)
		}
	}
	for _, d := range []Dialect{Postgres{}, Cockroach{}} {
		if got := d.AgoArg(1500 * time.Millisecond); got != 1.5 {
			t.Errorf("%s AgoArg(1.5s) = %v, want 1.5", d.Name(), got)
		}
		if got := d.AgoArg(-time.Minute); got != -60.0 {
			t.Errorf("%s AgoArg(-1m) = %v, want -60", d.Name(), got)
		}
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "x"} }
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"serialization failure", pg("40001"), true},
		{"wrapped serialization failure", fmt.Errorf("reserve: %w", pg("40001")), true},
		{"deadlock", pg("40P01"), true},
		{"admin shutdown", pg("57P01"), true},
		{"connection failure", pg("08006"), true},
		{"unique violation", pg("23505"), false},
		{"syntax error", pg("42601"), false},
		{"undefined table", pg("42P01"), false},
		{"plain error", errors.New("something else"), false},
		{"context canceled", context.Canceled, false},
		{"bad connection", driver.ErrBadConn, true},
	}
	for _, d := range []Dialect{Postgres{}, Cockroach{}} {
		for _, c := range cases {
			if got := d.Retryable(c.err); got != c.want {
				t.Errorf("%s Retryable(%s) = %v, want %v", d.Name(), c.name, got, c.want)
			}
		}
	}
	for _, err := range []error{nil, errors.New("x"), pg("40001"), context.DeadlineExceeded} {
		if (SQLite{}).Retryable(err) {
			t.Errorf("SQLite Retryable(%v) = true", err)
		}
	}
}

func TestDialectBasics(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		d          Dialect
		name       string
		skipLocked bool
	}{
		{SQLite{}, "sqlite", false},
		{Postgres{}, "postgres", true},
		{Cockroach{}, "crdb", false},
	} {
		if c.d.Name() != c.name {
			t.Errorf("Name() = %q, want %q", c.d.Name(), c.name)
		}
		if got := c.d.SkipLocked() != ""; got != c.skipLocked {
			t.Errorf("%s SkipLocked() = %q", c.name, c.d.SkipLocked())
		}
		ty := c.d.Types()
		if ty.Text == "" || ty.Time == "" || ty.Int == "" || ty.Bool == "" {
			t.Errorf("%s Types() = %+v has an empty type", c.name, ty)
		}
		if strings.Count(c.d.Rebind(c.d.Ago()), "?")+strings.Count(c.d.Rebind(c.d.Ago()), "$1") != 1 {
			t.Errorf("%s Ago() = %q, want exactly one placeholder", c.name, c.d.Ago())
		}
	}
}

func TestIndexBase(t *testing.T) {
	t.Parallel()
	a, b := indexBase("Render Reports"), indexBase("render_reports")
	if a == b {
		t.Errorf("indexBase gives %q to two different job names", a)
	}
	if !strings.HasPrefix(a, "pampa_render_reports_") {
		t.Errorf("indexBase(Render Reports) = %q", a)
	}
	for _, job := range []string{"x", strings.Repeat("é", 100), strings.Repeat("a", 500), `we"ird; name`} {
		base := indexBase(job)
		if base != indexBase(job) {
			t.Errorf("indexBase(%q) not stable", job)
		}
		for _, r := range base {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
				t.Errorf("indexBase(%q) = %q has %q", job, base, r)
			}
		}
		if len(base)+len("_inflight") > 63 {
			t.Errorf("indexBase(%q) = %q too long for PostgreSQL", job, base)
		}
	}
}
