package pampa_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa"
)

// configFullYAML sets every option there is. The first job uses the
// original's minutes form and every SQL hook; the second leaves every
// optional setting to its default.
const configFullYAML = `
database:
  driver: postgres
  url: postgres://app@db.internal:5432/app?sslmode=disable
nodes:
  - name: local
    net_remote_ip: 127.0.0.1
    ssh_port: 2222
    ssh_username: me
    ssh_password_env: NODE_PASSWORD
    ssh_private_key_file: /home/me/.ssh/id_ed25519
    max_workers: 10
    max_ram: 512
    max_cpu: 10
    max_disk_io: 1000
    max_net_io: 100
    files: [certs/, "bin/tool"]
  - name: edge
    net_remote_ip: 10.0.0.2
    ssh_username: ubuntu
    ssh_password: secret
    max_workers: 2
jobs:
  - name: search_odd_numbers
    table: public.numbers
    field_primary_key: value
    field_id: odd_checking_reservation_id
    field_time: odd_checking_reservation_time
    field_times: odd_checking_reservation_times
    field_start_time: odd_checking_start_time
    field_end_time: odd_checking_end_time
    field_success: odd_checking_success
    field_error_description: odd_checking_error_description
    field_created_at: created_at
    field_run_at: run_at
    queue_size: 7
    queue_size_max: 70
    max_job_duration_minutes: 1.5
    max_try_times: 4
    retry_backoff: 10s
    retry_backoff_max: 10m
    filter_worker_id: '\.1$'
    max_assigned_workers: 5
    max_pending_tasks: 500
    files:
      - odd.py
      - lib
    selecting_sql: |
      SELECT value FROM numbers ORDER BY value DESC LIMIT @n
    relaunching_sql: SELECT value FROM numbers WHERE odd_checking_end_time < now() LIMIT @n
    relaunch_cron: "*/5 * * * *"
    relaunch_time_zone: Europe/Paris
    occupied_sql: SELECT count(*) FROM numbers WHERE odd_checking_reservation_id = @worker
    allowing_sql: SELECT true
    total_sql: SELECT count(*) FROM numbers
    completed_sql: SELECT 1
    pending_sql: SELECT 2
    failed_sql: SELECT 3
  - name: submit_odd_numbers
    table: numbers
    field_primary_key: value
    field_id: submit_odd_reservation_id
    field_time: submit_odd_reservation_time
    field_times: submit_odd_reservation_times
    field_start_time: submit_odd_start_time
    field_end_time: submit_odd_end_time
    field_success: submit_odd_success
    field_error_description: submit_odd_error_description
    max_job_duration: 90s
    max_running: 20
    rate_limit: 600/1m
    group_by: domain
    max_running_per_group: 2
    rate_limit_per_group: 10/m
`

// configJobView holds the parts of a Job a config file can set, in a
// comparable form.
type configJobView struct {
	Name, Table, PrimaryKey string
	Fields                  pampa.TrackingFields
	CreatedAt               string
	RelaunchCron            string
	RelaunchTimeZone        string
	RunAt                   string
	QueueSize               int
	QueueSizeMax            int
	MaxJobDuration          time.Duration
	MaxTryTimes             int
	RetryBackoff            time.Duration
	RetryBackoffMax         time.Duration
	FilterWorkerID          string
	MaxAssignedWorkers      int
	MaxPendingTasks         int
	Files                   string // joined with "|"
	MaxRunning              int
	RateLimit               pampa.Rate
	GroupBy                 string
	MaxRunningPerGroup      int
	RateLimitPerGroup       pampa.Rate
	// Selecting, relaunching, occupied, allowing, total, completed,
	// pending and failed SQL, in that order.
	SQL [8]string
}

func configViewOf(j *pampa.Job) configJobView {
	h := j.Hooks
	return configJobView{
		Name: j.Name, Table: j.Table, PrimaryKey: j.PrimaryKey, Fields: j.Fields, CreatedAt: j.CreatedAt, RunAt: j.RunAt,
		RelaunchCron: j.RelaunchCron, RelaunchTimeZone: j.RelaunchTimeZone,
		QueueSize: j.QueueSize, QueueSizeMax: j.QueueSizeMax, MaxJobDuration: j.MaxJobDuration, MaxTryTimes: j.MaxTryTimes,
		RetryBackoff: j.RetryBackoff, RetryBackoffMax: j.RetryBackoffMax, FilterWorkerID: j.FilterWorkerID,
		MaxAssignedWorkers: j.MaxAssignedWorkers, MaxPendingTasks: j.MaxPendingTasks,
		Files:      strings.Join(j.Files, "|"),
		MaxRunning: j.MaxRunning, RateLimit: j.RateLimit, GroupBy: j.GroupBy,
		MaxRunningPerGroup: j.MaxRunningPerGroup, RateLimitPerGroup: j.RateLimitPerGroup,
		SQL: [8]string{h.SelectingSQL, h.RelaunchingSQL, h.OccupiedSQL, h.AllowingSQL,
			h.TotalSQL, h.CompletedSQL, h.PendingSQL, h.FailedSQL},
	}
}

