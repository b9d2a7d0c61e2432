package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pampa-go/pampa"
)

// tableRows are the rows of a printed table, each split into its fields,
// without the header.
func tableRows(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

// namedLines reads `pampa task`'s lines as name → value; a value's next
// lines are under "".
func namedLines(out string) map[string]string {
	fields := map[string]string{}
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		name, value, _ := strings.Cut(l, " ")
		fields[name] = strings.TrimSpace(value)
	}
	return fields
}

// `pampa tasks` lists by filter, in key order, with user text escaped and
// a hint for the next page; `pampa task` shows one task and its columns.
func TestTasksCommands(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		e := newProcEnv(t, driver, 20)
		// 1..14 succeeded, 15..16 reserved, 17 running, 18 failed for good
		// (max_try_times 5) with a two-line error holding an escape
		// sequence, 19..20 never tried.
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 1,
			odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = TRUE
			WHERE value <= 14`)
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.2' WHERE value IN (15, 16, 17)`)
		e.exec(`UPDATE numbers SET odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_reservation_times = 1 WHERE value = 17`)
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 5,
			odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = FALSE
			WHERE value = 18`)
		setError := `UPDATE numbers SET odd_checking_error_description = ? WHERE value = 18`
		if driver != pampa.DriverSQLite {
			setError = strings.Replace(setError, "?", "$1", 1)
		}
		if _, err := e.db.Exec(setError, "Boom \x1b[31mred\nsecond line"); err != nil {
			t.Fatal(err)
		}
		run := func(cmd string, args ...string) (string, string, int) {
			return runCLI(t, nil, append([]string{cmd, "--config", e.config, "--job", "search_odd_numbers"}, args...)...)
		}

		out, errOut, code := run("tasks", "--state", "failed")
		rows := tableRows(out)
		if code != 0 || len(rows) != 1 || strings.Join(rows[0][:4], " ") != "18 failed 5 local.1" ||
			!strings.Contains(out, `Boom \x1b[31mred`) || strings.Contains(out, "\x1b") || strings.Contains(out, "second line") {
			t.Errorf("tasks --state failed: exit %d\n%q%s", code, out, errOut)
		}
		out, _, code = run("tasks", "--state", "pending")
		if rows := tableRows(out); code != 0 || len(rows) != 2 || rows[0][0] != "19" || rows[1][0] != "20" ||
			strings.Join(rows[0][1:], " ") != "pending 0 - - -" {
			t.Errorf("tasks --state pending: exit %d\n%s", code, out)
		}
		out, _, code = run("tasks", "--limit", "5", "--after", "9")
		rows = tableRows(out)
		if code != 0 || len(rows) != 6 || rows[0][0] != "10" || rows[4][0] != "14" || strings.Join(rows[5], " ") != "next page: --after 14" {
			t.Errorf("tasks --limit 5 --after 9: exit %d\n%s", code, out)
		}
		if out, _, code := run("tasks", "--error", "BOOM", "--state", "running"); code != 0 || !strings.Contains(out, "has no such task") {
			t.Errorf("tasks matching nothing: exit %d\n%s", code, out)
		}
		out, errOut, code = run("tasks", "--worker", "local.2", "--json")
		var tasks []pampa.TaskInfo
		if err := json.Unmarshal([]byte(out), &tasks); code != 0 || err != nil || len(tasks) != 3 ||
			tasks[0].Key != 15.0 || tasks[0].State != pampa.StateReserved || tasks[2].State != pampa.StateRunning || tasks[2].StartedAt == nil {
			t.Errorf("tasks --worker local.2 --json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"tasks", "--state", "bogus"}, 1, `state "bogus"`},
			{[]string{"tasks", "--limit", "1001"}, 1, "limit 1001"},
			{[]string{"tasks", "--key", "x"}, 1, `key: "x" is not an integer`},
			{[]string{"tasks", "18"}, 2, "a key goes in --key"},
			{[]string{"task", "99"}, 1, `task "99": no such task`},
			{[]string{"task"}, 2, "name one key"},
		} {
			if _, errOut, code := run(c.args[0], c.args[1:]...); code != c.code || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", c.args, code, errOut, c.code, c.want)
			}
		}
		if _, errOut, code := runCLI(t, nil, "tasks", "--config", e.config); code != 2 || !strings.Contains(errOut, "--job is required") {
			t.Errorf("tasks without --job: exit %d, %q", code, errOut)
		}

		out, errOut, code = run("task", "18")
		fields := namedLines(out)
		if code != 0 || fields["key"] != "18" || fields["state"] != "failed" || fields["tries"] != "5" || fields["is_odd"] != "NULL" ||
			fields["error"] != `Boom \x1b[31mred` || fields[""] != "second line" || fields["reserved"] != "-" || strings.Contains(out, "\x1b") {
			t.Errorf("task 18: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code = run("task", "17", "--json")
		var d pampa.TaskDetail
		if err := json.Unmarshal([]byte(out), &d); code != 0 || err != nil || d.State != pampa.StateRunning || d.Worker != "local.2" ||
			len(d.Columns) != 1 || d.Columns[0] != (pampa.TaskColumn{Name: "is_odd", Null: true}) {
			t.Errorf("task 17 --json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
	})
}

// retry and discard take keys as the key column does: text that reads as
// a number stays text for a text key.
func TestRetryTextKeys(t *testing.T) {
	t.Parallel()
	config, client := setUpSQLite(t)
	for _, q := range []string{
		`CREATE TABLE codes (code TEXT PRIMARY KEY, rid TEXT, rtime TIMESTAMP, rtimes INTEGER, started TIMESTAMP, ended TIMESTAMP, ok BOOLEAN, why TEXT)`,
		`INSERT INTO codes (code, rid, rtimes, started, ended, ok, why) VALUES ('007', 'local.1', 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, FALSE, 'x')`,
	} {
		if _, err := client.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	prog := &Program{Configure: func(c *pampa.Cluster) error {
		return c.AddJob(pampa.Job{Name: "codes", Table: "codes", PrimaryKey: "code", Fields: pampa.TrackingFields{
			ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes", StartTime: "started", EndTime: "ended",
			Success: "ok", ErrorDescription: "why"}})
	}}
	out, errOut, code := runCLI(t, prog, "retry", "--config", config, "--job", "codes", "007")
	if code != 0 || !strings.Contains(out, "1 task(s) pending again") {
		t.Errorf("retry 007 of a text key: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, prog, "task", "--config", config, "--job", "codes", "007")
	if fields := namedLines(out); code != 0 || fields["state"] != "pending" || fields["key"] != "007" || fields["error"] != "x" {
		t.Errorf("task 007: exit %d\n%s%s", code, out, errOut)
	}
}
