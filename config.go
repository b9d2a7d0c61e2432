package pampa

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/config"
)

// LoadConfig reads a cluster definition from a YAML (or JSON) file. See
// [ParseConfig] for the format; errors name the file.
func LoadConfig(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig builds a cluster from a YAML document; JSON, being YAML, is
// accepted too. source names the document in errors, usually its file name.
//
// The document has three optional sections; the key names are the
// original's option names:
//
//	database:
//	  driver: postgres      # sqlite (default), postgres or crdb
//	  url: postgres://app:${DB_PASSWORD}@db.internal/app
//	nodes:
//	  - name: local
//	    net_remote_ip: 127.0.0.1
//	    ssh_port: 22        # default 22
//	    ssh_username: me
//	    ssh_password_env: NODE_PASSWORD
//	    max_workers: 10
//	    files: [certs/]    # shipped by nodes deploy; see Node.Files
//	jobs:
//	  - name: search_odd_numbers
//	    table: numbers
//	    field_primary_key: value
//	    field_id: odd_checking_reservation_id
//	    field_time: odd_checking_reservation_time
//	    field_times: odd_checking_reservation_times
//	    field_start_time: odd_checking_start_time
//	    field_end_time: odd_checking_end_time
//	    field_success: odd_checking_success
//	    field_error_description: odd_checking_error_description
//	    field_created_at: created_at   # optional; see Job.CreatedAt
//	    field_run_at: run_at           # optional; see Job.RunAt
//	    queue_size: 5                  # default 5
//	    queue_size_max: 250            # default 50 × queue_size, at most 1,000
//	    max_job_duration_minutes: 15   # or max_job_duration: 15m; default 15m
//	    max_try_times: 3               # default 3
//	    retry_backoff: 10s             # default 0
//	    retry_backoff_max: 10m         # optional: exponential backoff, see Job.RetryBackoffMax
//	    filter_worker_id: '.*'         # default '.*'
//	    max_assigned_workers: 5        # default 0, no cap
//	    max_pending_tasks: 500         # default 100
//	    files: [odd.py, lib/]          # shipped by nodes deploy; see Job.Files
//	    selecting_sql: |
//	      SELECT value FROM numbers
//	      WHERE odd_checking_reservation_id IS NULL LIMIT @n
//	    relaunch_cron: "*/5 * * * *"   # optional: relaunching_sql once per due time
//	    relaunch_time_zone: UTC        # default: the dispatcher's local zone
//	    max_running: 20                # optional: tries running at once, cluster-wide
//	    rate_limit: 600/1m             # optional: task starts per interval, cluster-wide
//	    group_by: domain               # optional: fair share and limits per value
//	    max_running_per_group: 2       # needs group_by
//	    rate_limit_per_group: 10/1m    # needs group_by
//	    on_drained_sql: |              # optional: once per drain, see docs/completion.md
//	      INSERT INTO summaries (job, run, ok, failed) VALUES (@job, @run, @succeeded, @failed)
//	    on_group_done_exec: [sh, report.sh]   # or on_group_done_sql; needs group_by
//	    exec: [python3, odd.py]        # optional: the processing function as a command
//	    dir: scripts                   # default: the config file's directory
//	    env: {API_TOKEN: "${TOKEN}"}   # added to the worker's environment
//	    mode: persistent               # default once: a process per try
//
// A job takes the fields of [Job], [TrackingFields] and the SQL hooks of
// [Hooks] (selecting_sql, relaunching_sql, occupied_sql, allowing_sql,
// total_sql, completed_sql, pending_sql, failed_sql, on_drained_sql,
// on_group_done_sql), the completion commands (on_drained_exec,
// on_group_done_exec: a list, run from the config file's directory; see
// [HookCommand]), and those of
// [ExecSpec] (exec, shell, dir, env, mode); a node takes the fields of
// [Node]. A processing function in Go, and Go hooks, cannot live in a
// file: register them with [Cluster.Handle] or on the returned jobs; a
// command named by exec needs no Go code (docs/handlers.md).
//
// Rules:
//   - Unknown keys are errors, as are keys given twice.
//   - An option whose Go zero value means "default" (queue_size,
//     max_try_times, max_pending_tasks, max_job_duration, ssh_port,
//     max_workers) must be left out, or null, to get the default; an
//     explicit 0 or a negative number is an error.
//   - Lists (files) are YAML lists of plain values: [a, b], or one "- a"
//     line per item.
//   - Durations use Go's syntax ("90s", "15m", "1h30m");
//     max_job_duration_minutes takes a plain number, decimals allowed.
//     Set one of max_job_duration and max_job_duration_minutes.
//   - ${NAME} in database.url and in the values of a job's env is replaced
//     by the environment variable NAME, which must be set. Nothing else is
//     expanded.
//   - exec is a list ([program, arg, ...]), run without a shell; a plain
//     string is an error, unless shell: true runs it with /bin/sh -c.
//   - A relative SQLite path in database.url is taken from the directory of
//     the config file (source, when it names a file), not from the current
//     directory; with no such file, from the current directory.
//   - YAML anchors, aliases and merge keys ("<<: *defaults") work. Top-level
//     keys starting with "x-" are ignored, to give shared settings a home.
//
// Every node and job goes through [Cluster.AddNode] or [Cluster.AddJob], so
// a bad definition fails with the same [*ConfigError] as in Go, prefixed
// with "source:line:". When several definitions are bad, the error lists
// each of them.
func ParseConfig(data []byte, source string) (*Cluster, error) {
	return parseConfig(data, source, os.LookupEnv)
}

func parseConfig(data []byte, source string, lookupEnv func(string) (string, bool)) (*Cluster, error) {
	b := &configBuilder{c: &Cluster{}, lookupEnv: lookupEnv}
	if fi, err := os.Stat(source); err == nil && fi.Mode().IsRegular() {
		// Absolute, so that the path does not depend on the directory the
		// process is in later.
		if dir, err := filepath.Abs(filepath.Dir(source)); err == nil {
			b.dir = dir
		}
	}
	if err := config.Parse(data, source, b); err != nil {
		return nil, err
	}
	return b.c, nil
}

// configBuilder turns the file's definitions, as internal/config decodes
// them, into the cluster's, through the same validation as in Go.
type configBuilder struct {
	c         *Cluster
	lookupEnv func(string) (string, bool)
	dir       string // the config file's directory, "" when not a file
}

func (b *configBuilder) Begin(section string) (config.Fields, func(*config.Mapping) (string, error)) {
	switch section {
	case config.Database:
		return b.database()
	case config.Nodes:
		return b.node()
	}
	return b.job()
}

// FieldError names the job or node the key is in, or the database section.
func (b *configBuilder) FieldError(m *config.Mapping, key, value, reason string) error {
	e := &ConfigError{Field: key, Value: value, Reason: reason}
	switch m.Section {
	case config.Database:
		e.Field = "database." + key
	case config.Nodes:
		e.Node = m.Name
	case config.Jobs:
		e.Job = m.Name
	}
	return e
}

// configErrorField is the key a definition's error is about, if it says.
func configErrorField(err error) string {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce.Field
	}
	return ""
}