func configTrackingFields(prefix string) pampa.TrackingFields {
	return pampa.TrackingFields{
		ReservationID:    prefix + "_reservation_id",
		ReservationTime:  prefix + "_reservation_time",
		ReservationTimes: prefix + "_reservation_times",
		StartTime:        prefix + "_start_time",
		EndTime:          prefix + "_end_time",
		Success:          prefix + "_success",
		ErrorDescription: prefix + "_error_description",
	}
}

func TestParseConfigFull(t *testing.T) {
	t.Parallel()

	c, err := pampa.ParseConfig([]byte(configFullYAML), "config.yaml")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}

	wantDB := pampa.Database{Driver: "postgres", URL: "postgres://app@db.internal:5432/app?sslmode=disable"}
	if c.Database != wantDB {
		t.Errorf("Database = %+v, want %+v", c.Database, wantDB)
	}

	wantNodes := []pampa.Node{
		{
			Name: "local", Host: "127.0.0.1", Port: 2222, User: "me", PasswordEnv: "NODE_PASSWORD",
			KeyFile: "/home/me/.ssh/id_ed25519", MaxWorkers: 10,
			MaxRAMMB: 512, MaxCPUPercent: 10, MaxDiskIOMbps: 1000, MaxNetIOMbps: 100,
			Files: []string{"certs/", "bin/tool"},
		},
		{Name: "edge", Host: "10.0.0.2", Port: 22, User: "ubuntu", Password: "secret", MaxWorkers: 2},
	}
	if got := c.Nodes(); len(got) != len(wantNodes) {
		t.Fatalf("got %d nodes, want %d", len(got), len(wantNodes))
	}
	for i, n := range c.Nodes() {
		if !reflect.DeepEqual(*n, wantNodes[i]) {
			t.Errorf("node %d = %+v\nwant %+v", i, *n, wantNodes[i])
		}
	}

	wantJobs := []configJobView{
		{
			Name: "search_odd_numbers", Table: "public.numbers", PrimaryKey: "value",
			Fields: configTrackingFields("odd_checking"), CreatedAt: "created_at", RunAt: "run_at",
			RelaunchCron: "*/5 * * * *", RelaunchTimeZone: "Europe/Paris",
			QueueSize: 7, QueueSizeMax: 70, MaxJobDuration: 90 * time.Second, MaxTryTimes: 4, RetryBackoff: 10 * time.Second, RetryBackoffMax: 10 * time.Minute,
			FilterWorkerID: `\.1$`, MaxAssignedWorkers: 5, MaxPendingTasks: 500,
			Files: "odd.py|lib",
			SQL: [8]string{
				"SELECT value FROM numbers ORDER BY value DESC LIMIT @n\n",
				"SELECT value FROM numbers WHERE odd_checking_end_time < now() LIMIT @n",
				"SELECT count(*) FROM numbers WHERE odd_checking_reservation_id = @worker",
				"SELECT true",
				"SELECT count(*) FROM numbers",
				"SELECT 1", "SELECT 2", "SELECT 3",
			},
		},
		{
			// Defaults filled in.
			Name: "submit_odd_numbers", Table: "numbers", PrimaryKey: "value",
			Fields:    configTrackingFields("submit_odd"),
			QueueSize: pampa.DefaultQueueSize, QueueSizeMax: pampa.DefaultQueueSizeMax(pampa.DefaultQueueSize), MaxJobDuration: 90 * time.Second,
			MaxTryTimes: pampa.DefaultMaxTryTimes, FilterWorkerID: pampa.DefaultFilterWorkerID,
			MaxPendingTasks: pampa.DefaultMaxPendingTasks,
			MaxRunning:      20, RateLimit: pampa.Rate{N: 600, Per: time.Minute}, GroupBy: "domain",
			MaxRunningPerGroup: 2, RateLimitPerGroup: pampa.Rate{N: 10, Per: time.Minute},
		},
	}
	if got := c.Jobs(); len(got) != len(wantJobs) {
		t.Fatalf("got %d jobs, want %d", len(got), len(wantJobs))
	}
	for i, j := range c.Jobs() {
		if got := configViewOf(j); got != wantJobs[i] {
			t.Errorf("job %d = %+v\nwant %+v", i, got, wantJobs[i])
		}
	}

	// The filter is compiled: only first workers match `\.1$`.
	odd := c.Job("search_odd_numbers")
	if !odd.AcceptsWorker("local.1") || odd.AcceptsWorker("local.2") {
		t.Errorf("filter_worker_id not applied")
	}
	if err := c.CheckWorkerID("local.10"); err != nil {
		t.Errorf("CheckWorkerID(local.10): %v", err)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name string
		doc  string
	}{
		{"Empty", ""},
		{"CommentsOnly", "# nothing here yet\n"},
		{"EmptySections", "database:\nnodes:\njobs:\n"},
		{"NullOptions", "jobs:\n" + configJob("j", map[string]string{
			"queue_size": "~", "max_try_times": "null", "max_pending_tasks": "", "max_job_duration": "~",
		})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := pampa.ParseConfig([]byte(tt.doc), "config.yaml")
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if want := (pampa.Database{Driver: "sqlite", URL: "pampa.db"}); c.Database != want {
				t.Errorf("Database = %+v, want %+v", c.Database, want)
			}
			for _, j := range c.Jobs() {
				if j.QueueSize != pampa.DefaultQueueSize || j.MaxTryTimes != pampa.DefaultMaxTryTimes ||
					j.MaxPendingTasks != pampa.DefaultMaxPendingTasks || j.MaxJobDuration != pampa.DefaultMaxJobDuration {
					t.Errorf("defaults not filled: %+v", configViewOf(j))
				}
			}
		})
	}
}

