package pampa_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pampa-go/pampa"
)

// The completion keys: SQL hooks as written, commands as lists run from
// the config file's directory.
func TestParseConfigCompletionHooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "pampa.yaml")
	doc := "jobs:\n" + configJob("odd", map[string]string{
		"group_by":           "site",
		"on_drained_sql":     `"INSERT INTO done (id) VALUES (@event_id)"`,
		"on_group_done_exec": "[sh, report.sh, --site]",
	})
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := pampa.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Job("odd").Hooks
	if h.OnDrainedSQL != "INSERT INTO done (id) VALUES (@event_id)" || h.OnDrainedExec != nil {
		t.Errorf("on_drained: %q, %+v", h.OnDrainedSQL, h.OnDrainedExec)
	}
	abs, _ := filepath.Abs(dir)
	if want := (&pampa.HookCommand{Command: []string{"sh", "report.sh", "--site"}, Dir: abs}); !reflect.DeepEqual(h.OnGroupDoneExec, want) {
		t.Errorf("on_group_done_exec = %+v, want %+v", h.OnGroupDoneExec, want)
	}
}

// Bad completion hooks: the error names the job, the key and the value.
func TestCompletionHookErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		keys         map[string]string
		field, value string
		reason       string
	}{
		{"GroupDoneWithoutGroupBy", map[string]string{"on_group_done_sql": "SELECT 1"},
			"on_group_done_sql", "SELECT 1", "set group_by"},
		{"GroupDoneExecWithoutGroupBy", map[string]string{"on_group_done_exec": "[sh, r.sh]"},
			"on_group_done_exec", "sh r.sh", "set group_by"},
		{"TwoForms", map[string]string{"on_drained_sql": "SELECT 1", "on_drained_exec": "[sh, r.sh]"},
			"on_drained_exec", "sh r.sh", "set one form"},
		{"ExecAsString", map[string]string{"on_drained_exec": "sh r.sh"},
			"on_drained_exec", "sh r.sh", "as a list"},
		{"ExecEmpty", map[string]string{"on_drained_exec": "[]"},
			"on_drained_exec", "", "name the program"},
		{"BlankSQL", map[string]string{"on_drained_sql": `"  "`},
			"on_drained_sql", "  ", "blank"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pampa.ParseConfig([]byte("jobs:\n"+configJob("odd", tt.keys)), "pampa.yaml")
			var ce *pampa.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if ce.Job != "odd" || ce.Field != tt.field || ce.Value != tt.value || !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("error = %+v, want job odd, field %s, value %q, reason with %q", ce, tt.field, tt.value, tt.reason)
			}
		})
	}
	// In Go: a function and a statement at once.
	c := &pampa.Cluster{}
	j := pampa.Job{Name: "odd", Table: "numbers", PrimaryKey: "value", GroupBy: "site",
		Fields: pampa.TrackingFields{ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
			StartTime: "stime", EndTime: "etime", Success: "ok", ErrorDescription: "err"}}
	j.Hooks.OnGroupDone = func(context.Context, pampa.Querier, pampa.GroupDoneEvent) error { return nil }
	j.Hooks.OnGroupDoneSQL = "SELECT 1"
	var ce *pampa.ConfigError
	if err := c.AddJob(j); !errors.As(err, &ce) || ce.Field != "on_group_done_sql" || !strings.Contains(ce.Reason, "one form") {
		t.Errorf("Go and SQL hook: err = %v", err)
	}
}
