package pampa

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
//	    queue_size: 5                  # default 5
//	    max_job_duration_minutes: 15   # or max_job_duration: 15m; default 15m
//	    max_try_times: 3               # default 3
//	    retry_backoff: 10s             # default 0
//	    filter_worker_id: '.*'         # default '.*'
//	    max_assigned_workers: 5        # default 0, no cap
//	    max_pending_tasks: 500         # default 100
//	    selecting_sql: |
//	      SELECT value FROM numbers
//	      WHERE odd_checking_reservation_id IS NULL LIMIT @n
//
// A job takes the fields of [Job], [TrackingFields] and the SQL hooks of
// [Hooks] (selecting_sql, relaunching_sql, occupied_sql, allowing_sql,
// total_sql, completed_sql, pending_sql, failed_sql); a node takes the
// fields of [Node]. Processing functions and Go hooks cannot live in a file:
// register them with [Cluster.Handle] or on the returned jobs.
//
// Rules:
//   - Unknown keys are errors, as are keys given twice.
//   - An option whose Go zero value means "default" (queue_size,
//     max_try_times, max_pending_tasks, max_job_duration, ssh_port,
//     max_workers) must be left out, or null, to get the default; an
//     explicit 0 or a negative number is an error.
//   - Durations use Go's syntax ("90s", "15m", "1h30m");
//     max_job_duration_minutes takes a plain number, decimals allowed.
//     Set one of max_job_duration and max_job_duration_minutes.
//   - ${NAME} in database.url is replaced by the environment variable NAME,
//     which must be set. Nothing else is expanded.
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

const (
	// configMaxMergeWork bounds the key/value pairs visited while expanding merge
	// keys, so a document of nested "<<" aliases cannot blow up.
	configMaxMergeWork = 10000
	// configMaxMergeDepth bounds how deeply merged mappings may merge others;
	// it also stops a mapping that merges itself.
	configMaxMergeDepth = 16
	// configMaxErrors is how many bad definitions one error lists.
	configMaxErrors = 10
)

var configTopLevelKeys = []string{"database", "jobs", "nodes"}

func parseConfig(data []byte, source string, lookupEnv func(string) (string, bool)) (*Cluster, error) {
	if source == "" {
		source = "config"
	}
	p := &configParser{source: source, lookupEnv: lookupEnv, mergeWork: configMaxMergeWork}
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	p.cluster(root, c)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// configParser walks the YAML node tree itself rather than decoding it into
// structs in one go, so that each error can name the job or node it is in,
// the key and its line.
type configParser struct {
	source    string
	lookupEnv func(string) (string, bool)
	mergeWork int
	errs      []configFoundError
	dropped   int
}

type configFoundError struct {
	line int
	err  error
}

func (p *configParser) fail(line int, err error) {
	if len(p.errs) == configMaxErrors {
		p.dropped++
		return
	}
	if line > 0 {
		err = fmt.Errorf("%s:%d: %w", p.source, line, err)
	} else {
		err = fmt.Errorf("%s: %w", p.source, err)
	}
	p.errs = append(p.errs, configFoundError{line, err})
}

// err joins the errors found, in the order of their lines in the file.
func (p *configParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b configFoundError) int { return a.line - b.line })
	errs := make([]error, 0, len(p.errs)+1)
	for _, e := range p.errs {
		errs = append(errs, e.err)
	}
	if p.dropped > 0 {
		errs = append(errs, fmt.Errorf("%s: and %d more errors", p.source, p.dropped))
	}
	return errors.Join(errs...)
}

// document parses data into its single YAML document. It returns nil for an
// empty document.
func (p *configParser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, p.syntaxError(err)
	default:
		return nil, fmt.Errorf("%s:%d: a config file holds one YAML document; remove the second one (after \"---\")", p.source, extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	root = yamlResolve(root)
	if yamlIsNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the top level must be a mapping with the keys database, nodes and jobs, not %s", p.source, root.Line, yamlDescribe(root))
	}
	return root, nil
}

// syntaxError rewrites the parser's "yaml: line N: ..." as "source:N: ...".
func (p *configParser) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				return fmt.Errorf("%s:%d: %s", p.source, line, text)
			}
		}
	}
	return fmt.Errorf("%s: %s", p.source, msg)
}

func (p *configParser) cluster(root *yaml.Node, c *Cluster) {
	var database, nodes, jobs *yaml.Node
	if root != nil {
		pairs, err := p.pairs(root, 0)
		if err != nil {
			p.fail(err.line, err)
			return
		}
		bad := false
		for _, kv := range pairs {
			switch kv.name {
			case "database":
				database = kv.value
			case "nodes":
				nodes = kv.value
			case "jobs":
				jobs = kv.value
			default:
				if strings.HasPrefix(kv.name, "x-") {
					continue // a place for anchors, as in Compose files
				}
				p.fail(kv.key.Line, configUnknownKey(&ConfigError{Field: kv.name}, kv.name, configTopLevelKeys))
				bad = true
			}
		}
		if bad {
			return
		}
	}
	p.database(database, c)
	for i, n := range p.list(nodes, "nodes") {
		p.node(i, n, c)
	}
	for i, n := range p.list(jobs, "jobs") {
		p.job(i, n, c)
	}
}

// list returns the items of a top-level sequence, resolving aliases.
func (p *configParser) list(n *yaml.Node, key string) []*yaml.Node {
	if yamlIsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n.Line, fmt.Errorf("%s must be a list (each item starting with \"- \"), not %s", key, yamlDescribe(n)))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		items[i] = yamlResolve(item)
	}
	return items
}