func TestParseConfigForms(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name string
		doc  string
		want time.Duration // the first job's MaxJobDuration
	}{
		{"MinutesInteger", "jobs:\n" + configJob("j", map[string]string{"max_job_duration_minutes": "15"}), 15 * time.Minute},
		{"MinutesDecimal", "jobs:\n" + configJob("j", map[string]string{"max_job_duration_minutes": "0.25"}), 15 * time.Second},
		{"GoDuration", "jobs:\n" + configJob("j", map[string]string{"max_job_duration": "1h30m"}), 90 * time.Minute},
		{"IntegralFloatCount", "jobs:\n" + configJob("j", map[string]string{"queue_size": "5.0"}), pampa.DefaultMaxJobDuration},
		{
			"JSON",
			`{"database": {"driver": "sqlite", "url": "file:x.db"},
			  "jobs": [{"name": "j", "table": "t", "field_primary_key": "id",
			    "field_id": "a", "field_time": "b", "field_times": "c", "field_start_time": "d",
			    "field_end_time": "e", "field_success": "f", "field_error_description": "g",
			    "max_job_duration_minutes": 2}]}`,
			2 * time.Minute,
		},
		{
			"MergeKeys",
			"x-tracking: &tracking\n" +
				"  field_primary_key: id\n  field_id: a\n  field_time: b\n  field_times: c\n" +
				"  field_start_time: d\n  field_end_time: e\n  field_success: f\n  field_error_description: g\n" +
				"  max_job_duration: 1m\n" +
				"jobs:\n" +
				"  - <<: *tracking\n    name: one\n    table: t1\n    max_job_duration: 2m\n" +
				"  - <<: *tracking\n    name: two\n    table: t2\n",
			2 * time.Minute,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := pampa.ParseConfig([]byte(tt.doc), "config.yaml")
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if len(c.Jobs()) == 0 {
				t.Fatal("no jobs")
			}
			if got := c.Jobs()[0].MaxJobDuration; got != tt.want {
				t.Errorf("MaxJobDuration = %v, want %v", got, tt.want)
			}
			if tt.name == "MergeKeys" {
				two := c.Job("two")
				if two == nil || two.MaxJobDuration != time.Minute || two.Fields.Success != "f" {
					t.Errorf("merged job two = %+v", two)
				}
			}
		})
	}
}

// configJob returns a valid job as a YAML list item, with the options in
// set replaced or added (in sorted order) and those in drop left out.
func configJob(name string, set map[string]string, drop ...string) string {
	base := [][2]string{
		{"name", name}, {"table", "numbers"}, {"field_primary_key", "value"},
		{"field_id", "rid"}, {"field_time", "rtime"}, {"field_times", "rtimes"},
		{"field_start_time", "stime"}, {"field_end_time", "etime"},
		{"field_success", "ok"}, {"field_error_description", "err"},
	}
	var b strings.Builder
	b.WriteString("  -")
	done := map[string]bool{}
	write := func(k, v string) {
		if !slices.Contains(drop, k) {
			fmt.Fprintf(&b, " %s: %s\n   ", k, v)
		}
		done[k] = true
	}
	for _, kv := range base {
		if v, ok := set[kv[0]]; ok {
			write(kv[0], v)
		} else {
			write(kv[0], kv[1])
		}
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range set {
			if !yield(k) {
				return
			}
		}
	}) {
		if !done[k] {
			write(k, set[k])
		}
	}
	return strings.TrimRight(b.String(), " ")
}

