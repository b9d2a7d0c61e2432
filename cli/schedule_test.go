package cli

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --at takes RFC 3339 or a signed duration from now; anything else is a
// usage error naming the value.
func TestParseAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"+10m":                      now.Add(10 * time.Minute),
		"90s":                       now.Add(90 * time.Second),
		"-1h":                       now.Add(-time.Hour),
		"2026-05-06T07:08:09+02:00": time.Date(2026, 5, 6, 5, 8, 9, 0, time.UTC),
	} {
		if got, err := parseAt(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tomorrow", "2026-05-06"} {
		if _, err := parseAt(in, now); err == nil {
			t.Errorf("parseAt(%q): no error", in)
		}
	}
}

// pampa setup adds field_run_at; pampa reschedule moves a pending task
// (the report shows it scheduled) and leaves a finished one alone.
func TestRescheduleCommand(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	data, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, append(data, "    field_run_at: run_at\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, nil, "setup", "--config", config)
	if code != 0 || !strings.Contains(out, "added column run_at") || !strings.Contains(out, "_scheduled") {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	db, err := sql.Open("sqlite", filepath.Join(filepath.Dir(config), "tasks.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE numbers SET ok = TRUE, ended = '2026-01-01 00:00:00' WHERE value = 2`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, nil, "reschedule", "--config", config, "--job", "search_odd_numbers", "--at", "+1h", "1", "2")
	if code != 0 || !strings.Contains(out, "1 task(s) rescheduled") || !strings.Contains(out, "1 key(s) were not pending") {
		t.Errorf("reschedule: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, nil, "report", "--config", config, "--json")
	if !strings.Contains(out, `"scheduled": 1`) {
		t.Errorf("report after reschedule: %s", out)
	}
	if _, errOut, code = runCLI(t, nil, "reschedule", "--config", config, "--job", "search_odd_numbers", "--at", "soon", "1"); code != 2 || !strings.Contains(errOut, `"soon"`) {
		t.Errorf("reschedule --at soon: exit %d, %s", code, errOut)
	}
}