func (b *configBuilder) database() (config.Fields, func(*config.Mapping) (string, error)) {
	var db Database
	return config.FieldsOf(&db), func(*config.Mapping) (string, error) {
		url, err := config.ExpandEnv(db.URL, b.lookupEnv)
		if err != nil {
			return "database.url", &ConfigError{Field: "database.url", Reason: err.Error()}
		}
		db.URL = url
		if db.Driver == DriverSQLite || db.Driver == "" {
			db.URL = sqlitePathFrom(b.dir, db.URL)
		}
		db = db.WithDefaults()
		if err := db.Validate(); err != nil {
			return configErrorField(err), err
		}
		b.c.Database = db
		return "", nil
	}
}

// sqlitePathFrom makes a relative SQLite path (plain or in a "file:" URI)
// relative to dir instead of the current directory. In-memory databases,
// absolute paths and an empty dir leave url as it is.
func sqlitePathFrom(dir, url string) string {
	path, query, uri := url, "", false
	if rest, ok := strings.CutPrefix(url, "file:"); ok {
		uri = true
		path, query, _ = strings.Cut(rest, "?")
	}
	if dir == "" || path == "" || strings.HasPrefix(path, ":memory:") || filepath.IsAbs(path) || strings.HasPrefix(path, "/") {
		return url
	}
	path = filepath.Join(dir, path)
	if !uri {
		return path
	}
	if query != "" || strings.Contains(url, "?") {
		return "file:" + path + "?" + query
	}
	return "file:" + path
}