const configNode = "  - name: local\n    max_workers: 2\n"

// configErrorCases are bad documents and what their error must say. They
// also seed FuzzParseConfig.
var configErrorCases = []struct {
	name string
	doc  string
	want []string           // substrings of the error message
	is   *pampa.ConfigError // when set, the *ConfigError found in the error (Reason not compared)
}{
	{
		name: "UnknownJobKey",
		doc:  "jobs:\n  - name: odd\n    queue_sise: 5\n",
		want: []string{"config.yaml:3:", `job "odd"`, "queue_sise", `did you mean "queue_size"?`},
		is:   &pampa.ConfigError{Job: "odd", Field: "queue_sise"},
	},
	{
		name: "BadRateLimit",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"rate_limit": "60 per minute"}),
		want: []string{"config.yaml:", `job "odd"`, `rate_limit = "60 per minute"`, "want starts/interval"},
		is:   &pampa.ConfigError{Job: "odd", Field: "rate_limit", Value: "60 per minute"},
	},
	{
		name: "PerGroupLimitWithoutGroupBy",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_running_per_group": "2"}),
		want: []string{"config.yaml:", `job "odd"`, "max_running_per_group", "set group_by"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_running_per_group", Value: "2"},
	},
	{
		name: "BadRelaunchCron",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"relaunching_sql": "SELECT 1", "relaunch_cron": "every 5 minutes"}),
		want: []string{"config.yaml:", `job "odd"`, `relaunch_cron = "every 5 minutes"`, "bad cron expression"},
		is:   &pampa.ConfigError{Job: "odd", Field: "relaunch_cron", Value: "every 5 minutes"},
	},
	{
		name: "BadRelaunchTimeZone",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"relaunching_sql": "SELECT 1", "relaunch_cron": "'@hourly'", "relaunch_time_zone": "Nowhere/Land"}),
		want: []string{"config.yaml:", `job "odd"`, `relaunch_time_zone = "Nowhere/Land"`, "unknown time zone"},
		is:   &pampa.ConfigError{Job: "odd", Field: "relaunch_time_zone", Value: "Nowhere/Land"},
	},
	{
		name: "RelaunchCronWithoutHook",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"relaunch_cron": "'*/5 * * * *'"}),
		want: []string{`job "odd"`, `relaunch_cron = "*/5 * * * *"`, "set relaunching_sql"},
		is:   &pampa.ConfigError{Job: "odd", Field: "relaunch_cron", Value: "*/5 * * * *"},
	},
	{
		name: "RelaunchTimeZoneWithoutCron",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"relaunch_time_zone": "UTC"}),
		want: []string{`job "odd"`, `relaunch_time_zone = "UTC"`, "only used with relaunch_cron"},
		is:   &pampa.ConfigError{Job: "odd", Field: "relaunch_time_zone", Value: "UTC"},
	},
	{
		name: "UnknownTopLevelKey",
		doc:  "job:\n  - name: odd\n",
		want: []string{"config.yaml:1:", "job: unknown key", `did you mean "jobs"?`},
		is:   &pampa.ConfigError{Field: "job"},
	},
	{
		name: "UnknownNodeKey",
		doc:  "nodes:\n  - name: local\n    max_worker: 2\n",
		want: []string{"config.yaml:3:", `node "local"`, "max_worker", `did you mean "max_workers"?`},
		is:   &pampa.ConfigError{Node: "local", Field: "max_worker"},
	},
	{
		name: "UnknownDatabaseKey",
		doc:  "database:\n  driver: sqlite\n  uri: x.db\n",
		want: []string{"config.yaml:3:", "database.uri", `did you mean "url"?`},
		is:   &pampa.ConfigError{Field: "database.uri"},
	},
	{
		name: "UnknownKeyFarFromAny",
		doc:  "database:\n  colour: blue\n",
		want: []string{"database.colour: unknown key; expected one of driver, url"},
	},
	{
		name: "ProcessingFunction",
		doc:  "jobs:\n  - name: odd\n    processing_function: x\n",
		want: []string{`job "odd"`, "processing_function", "Cluster.Handle"},
	},
	{
		name: "SelectingFunction",
		doc:  "jobs:\n  - name: odd\n    selecting_function: x\n",
		want: []string{`job "odd"`, "selecting_function", "selecting_sql"},
	},
	{
		name: "BadRegexp",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"filter_worker_id": "'(['"}),
		want: []string{"config.yaml:", `job "odd"`, `filter_worker_id = "(["`, "not a regular expression"},
		is:   &pampa.ConfigError{Job: "odd", Field: "filter_worker_id", Value: "(["},
	},
	{
		name: "QueueSizeZero",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"queue_size": "0"}),
		want: []string{"config.yaml:", `job "odd"`, `queue_size = "0"`, "at least 1", "default (5)"},
		is:   &pampa.ConfigError{Job: "odd", Field: "queue_size", Value: "0"},
	},
	{
		name: "QueueSizeMaxZero",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"queue_size_max": "0"}),
		want: []string{`job "odd"`, `queue_size_max = "0"`, "at least 1", "50 × queue_size"},
		is:   &pampa.ConfigError{Job: "odd", Field: "queue_size_max", Value: "0"},
	},
	{
		name: "QueueSizeMaxUnderQueueSize",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"queue_size": "10", "queue_size_max": "9"}),
		want: []string{`job "odd"`, `queue_size_max = "9"`, "at least queue_size (10)", "default (500)"},
		is:   &pampa.ConfigError{Job: "odd", Field: "queue_size_max", Value: "9"},
	},
	{
		name: "MaxTryTimesNegative",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_try_times": "-2"}),
		want: []string{`job "odd"`, `max_try_times = "-2"`, "at least 1"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_try_times", Value: "-2"},
	},
	{
		name: "MaxPendingTasksZero",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_pending_tasks": "0"}),
		want: []string{`job "odd"`, `max_pending_tasks = "0"`},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_pending_tasks", Value: "0"},
	},
	{
		name: "MaxJobDurationZero",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration": "0s"}),
		want: []string{`job "odd"`, `max_job_duration = "0s"`, "must be positive"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_job_duration", Value: "0s"},
	},
	{
		name: "MaxJobDurationMinutesZero",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration_minutes": "0"}),
		want: []string{`job "odd"`, `max_job_duration_minutes = "0"`, "must be positive"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_job_duration_minutes", Value: "0"},
	},
	{
		name: "MaxJobDurationMinutesNaN",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration_minutes": ".nan"}),
		want: []string{`job "odd"`, `max_job_duration_minutes = "NaN"`},
	},
	{
		name: "MaxJobDurationMinutesHuge",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration_minutes": "1e300"}),
		want: []string{`job "odd"`, "max_job_duration_minutes", "too long"},
	},
	{
		name: "BothDurationForms",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration": "90s", "max_job_duration_minutes": "15"}),
		want: []string{`job "odd"`, `max_job_duration = "1m30s"`, "max_job_duration_minutes is set too", "only one"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_job_duration", Value: "1m30s"},
	},
	{
		name: "DurationWithoutUnit",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"max_job_duration": "90"}),
		want: []string{`job "odd"`, `max_job_duration = "90"`, "want a duration such as 90s"},
		is:   &pampa.ConfigError{Job: "odd", Field: "max_job_duration", Value: "90"},
	},
	{
		name: "NegativeRetryBackoff",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"retry_backoff": "-1s"}),
		want: []string{`job "odd"`, `retry_backoff = "-1s"`, "negative"},
		is:   &pampa.ConfigError{Job: "odd", Field: "retry_backoff", Value: "-1s"},
	},
	{
		name: "FractionalQueueSize",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"queue_size": "2.5"}),
		want: []string{`job "odd"`, `queue_size = "2.5"`, "whole number"},
	},
	{
		name: "TextQueueSize",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"queue_size": "five"}),
		want: []string{`job "odd"`, `queue_size = "five"`, "whole number"},
	},
	{
		name: "ListForTable",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"table": "[a, b]"}),
		want: []string{`job "odd"`, "table", "not a list"},
	},
	{
		name: "DuplicateJobName",
		doc:  "jobs:\n" + configJob("odd", nil) + configJob("odd", nil),
		want: []string{"config.yaml:12:", `job "odd"`, `name = "odd"`, "two jobs have this name"},
		is:   &pampa.ConfigError{Job: "odd", Field: "name", Value: "odd"},
	},
	{
		name: "DuplicateNodeName",
		doc:  "nodes:\n" + configNode + configNode,
		want: []string{"config.yaml:4:", `node "local"`, "two nodes have this name"},
		is:   &pampa.ConfigError{Node: "local", Field: "name", Value: "local"},
	},
	{
		name: "UnclosedQuoteInTableName",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"table": `'"numbers'`}),
		want: []string{"config.yaml:3:", `job "odd"`, `table = "\"numbers"`, "no closing double quote"},
		is:   &pampa.ConfigError{Job: "odd", Field: "table", Value: `"numbers`},
	},
	{
		name: "MissingTrackingField",
		doc:  "jobs:\n" + configJob("odd", nil, "field_success"),
		want: []string{"config.yaml:2:", `job "odd"`, "field_success", "not set"},
		is:   &pampa.ConfigError{Job: "odd", Field: "field_success"},
	},
	{
		name: "MissingName",
		doc:  "jobs:\n" + configJob("", nil, "name"),
		want: []string{"config.yaml:2:", "name: a job needs a name"},
		is:   &pampa.ConfigError{Field: "name"},
	},
	{
		name: "BadDriver",
		doc:  "database:\n  driver: mysql\n",
		want: []string{"config.yaml:2:", `database.driver = "mysql"`, "sqlite, postgres and crdb"},
		is:   &pampa.ConfigError{Field: "database.driver", Value: "mysql"},
	},
	{
		name: "PostgresWithoutURL",
		doc:  "database:\n  driver: postgres\n",
		want: []string{"config.yaml:", "database.url", "needs a connection URL"},
		is:   &pampa.ConfigError{Field: "database.url"},
	},
	{
		name: "UnsetEnvInURL",
		doc:  "database:\n  driver: postgres\n  url: postgres://app:${PAMPA_CONFIG_TEST_UNSET}@db/app\n",
		want: []string{"config.yaml:3:", "database.url", "environment variable PAMPA_CONFIG_TEST_UNSET is not set"},
		is:   &pampa.ConfigError{Field: "database.url"},
	},
	{
		name: "BadEnvReference",
		doc:  "database:\n  url: 'x${NOT A NAME}'\n",
		want: []string{"database.url", "not an environment variable name"},
	},
	{
		name: "UnterminatedEnvReference",
		doc:  "database:\n  url: x${HOME\n",
		want: []string{"database.url", "without a closing"},
	},
	{
		name: "NodeMaxWorkersZero",
		doc:  "nodes:\n  - name: local\n    max_workers: 0\n",
		want: []string{"config.yaml:3:", `node "local"`, `max_workers = "0"`, "at least 1"},
		is:   &pampa.ConfigError{Node: "local", Field: "max_workers", Value: "0"},
	},
	{
		name: "NodeMaxWorkersMissing",
		doc:  "nodes:\n  - name: local\n",
		want: []string{`node "local"`, "max_workers", "at least 1"},
	},
	{
		name: "NodePortZero",
		doc:  "nodes:\n  - name: local\n    max_workers: 2\n    ssh_port: 0\n",
		want: []string{"config.yaml:4:", `node "local"`, `ssh_port = "0"`, "default (22)"},
		is:   &pampa.ConfigError{Node: "local", Field: "ssh_port", Value: "0"},
	},
	{
		name: "JobFilesAbsolute",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": "[odd.py, /usr/bin/python3]"}),
		want: []string{`job "odd": files = "/usr/bin/python3"`, "relative to the config file's directory"},
		is:   &pampa.ConfigError{Job: "odd", Field: "files", Value: "/usr/bin/python3"},
	},
	{
		name: "JobFilesOutside",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": "[lib/../../secrets]"}),
		want: []string{`job "odd": files = "lib/../../secrets"`, "inside the config file's directory"},
		is:   &pampa.ConfigError{Job: "odd", Field: "files", Value: "lib/../../secrets"},
	},
	{
		name: "JobFilesConfigDir",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": "[./]"}),
		want: []string{`job "odd": files = "./"`, "not the config file's directory itself"},
	},
	{
		name: "JobFilesEmptyPath",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": `[""]`}),
		want: []string{`job "odd": files`, "an empty path"},
	},
	{
		name: "JobFilesNotAList",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": "odd.py"}),
		want: []string{"config.yaml:", `job "odd": files = "odd.py"`, "want a list"},
	},
	{
		name: "JobFilesNestedList",
		doc:  "jobs:\n" + configJob("odd", map[string]string{"files": "[odd.py, [lib]]"}),
		want: []string{`job "odd": files`, "item 2: want a string, not a list"},
	},
	{
		name: "NodeFilesOutside",
		doc:  "nodes:\n  - name: local\n    max_workers: 2\n    files: [../certs]\n",
		want: []string{"config.yaml:4:", `node "local": files = "../certs"`, "inside the config file's directory"},
		is:   &pampa.ConfigError{Node: "local", Field: "files", Value: "../certs"},
	},
	{
		name: "KeyTwice",
		doc:  "jobs:\n  - name: odd\n    table: a\n    table: b\n",
		want: []string{"config.yaml:4:", `"table" is set twice (first on line 3)`},
	},
	{
		name: "SyntaxError",
		doc:  "jobs:\n  - name: odd\n   table: [\n",
		want: []string{"config.yaml:"},
	},
	{
		name: "TopLevelList",
		doc:  "- name: odd\n",
		want: []string{"config.yaml:1:", "top level must be a mapping"},
	},
	{
		name: "JobsNotAList",
		doc:  "jobs:\n  name: odd\n",
		want: []string{"config.yaml:2:", "jobs must be a list"},
	},
	{
		name: "JobNotAMapping",
		doc:  "jobs:\n  - odd\n",
		want: []string{"config.yaml:2:", "jobs[0]", "mapping"},
	},
	{
		name: "TwoDocuments",
		doc:  "jobs:\n---\nnodes:\n",
		want: []string{"config.yaml:", "one YAML document"},
	},
	{
		name: "MergeItself",
		doc:  "jobs:\n  - &a\n    name: odd\n    <<: *a\n",
		want: []string{"config.yaml:", "merges itself"},
	},
	{
		name: "MergeScalar",
		doc:  "jobs:\n  - name: odd\n    <<: 5\n",
		want: []string{"config.yaml:3:", "must merge a mapping"},
	},
	{
		name: "EveryBadDefinitionReported",
		doc:  "jobs:\n" + configJob("one", map[string]string{"queue_size": "0"}) + configJob("two", map[string]string{"max_try_times": "0"}),
		want: []string{`job "one": queue_size`, `job "two": max_try_times`},
	},
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()

	for _, tt := range configErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := pampa.ParseConfig([]byte(tt.doc), "config.yaml")
			if err == nil {
				t.Fatalf("no error; jobs %v, nodes %v, in\n%s", c.Jobs(), c.Nodes(), tt.doc)
			}
			if c != nil {
				t.Errorf("a cluster was returned along with the error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config.yaml:") {
				t.Errorf("error does not start with the file name: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\ndoes not contain %q", msg, w)
				}
			}
			if tt.is == nil {
				return
			}
			var ce *pampa.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %q is not a *ConfigError", msg)
			}
			got := *ce
			got.Reason = ""
			if got != *tt.is {
				t.Errorf("ConfigError = %+v, want %+v", got, *tt.is)
			}
		})
	}
}

