package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pampa-go/pampa/internal/testdb"
)

func pragma(t *testing.T, s *Store, name string) string {
	t.Helper()
	var v string
	if err := s.DB.QueryRowContext(t.Context(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestSQLiteOpenPragmas(t *testing.T) {
	t.Parallel()
	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		s := openRaw(t, "sqlite", testdb.SQLitePath(t))
		if got := pragma(t, s, "busy_timeout"); got != "30000" {
			t.Errorf("busy_timeout = %s, want 30000", got)
		}
		if got := pragma(t, s, "journal_mode"); got != "wal" {
			t.Errorf("journal_mode = %s, want wal", got)
		}
		if got := pragma(t, s, "synchronous"); got != "1" {
			t.Errorf("synchronous = %s, want 1 (NORMAL)", got)
		}
	})
	t.Run("UserPragmasKept", func(t *testing.T) {
		t.Parallel()
		path := testdb.SQLitePath(t)
		s := openRaw(t, "sqlite", "file:"+path+"?_pragma=busy_timeout(1234)&_pragma=foreign_keys(1)")
		if got := pragma(t, s, "busy_timeout"); got != "1234" {
			t.Errorf("busy_timeout = %s, want the user's 1234", got)
		}
		if got := pragma(t, s, "foreign_keys"); got != "1" {
			t.Errorf("foreign_keys = %s, want 1", got)
		}
		if got := pragma(t, s, "journal_mode"); got != "wal" {
			t.Errorf("journal_mode = %s, want wal", got)
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("database not at %s: %v", path, err)
		}
	})
}

// TestSQLiteOpenPathWithURICharacters opens databases at plain paths holding
// characters that mean something in a file: URI. The database must land at
// the path given, with Pampa's pragmas applied.
func TestSQLiteOpenPathWithURICharacters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, dir string }{
		{"Space", "with space"},
		{"Hash", "hash#dir"},
		{"Percent", "percent%41dir"},
		{"QuestionMark", "quest?dir"},
	} {
		dir := c.dir
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			full := filepath.Join(base, dir)
			if err := os.Mkdir(full, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(full, "pampa.db")
			s := openRaw(t, "sqlite", path)
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if got := pragma(t, s, "journal_mode"); got != "wal" {
				t.Errorf("journal_mode = %s, want wal", got)
			}
			if _, err := os.Stat(path); err != nil {
				var made []string
				_ = filepath.Walk(base, func(p string, _ os.FileInfo, _ error) error {
					made = append(made, strings.TrimPrefix(p, base))
					return nil
				})
				t.Fatalf("no database at %q (files made: %q)", path, made)
			}
		})
	}
}

// TestSQLiteRetryableBusy provokes a real SQLITE_BUSY from a second
// connection while a write transaction is open.
func TestSQLiteRetryableBusy(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	s := openRaw(t, "sqlite", path)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	other := openRaw(t, "sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pampa_leader (name, term) VALUES ('a', 0)`); err != nil {
			return err
		}
		_, err := other.DB.ExecContext(ctx, `INSERT INTO pampa_leader (name, term) VALUES ('b', 0)`)
		if err == nil {
			return errors.New("a second writer got in during a write transaction")
		}
		if !other.Dialect.Retryable(err) {
			return errors.New("SQLITE_BUSY not retryable: " + err.Error())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