func (p *configParser) database(n *yaml.Node, c *Cluster) {
	var db Database
	sec := configSection{prefix: "database."}
	if !yamlIsNull(n) {
		sec.line = n.Line
		if !p.decode(n, configFieldsOf(&db), &sec) {
			return
		}
	}
	url, err := configExpandEnv(db.URL, p.lookupEnv)
	if err != nil {
		p.fail(sec.lineOf("database.url"), &ConfigError{Field: "database.url", Reason: err.Error()})
		return
	}
	db.URL = url
	db = db.WithDefaults()
	if err := db.Validate(); err != nil {
		var ce *ConfigError
		field := ""
		if errors.As(err, &ce) {
			field = ce.Field
		}
		p.fail(sec.lineOf(field), err)
		return
	}
	c.Database = db
}

func (p *configParser) node(i int, n *yaml.Node, c *Cluster) {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, fmt.Errorf("nodes[%d]: want a mapping of node options, not %s", i, yamlDescribe(n)))
		return
	}
	var node Node
	// Decode straight into Node through its yaml tags, except the options
	// whose zero value means "default": those go through pointers so that
	// an explicit 0 can be told from an absent key.
	var port, maxWorkers *int
	fields := configFieldsOf(&node)
	fields["ssh_port"] = &port
	fields["max_workers"] = &maxWorkers
	sec := configSection{line: n.Line, node: true}
	if !p.decode(n, fields, &sec) {
		return
	}
	bad := func(field string, v int, why string) {
		p.fail(sec.lineOf(field), &ConfigError{Node: node.Name, Field: field, Value: strconv.Itoa(v), Reason: why})
	}
	if port != nil {
		if *port < 1 || *port > 65535 {
			bad("ssh_port", *port, "must be between 1 and 65535; leave it out for the default (22)")
			return
		}
		node.Port = *port
	}
	if maxWorkers != nil {
		if *maxWorkers < 1 {
			bad("max_workers", *maxWorkers, "must be at least 1")
			return
		}
		node.MaxWorkers = *maxWorkers
	}
	if err := c.AddNode(node); err != nil {
		p.fail(sec.lineOfError(err), err)
	}
}

// configJobFile mirrors Job as written in a config file. Pointers tell an
// absent key (default) from an explicit zero (an error).
type configJobFile struct {
	Name                  string         `yaml:"name"`
	Table                 string         `yaml:"table"`
	PrimaryKey            string         `yaml:"field_primary_key"`
	Fields                TrackingFields `yaml:",inline"`
	QueueSize             *int           `yaml:"queue_size"`
	MaxJobDuration        *time.Duration `yaml:"max_job_duration"`
	MaxJobDurationMinutes *float64       `yaml:"max_job_duration_minutes"`
	MaxTryTimes           *int           `yaml:"max_try_times"`
	RetryBackoff          time.Duration  `yaml:"retry_backoff"`
	FilterWorkerID        string         `yaml:"filter_worker_id"`
	MaxAssignedWorkers    int            `yaml:"max_assigned_workers"`
	MaxPendingTasks       *int           `yaml:"max_pending_tasks"`
	Hooks                 Hooks          `yaml:",inline"`
}

func (p *configParser) job(i int, n *yaml.Node, c *Cluster) {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, fmt.Errorf("jobs[%d]: want a mapping of job options, not %s", i, yamlDescribe(n)))
		return
	}
	var f configJobFile
	sec := configSection{line: n.Line}
	if !p.decode(n, configFieldsOf(&f), &sec) {
		return
	}
	j, cerr := f.job()
	if cerr != nil {
		p.fail(sec.lineOf(cerr.Field), cerr)
		return
	}
	if err := c.AddJob(j); err != nil {
		p.fail(sec.lineOfError(err), err)
	}
}

// job converts the file's form into a Job, rejecting explicit zeros.
func (f *configJobFile) job() (Job, *ConfigError) {
	j := Job{
		Name:               f.Name,
		Table:              f.Table,
		PrimaryKey:         f.PrimaryKey,
		Fields:             f.Fields,
		RetryBackoff:       f.RetryBackoff,
		FilterWorkerID:     f.FilterWorkerID,
		MaxAssignedWorkers: f.MaxAssignedWorkers,
		Hooks:              f.Hooks,
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

// configSection is the mapping being decoded: what errors in it are named
// after, and the line of each of its keys.
type configSection struct {
	prefix string // prepended to key names in errors ("database.")
	node   bool   // the mapping is a node, not a job
	name   string // the job's or node's name, once known
	line   int
	lines  map[string]int
}

func (s *configSection) configError(field, value, reason string) *ConfigError {
	e := &ConfigError{Field: s.prefix + field, Value: value, Reason: reason}
	switch {
	case s.prefix != "":
	case s.node:
		e.Node = s.name
	default:
		e.Job = s.name
	}
	return e
}

// lineOf returns the line of the key an error field refers to, or of the
// mapping when the key is absent.
func (s *configSection) lineOf(field string) int {
	field = strings.TrimPrefix(field, s.prefix)
	for _, k := range []string{field, field + "_minutes"} {
		if l, ok := s.lines[k]; ok {
			return l
		}
	}
	return s.line
}

func (s *configSection) lineOfError(err error) int {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return s.lineOf(ce.Field)
	}
	return s.line
}

// configExpandEnv replaces each ${NAME} in s with the environment variable
// NAME. An unset variable is an error: a connection string with a silently
// empty password fails later, and less clearly. A "$" not followed by "{"
// is kept.
func configExpandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New(`"${" without a closing "}"`)
		}
		name := s[i+2 : i+2+end]
		if !configIsEnvName(name) {
			return "", fmt.Errorf("%q is not an environment variable name; use letters, digits and '_'", name)
		}
		val, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(val)
		s = s[i+2+end+1:]
	}
}

func configIsEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