func TestParseConfigUnknownKeyLine(t *testing.T) {
	t.Parallel()

	doc := "jobs:\n" + configJob("odd", nil) + configJob("even", map[string]string{"zzz_option": "1"})
	_, err := pampa.ParseConfig([]byte(doc), "cluster.yml")
	if err == nil {
		t.Fatal("no error")
	}
	// configJob writes 10 lines per job: the unknown key is line 22.
	if want := `cluster.yml:22: job "even": zzz_option: unknown key; expected one of `; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q\nwant prefix %q", err, want)
	}
	for _, key := range []string{"allowing_sql", "field_primary_key", "max_job_duration_minutes", "retry_backoff"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not list %s: %s", key, err)
		}
	}
}

// Environment tests cannot run in parallel.
func TestParseConfigEnv(t *testing.T) {
	t.Setenv("PAMPA_CONFIG_TEST_PASSWORD", "s3cret")
	t.Setenv("PAMPA_CONFIG_TEST_EMPTY", "")

	doc := "database:\n  driver: crdb\n  url: postgres://app:${PAMPA_CONFIG_TEST_PASSWORD}@db:26257/app?x=$1${PAMPA_CONFIG_TEST_EMPTY}\n"
	c, err := pampa.ParseConfig([]byte(doc), "config.yaml")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if want := "postgres://app:s3cret@db:26257/app?x=$1"; c.Database.URL != want {
		t.Errorf("URL = %q, want %q", c.Database.URL, want)
	}
	if c.Database.Driver != pampa.DriverCockroach {
		t.Errorf("Driver = %q", c.Database.Driver)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	good := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(good, []byte(configFullYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := pampa.LoadConfig(good)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if len(c.Jobs()) != 2 || len(c.Nodes()) != 2 {
		t.Errorf("got %d jobs and %d nodes", len(c.Jobs()), len(c.Nodes()))
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("jobs:\n  - name: odd\n    queue_size: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pampa.LoadConfig(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("error = %v, want it to start with %s:3:", err, bad)
	}

	missing := filepath.Join(dir, "missing.yaml")
	if _, err := pampa.LoadConfig(missing); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("error = %v, want a not-exist error naming %s", err, missing)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(configFullYAML)
	for _, tt := range configErrorCases {
		f.Add(tt.doc)
	}
	f.Add("a: &a [*a]\n")
	f.Add("jobs: &j\n  - *j\n")
	f.Add("x-a: &a {<<: [*a, *a]}\n")
	f.Add("{jobs: [{name: j, table: t, <<: {field_primary_key: k}}]}")

	f.Fuzz(func(t *testing.T, doc string) {
		c, err := pampa.ParseConfig([]byte(doc), "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Errorf("cluster returned with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Database.Validate(); err != nil {
			t.Errorf("accepted a bad database: %v", err)
		}
		names := map[string]bool{}
		for _, j := range c.Jobs() {
			cp := *j
			if err := cp.Validate(); err != nil {
				t.Errorf("accepted a bad job: %v", err)
			}
			if names[j.Name] {
				t.Errorf("accepted two jobs named %q", j.Name)
			}
			names[j.Name] = true
		}
		for _, n := range c.Nodes() {
			if err := n.Validate(); err != nil {
				t.Errorf("accepted a bad node: %v", err)
			}
		}
	})
}

func ExampleParseConfig() {
	doc := `
nodes:
  - name: local
    max_workers: 2
jobs:
  - name: search_odd_numbers
    table: numbers
    field_primary_key: value
    field_id: odd_checking_reservation_id
    field_time: odd_checking_reservation_time
    field_times: odd_checking_reservation_times
    field_start_time: odd_checking_start_time
    field_end_time: odd_checking_end_time
    field_success: odd_checking_success
    field_error_description: odd_checking_error_description
    max_job_duration_minutes: 1.5
`
	c, err := pampa.ParseConfig([]byte(doc), "config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, j := range c.Jobs() {
		fmt.Println(j.Name, j.Table, j.QueueSize, j.MaxJobDuration)
	}
	fmt.Println(c.WorkerIDs())

	_, err = pampa.ParseConfig([]byte("jobs:\n  - name: odd\n    queue_size: 0\n"), "config.yaml")
	fmt.Println(err)
	// Output:
	// search_odd_numbers numbers 5 1m30s
	// [local.1 local.2]
	// config.yaml:3: job "odd": queue_size = "0": must be at least 1; leave it out for the default (5)
}

// TestConfigSQLitePathFromFile: a relative SQLite path in a config file is
// taken from the file's directory, whatever the current directory; with
// no file behind the document, from the current directory. (Not parallel:
// it changes the current directory.)
func TestConfigSQLitePathFromFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf")
	elsewhere := filepath.Join(root, "elsewhere")
	for _, d := range []string{dir, elsewhere} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(elsewhere)
	for _, tc := range []struct{ url, want string }{
		{"tasks.db", filepath.Join(dir, "tasks.db")},
		{"data/tasks.db", filepath.Join(dir, "data", "tasks.db")},
		{"file:tasks.db?_pragma=busy_timeout(100)", "file:" + filepath.Join(dir, "tasks.db") + "?_pragma=busy_timeout(100)"},
		{"file:tasks.db", "file:" + filepath.Join(dir, "tasks.db")},
		{"/abs/tasks.db", "/abs/tasks.db"},
		{":memory:", ":memory:"},
		{"file::memory:?cache=shared", "file::memory:?cache=shared"},
	} {
		path := filepath.Join(dir, "pampa.yaml")
		if err := os.WriteFile(path, []byte("database: {driver: sqlite, url: \""+tc.url+"\"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, filepath.Join("..", "conf", "pampa.yaml")} {
			c, err := pampa.LoadConfig(p)
			if err != nil {
				t.Fatalf("LoadConfig(%s): %v", p, err)
			}
			if c.Database.URL != tc.want {
				t.Errorf("LoadConfig(%s) with url %q: URL = %q, want %q", p, tc.url, c.Database.URL, tc.want)
			}
		}
	}
	// A document with no file behind it: the current directory.
	c, err := pampa.ParseConfig([]byte("database: {url: tasks.db}\n"), "inline")
	if err != nil || c.Database.URL != "tasks.db" {
		t.Errorf("ParseConfig with no file: URL %q, %v; want tasks.db", c.Database.URL, err)
	}
	// A PostgreSQL URL is never touched.
	path := filepath.Join(dir, "pg.yaml")
	os.WriteFile(path, []byte("database: {driver: postgres, url: \"host=db dbname=app\"}\n"), 0o600)
	if c, err := pampa.LoadConfig(path); err != nil || c.Database.URL != "host=db dbname=app" {
		t.Errorf("postgres URL: %v", err)
	}
}
