package pampa_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

// parseExecJob parses one job with the exec keys given, from a file in
// dir, and returns its ExecSpec.
func parseExecJob(t *testing.T, dir string, keys map[string]string) (*pampa.ExecSpec, error) {
	t.Helper()
	path := filepath.Join(dir, "pampa.yaml")
	if err := os.WriteFile(path, []byte("jobs:\n"+configJob("odd", keys)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := pampa.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return c.Job("odd").Exec, nil
}

// The exec keys: a list run as is, one string under shell: true; dir
// from the config file's directory, which is also the default; env and
// mode as written.
func TestParseConfigExec(t *testing.T) {
	t.Parallel()
	// "@" in a wanted dir is the config file's directory.
	const dir = "@"
	for _, tt := range []struct {
		name string
		keys map[string]string
		want pampa.ExecSpec
	}{
		{"List", map[string]string{"exec": "[python3, odd.py]"},
			pampa.ExecSpec{Command: []string{"python3", "odd.py"}, Dir: dir}},
		{"BlockList", map[string]string{"exec": "\n      - ./odd.sh\n      - '--flag=a b'"},
			pampa.ExecSpec{Command: []string{"./odd.sh", "--flag=a b"}, Dir: dir}},
		{"Shell", map[string]string{"exec": `"sort | uniq -c"`, "shell": "true"},
			pampa.ExecSpec{Command: []string{"sort | uniq -c"}, Shell: true, Dir: dir}},
		{"ShellFalse", map[string]string{"exec": "[cat]", "shell": "false"},
			pampa.ExecSpec{Command: []string{"cat"}, Dir: dir}},
		{"RelativeDir", map[string]string{"exec": "[./odd.sh]", "dir": "scripts/odd"},
			pampa.ExecSpec{Command: []string{"./odd.sh"}, Dir: "@/scripts/odd"}},
		{"AbsoluteDir", map[string]string{"exec": "[./odd.sh]", "dir": "/srv/odd"},
			pampa.ExecSpec{Command: []string{"./odd.sh"}, Dir: "/srv/odd"}},
		{"EnvAndMode", map[string]string{"exec": "[python3, odd.py]", "env": "{LEVEL: debug, N: 5, EMPTY: ''}", "mode": "persistent"},
			pampa.ExecSpec{Command: []string{"python3", "odd.py"}, Dir: dir, Env: map[string]string{"LEVEL": "debug", "N": "5", "EMPTY": ""}, Mode: pampa.ExecPersistent}},
		{"ModeOnce", map[string]string{"exec": "[cat]", "mode": "once"},
			pampa.ExecSpec{Command: []string{"cat"}, Dir: dir, Mode: pampa.ExecOnce}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			confDir := t.TempDir()
			got, err := parseExecJob(t, confDir, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Dir = strings.Replace(tt.want.Dir, "@", confDir, 1)
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("exec = %+v\nwant   %+v", *got, tt.want)
			}
		})
	}
	// A job without exec has none.
	c, err := pampa.ParseConfig([]byte("jobs:\n"+configJob("odd", nil)), "config.yaml")
	if err != nil || c.Job("odd").Exec != nil {
		t.Errorf("a job without exec: %v, %+v", err, c)
	}
	// With no file behind the document, dir defaults to the worker's
	// working directory.
	c, err = pampa.ParseConfig([]byte("jobs:\n"+configJob("odd", map[string]string{"exec": "[cat]"})), "inline")
	if err != nil || c.Job("odd").Exec.Dir != "" {
		t.Errorf("exec with no file: %v, dir %q", err, c.Job("odd").Exec.Dir)
	}
}

// env values take ${NAME} from the environment, which must be set.
// (Environment tests cannot run in parallel.)
func TestParseConfigExecEnv(t *testing.T) {
	t.Setenv("PAMPA_EXEC_TEST_TOKEN", "s3cret")
	x, err := parseExecJob(t, t.TempDir(), map[string]string{"exec": "[cat]", "env": `{API_TOKEN: "Bearer ${PAMPA_EXEC_TEST_TOKEN}"}`})
	if err != nil {
		t.Fatal(err)
	}
	if x.Env["API_TOKEN"] != "Bearer s3cret" {
		t.Errorf("env = %v", x.Env)
	}
	_, err = parseExecJob(t, t.TempDir(), map[string]string{"exec": "[cat]", "env": `{API_TOKEN: "${PAMPA_EXEC_TEST_UNSET}"}`})
	var ce *pampa.ConfigError
	if !errors.As(err, &ce) || ce.Field != "env.API_TOKEN" || ce.Value != "${PAMPA_EXEC_TEST_UNSET}" ||
		!strings.Contains(err.Error(), "environment variable PAMPA_EXEC_TEST_UNSET is not set") || !strings.Contains(err.Error(), "pampa.yaml:12:") {
		t.Errorf("unset variable in env: %v", err)
	}
}

// Bad exec keys: the error names the job, the key and the value.
func TestParseConfigExecErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		keys  map[string]string
		field string
		value string
		want  string
	}{
		{"PlainString", map[string]string{"exec": "python3 odd.py"}, "exec", "python3 odd.py", "write the command as a list, such as [python3, odd.py]; to run this string with /bin/sh -c, set shell: true"},
		{"ShellWithList", map[string]string{"exec": "[sort, uniq]", "shell": "true"}, "exec", "sort uniq", "with shell: true, write the command as one string"},
		{"EmptyList", map[string]string{"exec": "[]"}, "exec", "", "name the program to run"},
		{"EmptyProgram", map[string]string{"exec": `["", x]`}, "exec", " x", "name the program to run"},
		{"NullItem", map[string]string{"exec": "[python3, ~]"}, "exec", "", "item 2: want a string, not an empty value"},
		{"NestedList", map[string]string{"exec": "[[python3]]"}, "exec", "", "item 1: want a string, not a list"},
		{"Mapping", map[string]string{"exec": "{cmd: python3}"}, "exec", "", "want a list of strings, not a mapping"},
		{"BadMode", map[string]string{"exec": "[cat]", "mode": "forever"}, "mode", "forever", "must be once or persistent"},
		{"BadEnvName", map[string]string{"exec": "[cat]", "env": "{API-TOKEN: x}"}, "env", "API-TOKEN", "not an environment variable name"},
		{"EnvList", map[string]string{"exec": "[cat]", "env": "[A=1]"}, "env", "", "want a mapping of names to values, not a list"},
		{"EnvNoValue", map[string]string{"exec": "[cat]", "env": "{A: }"}, "env", "", `"A" has no value`},
		{"EnvNested", map[string]string{"exec": "[cat]", "env": "{A: [1]}"}, "env", "", `"A": want a single value, not a list`},
		{"ShellWithoutExec", map[string]string{"shell": "true"}, "shell", "", "applies to a command: set exec too"},
		{"DirWithoutExec", map[string]string{"dir": "scripts"}, "dir", "", "applies to a command: set exec too"},
		{"EnvWithoutExec", map[string]string{"env": "{A: b}"}, "env", "", "applies to a command: set exec too"},
		{"ModeWithoutExec", map[string]string{"mode": "once"}, "mode", "", "applies to a command: set exec too"},
		{"ShellNotBool", map[string]string{"exec": "[cat]", "shell": "yes please"}, "shell", "yes please", "cannot decode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseExecJob(t, t.TempDir(), tt.keys)
			var ce *pampa.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			if ce.Job != "odd" || ce.Field != tt.field || ce.Value != tt.value || !strings.Contains(ce.Reason, tt.want) {
				t.Errorf("error = %+v\nwant job odd, field %s, value %q, reason containing %q", *ce, tt.field, tt.value, tt.want)
			}
			if !strings.Contains(err.Error(), "pampa.yaml:1") {
				t.Errorf("error %q does not give the line", err)
			}
		})
	}
}

