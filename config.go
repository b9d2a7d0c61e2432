package pampa

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
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

// configFields binds each key a mapping accepts to the variable (a pointer) its
// value is decoded into.
type configFields map[string]any

// configFieldsOf maps the yaml-tagged fields of the struct ptr points to,
// descending into ",inline" structs. Untagged fields and "-" are skipped.
func configFieldsOf(ptr any) configFields {
	m := configFields{}
	configAddFields(m, reflect.ValueOf(ptr).Elem())
	return m
}

func configAddFields(m configFields, v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
		case opts == "inline" && sf.Type.Kind() == reflect.Struct:
			configAddFields(m, v.Field(i))
		case name != "":
			m[name] = v.Field(i).Addr().Interface()
		}
	}
}

// decode stores a mapping's values into fields. On the first problem it
// records an error and returns false.
func (p *configParser) decode(n *yaml.Node, fields configFields, sec *configSection) bool {
	if n.Kind != yaml.MappingNode {
		what := strings.TrimSuffix(sec.prefix, ".")
		p.fail(n.Line, fmt.Errorf("%s must be a mapping, not %s", what, yamlDescribe(n)))
		return false
	}
	pairs, perr := p.pairs(n, 0)
	if perr != nil {
		p.fail(perr.line, perr)
		return false
	}
	sec.lines = make(map[string]int, len(pairs))
	for _, kv := range pairs {
		sec.lines[kv.name] = kv.key.Line
		if kv.name == "name" && kv.value.Kind == yaml.ScalarNode && !yamlIsNull(kv.value) {
			sec.name = kv.value.Value
		}
	}
	for _, kv := range pairs {
		dst, ok := fields[kv.name]
		if !ok {
			p.fail(kv.key.Line, configUnknownKey(sec.configError(kv.name, "", ""), kv.name, fields.keys()))
			return false
		}
		if why := configDecodeValue(kv.value, dst); why != "" {
			p.fail(kv.value.Line, sec.configError(kv.name, yamlShortValue(kv.value), why))
			return false
		}
	}
	return true
}

func (m configFields) keys() []string { return slices.Sorted(maps.Keys(m)) }

// configDecodeValue decodes one value into dst; it returns why it could
// not, or "". A null value leaves dst alone; a pointer target (**int) is
// allocated only when there is a value.
func configDecodeValue(v *yaml.Node, dst any) string {
	if yamlIsNull(v) {
		return ""
	}
	if v.Kind != yaml.ScalarNode {
		return "want a single value, not " + yamlDescribe(v)
	}
	if pv := reflect.ValueOf(dst).Elem(); pv.Kind() == reflect.Pointer {
		nv := reflect.New(pv.Type().Elem())
		why := configDecodeValue(v, nv.Interface())
		if why == "" {
			pv.Set(nv)
		}
		return why
	}
	switch d := dst.(type) {
	case *string:
		*d = v.Value
	case *int:
		n, ok := yamlInt(v)
		if !ok {
			return "want a whole number"
		}
		*d = n
	case *float64:
		if t := v.ShortTag(); (t != "!!int" && t != "!!float") || v.Decode(d) != nil {
			return "want a number"
		}
	case *time.Duration:
		dur, err := time.ParseDuration(v.Value)
		if err != nil {
			return "want a duration such as 90s, 15m or 1h30m"
		}
		*d = dur
	default:
		if err := v.Decode(dst); err != nil {
			return "cannot decode: " + err.Error()
		}
	}
	return ""
}

// yamlInt reads an integer, refusing the fractions yaml.v3 would
// otherwise truncate.
func yamlInt(v *yaml.Node) (int, bool) {
	switch v.ShortTag() {
	case "!!int":
		var n int
		return n, v.Decode(&n) == nil
	case "!!float":
		var f float64
		if v.Decode(&f) != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, false
		}
		return int(f), true
	}
	return 0, false
}

// configPair is one entry of a mapping, its value resolved from any alias.
type configPair struct {
	name       string
	key, value *yaml.Node
}

