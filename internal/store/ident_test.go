package store

import (
	"strings"
	"testing"
)

// TestRebindSkipsQuoted: a '?' inside a quoted identifier, a string
// literal or a dollar-quoted body is part of it, not a placeholder.
func TestRebindSkipsQuoted(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{`UPDATE "a?b" SET "c?" = ? WHERE "d""?" = ?`, `UPDATE "a?b" SET "c?" = $1 WHERE "d""?" = $2`},
		{`SELECT '?', 'it''s ?', ? FROM t`, `SELECT '?', 'it''s ?', $1 FROM t`},
		{`SELECT "?"".""?", ?`, `SELECT "?"".""?", $1`},
		{`SELECT $$ ? $$, $q$ '?' $q$, ?`, `SELECT $$ ? $$, $q$ '?' $q$, $1`},
		{`SELECT $1, ?`, `SELECT $1, $1`}, // not a dollar quote; shared SQL never mixes the two
		{`SELECT "open ?`, `SELECT "open ?`},
	}
	for _, c := range cases {
		if got := rebindDollar(c.in); got != c.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want Ident
		bad  string // part of the error, if any
	}{
		{in: "tasks", want: Ident{Name: "tasks"}},
		{in: "app.tasks", want: Ident{Schema: "app", Name: "tasks"}},
		{in: "Order Lines", want: Ident{Name: "Order Lines"}},
		{in: "My App.Order Lines", want: Ident{Schema: "My App", Name: "Order Lines"}},
		{in: `"my.table"`, want: Ident{Name: "my.table"}},
		{in: `app."my.table"`, want: Ident{Schema: "app", Name: "my.table"}},
		{in: `"my.app"."t"`, want: Ident{Schema: "my.app", Name: "t"}},
		{in: `"say ""hi"""`, want: Ident{Name: `say "hi"`}},
		{in: `a"b`, want: Ident{Name: `a"b`}}, // a quote inside a bare name is a character
		{in: "select", want: Ident{Name: "select"}},
		{in: "a.b.c", bad: "more than one dot"},
		{in: `"open`, bad: "no closing double quote"},
		{in: `"a"b`, bad: "after the closing double quote"},
		{in: "", want: Ident{}},
	}
	for _, c := range cases {
		got, err := ParseTable(c.in)
		if c.bad != "" {
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("ParseTable(%q) = %+v, %v; want an error about %q", c.in, got, err, c.bad)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseTable(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"Order ID", "select", `a"b`, "a?b", "ünïcödé", strings.Repeat("x", 63)} {
		if err := CheckName(ok, 63); err != nil {
			t.Errorf("CheckName(%q) = %v, want accepted", ok, err)
		}
	}
	for name, why := range map[string]string{
		"":                      "empty",
		"a\x00b":                "NUL",
		"\xff":                  "UTF-8",
		strings.Repeat("x", 64): "over the database's limit of 63",
	} {
		if err := CheckName(name, 63); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckName(%q) = %v, want an error about %q", name, err, why)
		}
	}
	if (Postgres{}).MaxIdentifierLen() != 63 || (SQLite{}).MaxIdentifierLen() != 255 {
		t.Error("identifier limits: PostgreSQL 63 bytes (NAMEDATALEN-1), SQLite 255")
	}
}

// TestHookSQLWithQuotedNames: a user's query over names that need quoting
// binds @n, and a '?' or '@n' inside a quoted name stays part of it.
func TestHookSQLWithQuotedNames(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		mustExec(t, s, `CREATE TABLE "Order Lines" ("Order ID" integer PRIMARY KEY, "a@n?" text)`)
		mustExec(t, s, `INSERT INTO "Order Lines" ("Order ID", "a@n?") VALUES (1, NULL), (2, 'x'), (3, NULL), (4, NULL)`)
		j := s.Job(JobSpec{Table: ParseIdent("Order Lines"), PrimaryKey: "Order ID", MaxTryTimes: 1})
		keys, err := j.KeysFromQuery(t.Context(), s.DB, `SELECT "Order ID" FROM "Order Lines" WHERE "a@n?" IS NULL ORDER BY 1 LIMIT @n`, map[string]any{"n": 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || toInt(t, keys[0]) != 1 || toInt(t, keys[1]) != 3 {
			t.Fatalf("keys = %v, want [1 3]", keys)
		}
	})
}