func (b *configBuilder) node() (config.Fields, func(*config.Mapping) (string, error)) {
	var node Node
	// Decode straight into Node through its yaml tags, except the options
	// whose zero value means "default": those go through pointers so that
	// an explicit 0 can be told from an absent key.
	var port, maxWorkers *int
	fields := config.FieldsOf(&node)
	fields["ssh_port"] = &port
	fields["max_workers"] = &maxWorkers
	return fields, func(*config.Mapping) (string, error) {
		bad := func(field string, v int, why string) (string, error) {
			return field, &ConfigError{Node: node.Name, Field: field, Value: strconv.Itoa(v), Reason: why}
		}
		if port != nil {
			if *port < 1 || *port > 65535 {
				return bad("ssh_port", *port, "must be between 1 and 65535; leave it out for the default (22)")
			}
			node.Port = *port
		}
		if maxWorkers != nil {
			if *maxWorkers < 1 {
				return bad("max_workers", *maxWorkers, "must be at least 1")
			}
			node.MaxWorkers = *maxWorkers
		}
		err := b.c.AddNode(node)
		return configErrorField(err), err
	}
}

// configJobFile mirrors Job as written in a config file. Pointers tell an
// absent key (default) from an explicit zero (an error).
type configJobFile struct {
	Name                  string         `yaml:"name"`
	Table                 string         `yaml:"table"`
	PrimaryKey            string         `yaml:"field_primary_key"`
	Fields                TrackingFields `yaml:",inline"`
	CreatedAt             string         `yaml:"field_created_at"`
	RunAt                 string         `yaml:"field_run_at"`
	QueueSize             *int           `yaml:"queue_size"`
	QueueSizeMax          *int           `yaml:"queue_size_max"`
	MaxJobDuration        *time.Duration `yaml:"max_job_duration"`
	MaxJobDurationMinutes *float64       `yaml:"max_job_duration_minutes"`
	MaxTryTimes           *int           `yaml:"max_try_times"`
	RetryBackoff          time.Duration  `yaml:"retry_backoff"`
	RetryBackoffMax       time.Duration  `yaml:"retry_backoff_max"`
	FilterWorkerID        string         `yaml:"filter_worker_id"`
	MaxAssignedWorkers    int            `yaml:"max_assigned_workers"`
	MaxPendingTasks       *int           `yaml:"max_pending_tasks"`
	Hooks                 Hooks          `yaml:",inline"`
	RelaunchCron          string         `yaml:"relaunch_cron"`
	RelaunchTimeZone      string         `yaml:"relaunch_time_zone"`
	MaxRunning            int            `yaml:"max_running"`
	RateLimit             string         `yaml:"rate_limit"`
	GroupBy               string         `yaml:"group_by"`
	MaxRunningPerGroup    int            `yaml:"max_running_per_group"`
	RateLimitPerGroup     string         `yaml:"rate_limit_per_group"`
	Files                 []string       `yaml:"files"`

	// The completion hooks as commands (see HookCommand).
	OnDrainedExec   *config.StringList `yaml:"on_drained_exec"`
	OnGroupDoneExec *config.StringList `yaml:"on_group_done_exec"`

	// The processing function outside the worker's process: a command
	// (exec, with shell, dir, env and mode; see ExecSpec), or a URL
	// (http, with http_secret_env, http_timeout and http_headers; see
	// HTTPSpec).
	Exec  *config.StringList `yaml:"exec"`
	Shell *bool              `yaml:"shell"`
	Dir   *string            `yaml:"dir"`
	Env   map[string]string  `yaml:"env"`
	Mode  string             `yaml:"mode"`

	HTTP          *string           `yaml:"http"`
	HTTPSecretEnv string            `yaml:"http_secret_env"`
	HTTPTimeout   time.Duration     `yaml:"http_timeout"`
	HTTPHeaders   map[string]string `yaml:"http_headers"`
}