func isOddGo(ctx context.Context, t *pampa.Task) error { return nil }

// In Go: the same rules through AddJob, and a job takes one processing
// function, Go or command.
func TestExecJobValidation(t *testing.T) {
	t.Parallel()
	base := func(x *pampa.ExecSpec) pampa.Job {
		j := pampa.Job{Name: "odd", Table: "numbers", PrimaryKey: "value", Fields: pampa.TrackingFields{
			ReservationID: "a", ReservationTime: "b", ReservationTimes: "c", StartTime: "d", EndTime: "e", Success: "f", ErrorDescription: "g"}}
		j.Exec = x
		return j
	}
	for _, tt := range []struct {
		name         string
		job          pampa.Job
		field, value string
	}{
		{"NoCommand", base(&pampa.ExecSpec{}), "exec", ""},
		{"ShellTwoItems", base(&pampa.ExecSpec{Command: []string{"sort", "-u"}, Shell: true}), "exec", "sort -u"},
		{"NUL", base(&pampa.ExecSpec{Command: []string{"cat", "a\x00b"}}), "exec", "cat a\x00b"},
		{"Mode", base(&pampa.ExecSpec{Command: []string{"cat"}, Mode: "sometimes"}), "mode", "sometimes"},
		{"EnvName", base(&pampa.ExecSpec{Command: []string{"cat"}, Env: map[string]string{"1A": "x"}}), "env", "1A"},
		{"EnvNUL", base(&pampa.ExecSpec{Command: []string{"cat"}, Env: map[string]string{"A": "x\x00"}}), "env.A", "x\x00"},
		{"AndProcess", func() pampa.Job {
			j := base(&pampa.ExecSpec{Command: []string{"cat"}})
			j.Process = isOddGo
			return j
		}(), "exec", "cat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := (&pampa.Cluster{}).AddJob(tt.job)
			var ce *pampa.ConfigError
			if !errors.As(err, &ce) || ce.Job != "odd" || ce.Field != tt.field || ce.Value != tt.value {
				t.Errorf("AddJob = %v, want a ConfigError on job odd, field %s, value %q", err, tt.field, tt.value)
			}
		})
	}
	// Handle refuses a Go function for a job that runs a command.
	c := &pampa.Cluster{}
	if err := c.AddJob(base(&pampa.ExecSpec{Command: []string{"python3", "odd.py"}})); err != nil {
		t.Fatal(err)
	}
	err := c.Handle("odd", isOddGo)
	if err == nil || !strings.Contains(err.Error(), `job "odd" runs its processing function as exec: python3 odd.py`) {
		t.Errorf("Handle on an exec job = %v", err)
	}
	if c.Job("odd").Process != nil {
		t.Error("Handle set Process on an exec job")
	}
}

