package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pampa-go/pampa"
)

// `report --exact` counts every state exactly, as a table and as JSON.
func TestReportExactFlag(t *testing.T) {
	t.Parallel()
	processDrivers(t, func(t *testing.T, driver string) {
		e := newProcEnv(t, driver, 20)
		// 1..14 succeeded, 15..16 reserved, 17 running, 18 failed for good
		// (max_try_times 5), 19..20 never tried.
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 1,
			odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = TRUE
			WHERE value <= 14`)
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.2' WHERE value IN (15, 16, 17)`)
		e.exec(`UPDATE numbers SET odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_reservation_times = 1 WHERE value = 17`)
		e.exec(`UPDATE numbers SET odd_checking_reservation_id = 'local.1', odd_checking_reservation_times = 5,
			odd_checking_start_time = CURRENT_TIMESTAMP, odd_checking_end_time = CURRENT_TIMESTAMP, odd_checking_success = FALSE
			WHERE value = 18`)
		want := pampa.JobReport{Job: "search_odd_numbers", Total: 20, Completed: 14, Pending: 2, Failed: 1, Reserved: 2, Running: 1}

		out, errOut, code := runCLI(t, nil, "report", "--config", e.config, "--exact", "--json")
		var got []pampa.JobReport
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0] != want {
			t.Fatalf("report --exact --json: exit %d, %s%s; want [%+v]", code, out, errOut, want)
		}
		if !strings.Contains(out, `"estimated": false`) {
			t.Errorf("report --exact --json lacks \"estimated\": false:\n%s", out)
		}
		out, errOut, code = runCLI(t, nil, "report", "--config", e.config, "--exact", "--job", "search_odd_numbers")
		row := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])
		if code != 0 || strings.Join(row, " ") != "search_odd_numbers 20 14 2 0 1 2 1 0 -" || strings.Contains(out, "~") {
			t.Errorf("report --exact --job: exit %d, want the exact figures, unmarked:\n%s%s", code, out, errOut)
		}
	})
}

// Estimated figures are marked "~", with a footnote; exact ones are not.
func TestPrintReportsMarksEstimates(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := printReports(&b, []pampa.JobReport{
		{Job: "big", Total: 10_000_000, Completed: 9_900_000, Pending: 100_000, Scheduled: 7, Estimated: true},
		{Job: "small", Total: 20, Completed: 20},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if err != nil || len(lines) != 4 ||
		strings.Join(strings.Fields(lines[1]), " ") != "big ~10000000 ~9900000 100000 7 0 0 0 0 -" ||
		strings.Join(strings.Fields(lines[2]), " ") != "small 20 20 0 0 0 0 0 0 -" ||
		!strings.HasPrefix(lines[3], "~ estimated") || !strings.Contains(lines[3], "--exact") {
		t.Errorf("printReports = %v:\n%s", err, b.String())
	}
	b.Reset()
	if err := printReports(&b, []pampa.JobReport{{Job: "small", Total: 20, Completed: 20}}); err != nil || strings.Contains(b.String(), "~") {
		t.Errorf("printReports of exact figures = %v:\n%s", err, b.String())
	}
}

// The oldest pending task's age is shown to the second, "-" when unknown.
func TestPrintReportsOldest(t *testing.T) {
	t.Parallel()
	age := func(s float64) *float64 { return &s }
	var b bytes.Buffer
	err := printReports(&b, []pampa.JobReport{
		{Job: "a", Pending: 3, OldestPending: age(192.4)},
		{Job: "b", Pending: 1, OldestPending: age(4000.6)},
		{Job: "c", Pending: 1, OldestPending: age(-2)},
		{Job: "d"},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var got []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		got = append(got, f[len(f)-1])
	}
	if err != nil || !strings.HasSuffix(strings.TrimSpace(lines[0]), "OLDEST") || strings.Join(got, " ") != "3m12s 1h6m41s 0s -" {
		t.Errorf("printReports = %v, oldest %v:\n%s", err, got, b.String())
	}
}

// A job held back by its limits shows the free slots left empty, and
// why, under the table.
func TestPrintReportsLimited(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := printReports(&b, []pampa.JobReport{
		{Job: "scrape", Pending: 40, Running: 4, Limited: 6, LimitReason: "3 groups at max_running_per_group"},
		{Job: "mail", Pending: 2},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if err != nil || len(lines) != 4 ||
		strings.Join(strings.Fields(lines[1]), " ") != "scrape 0 0 40 0 0 0 4 6 -" ||
		lines[3] != "scrape: 6 free slots held back: 3 groups at max_running_per_group" {
		t.Errorf("printReports = %v:\n%s", err, b.String())
	}
}