type configLineError struct {
	line int
	msg  string
}

func (e *configLineError) Error() string { return e.msg }

// pairs lists a mapping's entries with merge keys ("<<") expanded: keys
// written in the mapping win over merged ones, and earlier merged mappings
// win over later ones. A key written twice is an error. depth counts the
// merges that led here.
func (p *configParser) pairs(m *yaml.Node, depth int) ([]configPair, *configLineError) {
	var out []configPair
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if p.mergeWork--; p.mergeWork < 0 {
			return nil, &configLineError{m.Line, "too many merged keys; simplify the \"<<\" merges"}
		}
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		kr := yamlResolve(k)
		if kr.Kind != yaml.ScalarNode || yamlIsNull(kr) {
			return nil, &configLineError{k.Line, "keys must be plain names, not " + yamlDescribe(kr)}
		}
		if first, dup := seen[kr.Value]; dup {
			return nil, &configLineError{k.Line, fmt.Sprintf("%s is set twice (first on line %d)", strconv.Quote(kr.Value), first)}
		}
		seen[kr.Value] = k.Line
		out = append(out, configPair{name: kr.Value, key: k, value: yamlResolve(v)})
	}
	for _, mv := range merges {
		var sources []*yaml.Node
		switch mv = yamlResolve(mv); mv.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{mv}
		case yaml.SequenceNode:
			for _, s := range mv.Content {
				sources = append(sources, yamlResolve(s))
			}
		default:
			sources = []*yaml.Node{mv}
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				return nil, &configLineError{mv.Line, "\"<<\" must merge a mapping or a list of mappings, not " + yamlDescribe(src)}
			}
			if depth >= configMaxMergeDepth {
				return nil, &configLineError{mv.Line, "\"<<\" merges nest too deeply (or a mapping merges itself)"}
			}
			if p.mergeWork--; p.mergeWork < 0 {
				return nil, &configLineError{mv.Line, "too many merged keys; simplify the \"<<\" merges"}
			}
			merged, err := p.pairs(src, depth+1)
			if err != nil {
				return nil, err
			}
			for _, kv := range merged {
				if _, ok := seen[kv.name]; !ok {
					seen[kv.name] = kv.key.Line
					out = append(out, kv)
				}
			}
		}
	}
	return out, nil
}

// yamlResolve follows an alias to the node it names.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for range 4 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// yamlDescribe names a node's kind for error messages.
func yamlDescribe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if yamlIsNull(n) {
			return "an empty value"
		}
		return "the value " + strconv.Quote(yamlShortValue(n))
	}
	return "an empty document"
}

// yamlShortValue is a scalar's text, cut to read well in an error.
func yamlShortValue(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	const maxLen = 60
	if s := n.Value; len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "…"
	}
	return n.Value
}

// configUnknownKey completes e into an "unknown key" error with a hint: a close
// match, advice for the original's Ruby-only options, or the keys allowed.
func configUnknownKey(e *ConfigError, key string, allowed []string) *ConfigError {
	e.Reason = "unknown key"
	if base, ok := strings.CutSuffix(key, "_function"); ok {
		switch {
		case base == "processing":
			e.Reason += "; register the processing function in Go with Cluster.Handle"
			return e
		case slices.Contains(allowed, base+"_sql"):
			e.Reason += fmt.Sprintf("; write the hook as SQL in %s, or set it in Go on the job's Hooks", base+"_sql")
			return e
		}
	}
	if best := configClosestKey(key, allowed); best != "" {
		e.Reason += fmt.Sprintf("; did you mean %q?", best)
		return e
	}
	e.Reason += "; expected one of " + strings.Join(allowed, ", ")
	return e
}

// configClosestKey returns the allowed key nearest to key when it is close
// enough to be a typo, else "".
func configClosestKey(key string, allowed []string) string {
	if len(key) > 64 {
		return ""
	}
	key = strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := configEditDistance(key, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// configEditDistance is the Levenshtein distance between two short strings.
func configEditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