func (b *configBuilder) job() (config.Fields, func(*config.Mapping) (string, error)) {
	var f configJobFile
	return config.FieldsOf(&f), func(*config.Mapping) (string, error) {
		j, cerr := f.job()
		if cerr == nil {
			j.Exec, cerr = b.execSpec(&f)
		}
		if cerr == nil {
			j.HTTP, cerr = f.httpSpec()
		}
		if cerr == nil {
			j.Hooks.OnDrainedExec, cerr = b.hookCommand(&f, "on_drained_exec", f.OnDrainedExec)
		}
		if cerr == nil {
			j.Hooks.OnGroupDoneExec, cerr = b.hookCommand(&f, "on_group_done_exec", f.OnGroupDoneExec)
		}
		if cerr != nil {
			key, _, _ := strings.Cut(cerr.Field, ".") // env.NAME is on env's line
			return key, cerr
		}
		err := b.c.AddJob(j)
		return configErrorField(err), err
	}
}

// execSpec reads a job's exec keys: the command as a list (one string
// only with shell: true), dir from the file's directory (by default the
// directory itself), env with ${NAME} expanded. The rest is checked by
// Job.Validate.
func (b *configBuilder) execSpec(f *configJobFile) (*ExecSpec, *ConfigError) {
	bad := func(field string, value any, why string) *ConfigError {
		return &ConfigError{Job: f.Name, Field: field, Value: fmt.Sprint(value), Reason: why}
	}
	if f.Exec == nil {
		for _, k := range []struct {
			key string
			set bool
		}{{"shell", f.Shell != nil}, {"dir", f.Dir != nil}, {"env", f.Env != nil}, {"mode", f.Mode != ""}} {
			if k.set {
				return nil, bad(k.key, "", "applies to a command: set exec too (exec: [program, args...])")
			}
		}
		return nil, nil
	}
	shell := f.Shell != nil && *f.Shell
	x := &ExecSpec{Command: f.Exec.Items, Shell: shell, Dir: b.dir, Mode: ExecMode(f.Mode)}
	switch {
	case f.Exec.Scalar && !shell:
		return nil, bad("exec", x.commandText(), "write the command as a list, such as [python3, odd.py]; to run this string with /bin/sh -c, set shell: true")
	case !f.Exec.Scalar && shell:
		return nil, bad("exec", x.commandText(), `with shell: true, write the command as one string for /bin/sh -c, such as "sort | uniq -c"`)
	}
	if f.Dir != nil {
		x.Dir = *f.Dir
		if !filepath.IsAbs(x.Dir) {
			x.Dir = filepath.Join(b.dir, x.Dir)
		}
	}
	if f.Env != nil {
		x.Env = make(map[string]string, len(f.Env))
		for name, v := range f.Env {
			val, err := config.ExpandEnv(v, b.lookupEnv)
			if err != nil {
				return nil, bad("env."+name, v, err.Error())
			}
			x.Env[name] = val
		}
	}
	return x, nil
}

// hookCommand reads a completion hook's command: a list, run from the
// config file's directory. Job.Validate checks the rest.
func (b *configBuilder) hookCommand(f *configJobFile, key string, l *config.StringList) (*HookCommand, *ConfigError) {
	if l == nil {
		return nil, nil
	}
	h := &HookCommand{Command: l.Items, Dir: b.dir}
	if l.Scalar {
		return nil, &ConfigError{Job: f.Name, Field: key, Value: h.text(),
			Reason: "write the command as a list, such as [sh, report.sh]; for a shell, [sh, -c, \"...\"]"}
	}
	return h, nil
}

// httpSpec reads a job's http keys; Job.Validate checks them.
func (f *configJobFile) httpSpec() (*HTTPSpec, *ConfigError) {
	if f.HTTP == nil {
		for _, k := range []struct {
			key string
			set bool
		}{{"http_secret_env", f.HTTPSecretEnv != ""}, {"http_timeout", f.HTTPTimeout != 0}, {"http_headers", f.HTTPHeaders != nil}} {
			if k.set {
				return nil, &ConfigError{Job: f.Name, Field: k.key, Reason: "applies to an HTTP processing function: set http too (http: https://...)"}
			}
		}
		return nil, nil
	}
	if f.HTTPTimeout < 0 {
		return nil, &ConfigError{Job: f.Name, Field: "http_timeout", Value: f.HTTPTimeout.String(), Reason: "must be positive; leave it out for the try's deadline"}
	}
	return &HTTPSpec{URL: *f.HTTP, SecretEnv: f.HTTPSecretEnv, Timeout: f.HTTPTimeout, Headers: f.HTTPHeaders}, nil
}

