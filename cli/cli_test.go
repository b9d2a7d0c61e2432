package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

// runCLI runs a command line in this process.
func runCLI(t *testing.T, p *Program, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = Run(ctx, p, args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		out, errOut, code := runCLI(t, nil, c.name, "--help")
		if code != 0 || !strings.Contains(out, "Usage: pampa "+c.name) {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c.name, code, out, errOut)
		}
	}
	out, _, code := runCLI(t, nil, "help")
	if code != 0 || !strings.Contains(out, "Commands:") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	if _, errOut, code := runCLI(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--config", config}, "--id is required"},
		{[]string{"worker", "--config", config, "--delay", "soon"}, "invalid value"},
		{[]string{"dispatcher", "--config", config, "colour=blue"}, `unknown argument "colour=blue"`},
		{[]string{"dispatcher", "--config", config, "log=maybe"}, "log=maybe"},
		{[]string{"report"}, "no cluster defined"},
		{[]string{"run", "--config", config, "--workers", "99"}, "max_workers = 2"},
	} {
		_, errOut, code := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
}

// writeSQLiteConfig writes a config over a fresh SQLite file holding a
// seeded `numbers` table.
func writeSQLiteConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "pampa.yaml")
	db := filepath.Join(dir, "tasks.db")
	yaml := `database: {driver: sqlite, url: "` + db + `"}
nodes: [{name: local, max_workers: 2}]
jobs:
  - name: search_odd_numbers
    table: numbers
    field_primary_key: value
    field_id: rid
    field_time: rtime
    field_times: rtimes
    field_start_time: started
    field_end_time: ended
    field_success: ok
    field_error_description: why
`
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := pampa.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pampa.Connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, q := range []string{
		`CREATE TABLE numbers (value INTEGER PRIMARY KEY, is_odd BOOLEAN)`,
		`INSERT INTO numbers (value) VALUES (1), (2), (3), (4), (5)`,
	} {
		if _, err := client.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return config
}