// The http keys: the URL, and what tunes it; each error names the job,
// the key and the value, on the key's line.
func TestParseConfigHTTP(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pampa.yaml")
	load := func(keys map[string]string) (*pampa.Cluster, error) {
		t.Helper()
		if err := os.WriteFile(path, []byte("jobs:\n"+configJob("odd", keys)), 0o600); err != nil {
			t.Fatal(err)
		}
		return pampa.LoadConfig(path)
	}
	c, err := load(map[string]string{"http": "https://h.example/odd", "http_secret_env": "ODD_SECRET",
		"http_timeout": "30s", "http_headers": "{X-Tenant: acme}"})
	if err != nil {
		t.Fatal(err)
	}
	want := pampa.HTTPSpec{URL: "https://h.example/odd", SecretEnv: "ODD_SECRET", Timeout: 30 * time.Second, Headers: map[string]string{"X-Tenant": "acme"}}
	if got := c.Job("odd").HTTP; got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("HTTP = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		keys              map[string]string
		field, value, why string
	}{
		{map[string]string{"http": "ftp://h/odd"}, "http", "ftp://h/odd", "must start with http:// or https://"},
		{map[string]string{"http": "https://h/odd", "http_secret_env": "9X"}, "http_secret_env", "9X", "not an environment variable name"},
		{map[string]string{"http": "https://h/odd", "http_headers": "{Idempotency-Key: k}"}, "http_headers", "Idempotency-Key", "may not be replaced"},
		{map[string]string{"http": "https://h/odd", "http_timeout": "-1s"}, "http_timeout", "-1s", "must be positive"},
		{map[string]string{"http_secret_env": "ODD_SECRET"}, "http_secret_env", "", "set http too"},
		{map[string]string{"http": "https://h/odd", "exec": "[cat]"}, "http", "https://h/odd", "runs a command (exec) too"},
	} {
		_, err := load(tt.keys)
		var ce *pampa.ConfigError
		if !errors.As(err, &ce) || ce.Job != "odd" || ce.Field != tt.field || ce.Value != tt.value || !strings.Contains(ce.Reason, tt.why) {
			t.Errorf("%v: error %v; want job odd, field %s, value %q, reason with %q", tt.keys, err, tt.field, tt.value, tt.why)
		}
	}
}