// job converts the file's form into a Job, rejecting explicit zeros.
func (f *configJobFile) job() (Job, *ConfigError) {
	j := Job{
		Name:               f.Name,
		Table:              f.Table,
		PrimaryKey:         f.PrimaryKey,
		Fields:             f.Fields,
		CreatedAt:          f.CreatedAt,
		RunAt:              f.RunAt,
		RetryBackoff:       f.RetryBackoff,
		RetryBackoffMax:    f.RetryBackoffMax,
		FilterWorkerID:     f.FilterWorkerID,
		MaxAssignedWorkers: f.MaxAssignedWorkers,
		Hooks:              f.Hooks,
		RelaunchCron:       f.RelaunchCron,
		RelaunchTimeZone:   f.RelaunchTimeZone,
		MaxRunning:         f.MaxRunning,
		GroupBy:            f.GroupBy,
		MaxRunningPerGroup: f.MaxRunningPerGroup,
		Files:              f.Files,
	}
	bad := func(field string, value any, why string) *ConfigError {
		return &ConfigError{Job: f.Name, Field: field, Value: fmt.Sprint(value), Reason: why}
	}
	for _, opt := range []struct {
		field string
		v     *int
		def   int
		dst   *int
	}{
		{"queue_size", f.QueueSize, DefaultQueueSize, &j.QueueSize},
		{"max_try_times", f.MaxTryTimes, DefaultMaxTryTimes, &j.MaxTryTimes},
		{"max_pending_tasks", f.MaxPendingTasks, DefaultMaxPendingTasks, &j.MaxPendingTasks},
	} {
		if opt.v == nil {
			continue
		}
		if *opt.v < 1 {
			return j, bad(opt.field, *opt.v, fmt.Sprintf("must be at least 1; leave it out for the default (%d)", opt.def))
		}
		*opt.dst = *opt.v
	}
	if f.QueueSizeMax != nil {
		if *f.QueueSizeMax < 1 {
			return j, bad("queue_size_max", *f.QueueSizeMax, "must be at least 1; leave it out for the default (50 × queue_size, at most 1,000)")
		}
		j.QueueSizeMax = *f.QueueSizeMax
	}
	for _, r := range []struct {
		field, text string
		dst         *Rate
	}{{"rate_limit", f.RateLimit, &j.RateLimit}, {"rate_limit_per_group", f.RateLimitPerGroup, &j.RateLimitPerGroup}} {
		if r.text == "" {
			continue
		}
		rate, err := ParseRate(r.text)
		if err != nil {
			return j, bad(r.field, r.text, err.Error())
		}
		*r.dst = rate
	}
	switch {
	case f.MaxJobDuration != nil && f.MaxJobDurationMinutes != nil:
		return j, bad("max_job_duration", *f.MaxJobDuration,
			fmt.Sprintf("max_job_duration_minutes is set too (%v); set only one of them", *f.MaxJobDurationMinutes))
	case f.MaxJobDuration != nil:
		if *f.MaxJobDuration <= 0 {
			return j, bad("max_job_duration", *f.MaxJobDuration, "must be positive; leave it out for the default ("+DefaultMaxJobDuration.String()+")")
		}
		j.MaxJobDuration = *f.MaxJobDuration
	case f.MaxJobDurationMinutes != nil:
		d, err := configMinutes(*f.MaxJobDurationMinutes)
		if err != "" {
			return j, bad("max_job_duration_minutes", strconv.FormatFloat(*f.MaxJobDurationMinutes, 'g', -1, 64), err)
		}
		j.MaxJobDuration = d
	}
	return j, nil
}

// configMinutes converts a number of minutes to a duration; the second result
// says what is wrong with m, if anything.
func configMinutes(m float64) (time.Duration, string) {
	switch {
	case math.IsNaN(m) || m <= 0:
		return 0, "must be positive; leave it out for the default (15)"
	case m*float64(time.Minute) >= math.MaxInt64:
		return 0, "too long"
	}
	d := time.Duration(math.Round(m * float64(time.Minute)))
	if d <= 0 {
		return 0, "shorter than a nanosecond"
	}
	return d, ""
}
