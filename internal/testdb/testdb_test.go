package testdb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgresURL(t *testing.T) {
	t.Parallel()

	t.Run("OwnSchemaInSearchPath", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		u := PostgresURL(t)
		conn := connect(ctx, t, u)
		var schema string
		if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		if len(schema) != len("t_")+16 || schema[:2] != "t_" {
			t.Fatalf("current_schema() = %q, want t_<16 hex digits>", schema)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema).Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("new schema holds %d tables (err %v), want 0", tables, err)
		}
	})

	t.Run("TableInvisibleFromOtherSchema", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		one, two := connect(ctx, t, PostgresURL(t)), connect(ctx, t, PostgresURL(t))
		if _, err := one.Exec(ctx, "CREATE TABLE probe (n int)"); err != nil {
			t.Fatal(err)
		}
		var found *string
		if err := two.QueryRow(ctx, "SELECT to_regclass('probe')::text").Scan(&found); err != nil {
			t.Fatal(err)
		}
		if found != nil {
			t.Fatalf("table made in one schema is visible in another as %q", *found)
		}
		// The same name is free in the other schema.
		if _, err := two.Exec(ctx, "CREATE TABLE probe (n int)"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DatabaseSQL", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		db, err := sql.Open("pgx", PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.ExecContext(ctx, "CREATE TABLE probe (n int)"); err != nil {
			t.Fatal(err)
		}
		var schema string
		if err := db.QueryRowContext(ctx, "SELECT schemaname FROM pg_tables WHERE tablename = 'probe' AND schemaname = current_schema()").Scan(&schema); err != nil {
			t.Fatalf("table not in the test's schema: %v", err)
		}
	})
}

// TestParallelTestsGetOwnSchemas runs two parallel tests that each make a
// table of the same name and see only their own row in it; afterwards both
// schemas are gone.
func TestParallelTestsGetOwnSchemas(t *testing.T) {
	var mu sync.Mutex
	schemas := map[string]string{}
	t.Run("Group", func(t *testing.T) {
		for _, name := range []string{"A", "B"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				conn := connect(ctx, t, PostgresURL(t))
				if _, err := conn.Exec(ctx, "CREATE TABLE probe (owner text)"); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, "INSERT INTO probe VALUES ($1)", name); err != nil {
					t.Fatal(err)
				}
				rows, err := conn.Query(ctx, "SELECT owner FROM probe")
				if err != nil {
					t.Fatal(err)
				}
				owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				if len(owners) != 1 || owners[0] != name {
					t.Fatalf("probe holds %q, want only %q", owners, name)
				}
				var schema string
				if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				schemas[name] = schema
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	if schemas["A"] == schemas["B"] {
		t.Fatalf("both tests got schema %q", schemas["A"])
	}

	ctx := testContext(t)
	conn := connect(ctx, t, serverURL(t))
	for name, schema := range schemas {
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("schema %s of test %s not dropped", schema, name)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	t.Parallel()
	a, b := SQLitePath(t), SQLitePath(t)
	if a == b {
		t.Fatalf("two calls gave the same path %q", a)
	}
	for _, p := range []string{a, b} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s should not exist yet (%v)", p, err)
		}
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			t.Fatalf("directory of %s: %v", p, err)
		}
	}
}

func TestWithParam(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, conn, want string
	}{
		{"URL", "postgres://u:p@h:5432/db?sslmode=disable", "postgres://u:p@h:5432/db?search_path=s&sslmode=disable"},
		{"URLWithoutQuery", "postgresql://h/db", "postgresql://h/db?search_path=s"},
		{"URLReplaces", "postgres://h/db?search_path=old", "postgres://h/db?search_path=s"},
		{"KeywordValue", "host=h dbname=db ", "host=h dbname=db search_path=s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withParam(tt.conn, "search_path", "s")
			if err != nil || got != tt.want {
				t.Fatalf("withParam(%q) = %q, %v; want %q", tt.conn, got, err, tt.want)
			}
		})
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(ctx context.Context, t *testing.T, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