// setUpSQLite is writeSQLiteConfig after `pampa setup`, with a client of
// its database; the caller closes it.
func setUpSQLite(t *testing.T) (config string, client *pampa.Client) {
	t.Helper()
	config = writeSQLiteConfig(t)
	if out, errOut, code := runCLI(t, nil, "setup", "--config", config); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	c, err := pampa.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	if client, err = pampa.Connect(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return config, client
}

func TestSetupReportAndRun(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	out, errOut, code := runCLI(t, nil, "setup", "config="+config)
	if code != 0 || !strings.Contains(out, "added column rid TEXT (field_id)") || !strings.Contains(out, "created index") {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code = runCLI(t, nil, "setup", "--config", config); code != 0 || !strings.Contains(out, "nothing to change") {
		t.Fatalf("second setup: exit %d\n%s", code, out)
	}

	// The stock program has no processing function: its workers refuse.
	_, errOut, code = runCLI(t, nil, "worker", "--config", config, "id=local.1", "log=no")
	if code != 1 || !strings.Contains(errOut, "no processing function registered") {
		t.Errorf("worker without handler: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "worker", "--config", config, "--id", "remote.1", "--log=false")
	if code != 1 || !strings.Contains(errOut, `no node named "remote"`) {
		t.Errorf("worker of an unknown node: exit %d, %q", code, errOut)
	}

	prog := &Program{Handlers: map[string]pampa.ProcessFunc{
		"search_odd_numbers": func(ctx context.Context, t *pampa.Task) error {
			v, err := t.Int64("value")
			t.Set("is_odd", v%2 == 1)
			return err
		},
	}}
	logDir := t.TempDir()
	out, errOut, code = runCLI(t, prog, "run", "config="+config, "delay=0.05", "--until-done", "--log-dir", logDir, "--progress=false")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	for _, f := range []string{"dispatcher.log", "worker.local.1.log", "worker.local.2.log"} {
		if _, err := os.Stat(filepath.Join(logDir, f)); err != nil {
			t.Errorf("log file: %v", err)
		}
	}

	out, _, code = runCLI(t, nil, "report", "--config", config, "--json")
	var reports []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &reports) != nil || len(reports) != 1 {
		t.Fatalf("report --json: exit %d, %q", code, out)
	}
	want := map[string]any{"job": "search_odd_numbers", "total": 5.0, "completed": 5.0, "pending": 0.0, "scheduled": 0.0, "failed": 0.0, "reserved": 0.0, "running": 0.0, "estimated": false, "paused": false, "oldest_pending_seconds": nil, "limited": 0.0}
	for k, v := range want {
		if reports[0][k] != v {
			t.Errorf("report[%s] = %v, want %v (%s)", k, reports[0][k], v, out)
		}
	}
	if len(reports[0]) != len(want) {
		t.Errorf("report keys = %v, want exactly %v", reports[0], want)
	}
	out, _, code = runCLI(t, nil, "report", "--config", config)
	if code != 0 || !strings.Contains(out, "COMPLETED") || !strings.Contains(out, "search_odd_numbers") {
		t.Errorf("report table: exit %d\n%s", code, out)
	}

	// pause and resume, as the report shows them.
	if out, errOut, code := runCLI(t, nil, "pause", "search_odd_numbers", "--config", config); code != 0 || !strings.Contains(out, "job search_odd_numbers: paused") {
		t.Fatalf("pause: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, nil, "report", "--config", config, "--json")
	if !strings.Contains(out, `"paused": true`) {
		t.Errorf("report --json after pause: %s", out)
	}
	if out, _, _ = runCLI(t, nil, "report", "--config", config); !strings.Contains(out, "search_odd_numbers (paused)") {
		t.Errorf("report table after pause:\n%s", out)
	}
	if out, errOut, code := runCLI(t, nil, "resume", "--config", config, "search_odd_numbers"); code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ = runCLI(t, nil, "report", "--config", config, "--json"); !strings.Contains(out, `"paused": false`) {
		t.Errorf("report --json after resume: %s", out)
	}
	if _, errOut, code := runCLI(t, nil, "pause", "--config", config, "no_such_job"); code == 0 || !strings.Contains(errOut, "no_such_job") {
		t.Errorf("pause of an unknown job: exit %d, %s", code, errOut)
	}
	if _, _, code := runCLI(t, nil, "pause", "--config", config); code != 2 {
		t.Errorf("pause with no job: exit %d, want 2", code)
	}

	// drain and undrain the workers run registered.
	if out, errOut, code := runCLI(t, nil, "drain", "local.1", "local.2", "--config", config); code != 0 ||
		!strings.Contains(out, "worker local.1: drained") || !strings.Contains(out, "worker local.2: drained") {
		t.Fatalf("drain: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, nil, "undrain", "local.2", "--config", config); code != 0 || !strings.Contains(out, "worker local.2: undrained") {
		t.Fatalf("undrain: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "drain", "local.9", "--config", config); code != 1 || !strings.Contains(errOut, `worker "local.9" is not registered`) {
		t.Errorf("drain of an unregistered worker: exit %d, %s", code, errOut)
	}
	if _, _, code := runCLI(t, nil, "undrain", "--config", config); code != 2 {
		t.Errorf("undrain with no worker: exit %d, want 2", code)
	}
}

func TestLogOffDoesNotCrash(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	if _, _, code := runCLI(t, nil, "setup", "--config", config); code != 0 {
		t.Fatal("setup failed")
	}
	failing := &Program{Handlers: map[string]pampa.ProcessFunc{
		"search_odd_numbers": func(ctx context.Context, t *pampa.Task) error {
			if v, _ := t.Int64("value"); v == 3 {
				panic("three is a crowd")
			}
			return nil
		},
	}}
	dir := t.TempDir()
	cwd := filepath.Join(dir, "cwd")
	_ = os.Mkdir(cwd, 0o755)
	out, errOut, code := runCLI(t, failing, "run", "--config", config, "log=no", "delay=0.05", "--until-done", "--progress=false", "--log-dir", cwd)
	if code != 0 {
		t.Fatalf("run with log=no and a panicking task: exit %d\n%s%s", code, out, errOut)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("log=no wrote files: %v", entries)
	}
	out, _, _ = runCLI(t, nil, "report", "--config", config, "--json")
	if !strings.Contains(out, `"failed": 1`) || !strings.Contains(out, `"completed": 4`) {
		t.Errorf("report after a panicking task: %s", out)
	}

	// The failed task is kept for inspection, then re-driven.
	out, errOut, code = runCLI(t, nil, "failed", "--config", config, "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, "panic: three is a crowd") || !strings.Contains(out, "3 ") {
		t.Errorf("failed: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "retry", "--config", config, "--job", "search_odd_numbers"); code != 2 {
		t.Errorf("retry without keys or --all: exit %d, %s", code, errOut)
	}
	out, errOut, code = runCLI(t, nil, "retry", "--config", config, "--job", "search_odd_numbers", "3", "4")
	if code != 0 || !strings.Contains(out, "1 task(s) pending again") || !strings.Contains(out, "1 key(s) were not failed") {
		t.Errorf("retry: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, nil, "report", "--config", config, "--json")
	if !strings.Contains(out, `"failed": 0`) || !strings.Contains(out, `"pending": 1`) {
		t.Errorf("report after retry: %s", out)
	}
	// discard: task 3 is pending again (no failed try left to discard).
	out, errOut, code = runCLI(t, nil, "discard", "3", "--config", config, "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, "0 task(s) failed for good") || !strings.Contains(out, "1 key(s) had no failed try") {
		t.Errorf("discard: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "discard", "--config", config, "--job", "search_odd_numbers"); code != 2 {
		t.Errorf("discard without keys: exit %d, %s", code, errOut)
	}
	// cancel: task 3, pending, is failed for good; task 4 succeeded.
	out, errOut, code = runCLI(t, nil, "cancel", "3", "4", "--config", config, "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, "1 task(s) cancelled") || !strings.Contains(out, "1 key(s) were done already") {
		t.Errorf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, nil, "failed", "--config", config, "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, "cancelled by an operator") {
		t.Errorf("failed after cancel: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "cancel", "--config", config, "--job", "search_odd_numbers"); code != 2 {
		t.Errorf("cancel without keys: exit %d, %s", code, errOut)
	}
	if _, errOut, code = runCLI(t, nil, "cancel", "3", "--config", config, "--job", "no_such_job"); code != 1 || !strings.Contains(errOut, "no_such_job") {
		t.Errorf("cancel in an unknown job: exit %d, %s", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := runCLI(t, &Program{Version: "v1.2.3"}, "version")
	if code != 0 || !strings.HasPrefix(out, "pampa v1.2.3 (go") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	want := fmt.Sprintf("pampa v1.2.3 (%s, %s/%s, commit 0123abcd)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if out, _, code := runCLI(t, &Program{Version: "v1.2.3", Commit: "0123abcd"}, "--version"); code != 0 || out != want {
		t.Errorf("--version with a commit: exit %d, %q; want %q", code, out, want)
	}
	// A test binary carries neither a module version nor a revision.
	if out, _, code := runCLI(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "pampa dev (go") || strings.Contains(out, "commit") {
		t.Errorf("unstamped version: exit %d, %q; want dev, no commit", code, out)
	}
}

func TestVersionForms(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}, {"version", "--help"}} {
		out, errOut, code := runCLI(t, &Program{Version: "v1.2.3"}, args...)
		want := "pampa v1.2.3 (go"
		if args[len(args)-1] == "--help" {
			want = "Usage: pampa version"
		}
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", args, code, out, errOut, want)
		}
	}
}

// TestHelpForms: "help CMD", "CMD help", "CMD -h" and "CMD --help" print
// the command's help on stdout and exit 0, nested commands included.
func TestHelpForms(t *testing.T) {
	t.Parallel()
	forms := func(cmd ...string) [][]string {
		return [][]string{
			append([]string{"help"}, cmd...),
			append(slices.Clone(cmd), "help"),
			append(slices.Clone(cmd), "-h"),
			append(slices.Clone(cmd), "--help"),
		}
	}
	var cases [][]string
	for _, c := range commands() {
		cases = append(cases, forms(c.name)...)
	}
	for _, sub := range []string{"status", "deploy", "start", "stop", "restart", "logs"} {
		cases = append(cases, forms("nodes", sub)...)
		cases = append(cases, []string{"nodes", "help", sub})
	}
	for _, args := range cases {
		var path []string
		for _, a := range args {
			if a != "help" && a != "-h" && a != "--help" {
				path = append(path, a)
			}
		}
		want := "Usage: pampa " + strings.Join(path, " ")
		if len(path) == 1 {
			want += " "
		}
		out, errOut, code := runCLI(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want it to start with %q", args, code, out, errOut, want)
		}
	}
}

// TestFlagsAnywhere: flags after positional arguments are flags, in both
// spellings; "--" ends the flags.
func TestFlagsAnywhere(t *testing.T) {
	t.Parallel()
	config := writeSQLiteConfig(t)
	out, errOut, code := runCLI(t, nil, "setup", "search_odd_numbers", "--config", config)
	if code != 0 || !strings.Contains(out, "added column rid") {
		t.Fatalf("setup JOB --config C: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, nil, "setup", "search_odd_numbers", "config="+config)
	if code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("setup JOB config=C: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, nil, "retry", "3", "--config", config, "4", "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, "0 task(s) pending again") || !strings.Contains(out, "2 key(s) were not failed") {
		t.Errorf("retry KEY --config C KEY --job J: exit %d\n%s%s", code, out, errOut)
	}
	// After "--", "--all" is a key, not the flag: one the integer key
	// column cannot hold.
	out, errOut, code = runCLI(t, nil, "retry", "--config", config, "--job", "search_odd_numbers", "--", "--all")
	if code != 1 || !strings.Contains(errOut, `key: "--all" is not an integer`) {
		t.Errorf("retry -- --all: exit %d\n%s%s", code, out, errOut)
	}
	// A flag's value that starts with "-" stays its value.
	_, errOut, code = runCLI(t, nil, "failed", "--config", config, "--job", "-nope")
	if code != 1 || !strings.Contains(errOut, `"-nope"`) {
		t.Errorf("failed --job -nope: exit %d, %q", code, errOut)
	}
}

// run's progress lines rate a table partly done from where it was, not
// from zero: 2 tasks left cannot show more than 2 per second.
func TestProgressRateFromTheStart(t *testing.T) {
	t.Parallel()
	config, client := setUpSQLite(t)
	_, err := client.DB().Exec(`UPDATE numbers SET rid = 'local.1', rtimes = 1, started = CURRENT_TIMESTAMP, ended = CURRENT_TIMESTAMP, ok = TRUE WHERE value <= 3`)
	client.Close()
	if err != nil {
		t.Fatal(err)
	}
	prog := &Program{Handlers: map[string]pampa.ProcessFunc{
		"search_odd_numbers": func(ctx context.Context, t *pampa.Task) error { return nil },
	}}
	out, errOut, code := runCLI(t, prog, "run", "--config", config, "delay=0.05", "--until-done", "--log-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	first := regexp.MustCompile(`search_odd_numbers: \d+/5 completed \((\d+)/s\)`).FindStringSubmatch(out)
	if first == nil {
		t.Fatalf("no progress line in\n%s", out)
	}
	if rate, _ := strconv.Atoi(first[1]); rate > 2 {
		t.Errorf("first progress line rates %d/s with 2 tasks left:\n%s", rate, out)
	}
}
