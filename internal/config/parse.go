// Package config reads Pampa's config file: one YAML (or JSON) document
// with the sections database, nodes and jobs. It walks the YAML node tree
// itself rather than decoding it into structs in one go, so that each
// error can name the job or node it is in, the key and its line.
//
// The package knows the file's layout, not what a job or a node is: the
// caller (the root package, which defines them) hands it, through a
// [Builder], the fields each mapping decodes into and takes each decoded
// definition back to validate and add. It is the one place that parses the
// file; [StripKey] serves those that must change it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sections of the file, as passed to a Builder.
const (
	Database = "database"
	Nodes    = "nodes"
	Jobs     = "jobs"
	// Top is the top-level mapping, named in errors about its keys.
	Top = ""
)

// Builder receives the file's definitions.
type Builder interface {
	// Begin starts a mapping of a section (Database, Nodes or Jobs): it
	// returns where each key's value goes and the function that takes the
	// definition once decoded. That function returns the definition's
	// error, if any, and the key the error is about ("" for none), whose
	// line the error is given.
	Begin(section string) (Fields, func(m *Mapping) (key string, err error))
	// FieldError makes the error for a bad key or value in m.
	FieldError(m *Mapping, key, value, reason string) error
}

// Mapping is the mapping being decoded: what errors in it are named after,
// and the line of each of its keys.
type Mapping struct {
	Section string // Database, Nodes, Jobs or Top
	Index   int    // the item's index in its list
	Name    string // the value of its "name" key, once known
	Line    int
	lines   map[string]int
}

// LineOf returns the line of key (with or without the "database." prefix,
// or spelt with "_minutes"), or of the mapping when the key is absent.
func (m *Mapping) LineOf(key string) int {
	key = strings.TrimPrefix(key, m.Section+".")
	for _, k := range []string{key, key + "_minutes"} {
		if l, ok := m.lines[k]; ok {
			return l
		}
	}
	return m.Line
}

const (
	// maxMergeWork bounds the key/value pairs visited while expanding merge
	// keys, so a document of nested "<<" aliases cannot blow up.
	maxMergeWork = 10000
	// maxMergeDepth bounds how deeply merged mappings may merge others; it
	// also stops a mapping that merges itself.
	maxMergeDepth = 16
	// maxErrors is how many bad definitions one error lists.
	maxErrors = 10
)

var topLevelKeys = []string{Database, Jobs, Nodes}

// Parse reads data and hands each definition to b: the database (also when
// the file has none, for its defaults), then each node, then each job.
// source names the document in errors ("source:line: ..."); the errors of
// all bad definitions are joined, in the order of their lines.
func Parse(data []byte, source string, b Builder) error {
	if source == "" {
		source = "config"
	}
	p := &parser{source: source, b: b, mergeWork: maxMergeWork}
	root, err := p.document(data)
	if err != nil {
		return err
	}
	p.sections(root)
	return p.err()
}

type parser struct {
	source    string
	b         Builder
	mergeWork int
	errs      []foundError
	dropped   int
}

type foundError struct {
	line int
	err  error
}

func (p *parser) fail(line int, err error) {
	if len(p.errs) == maxErrors {
		p.dropped++
		return
	}
	if line > 0 {
		err = fmt.Errorf("%s:%d: %w", p.source, line, err)
	} else {
		err = fmt.Errorf("%s: %w", p.source, err)
	}
	p.errs = append(p.errs, foundError{line, err})
}

// err joins the errors found, in the order of their lines in the file.
func (p *parser) err() error {
	slices.SortStableFunc(p.errs, func(a, b foundError) int { return a.line - b.line })
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
func (p *parser) document(data []byte) (*yaml.Node, error) {
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
	root = resolve(root)
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the top level must be a mapping with the keys database, nodes and jobs, not %s", p.source, root.Line, describe(root))
	}
	return root, nil
}

// syntaxError rewrites the parser's "yaml: line N: ..." as "source:N: ...".
func (p *parser) syntaxError(err error) error {
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

// sections splits the top level into its sections and decodes each.
func (p *parser) sections(root *yaml.Node) {
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
			case Database:
				database = kv.value
			case Nodes:
				nodes = kv.value
			case Jobs:
				jobs = kv.value
			default:
				if strings.HasPrefix(kv.name, "x-") {
					continue // a place for anchors, as in Compose files
				}
				p.fail(kv.key.Line, p.b.FieldError(&Mapping{Section: Top}, kv.name, "", unknownKeyReason(kv.name, topLevelKeys)))
				bad = true
			}
		}
		if bad {
			return
		}
	}
	p.database(database)
	for i, n := range p.list(nodes, Nodes) {
		p.item(Nodes, "node", i, n)
	}
	for i, n := range p.list(jobs, Jobs) {
		p.item(Jobs, "job", i, n)
	}
}

// list returns the items of a top-level sequence, resolving aliases.
func (p *parser) list(n *yaml.Node, key string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n.Line, fmt.Errorf("%s must be a list (each item starting with \"- \"), not %s", key, describe(n)))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		items[i] = resolve(item)
	}
	return items
}

// database decodes the database mapping; an absent or empty one is still
// handed on, for its defaults.
func (p *parser) database(n *yaml.Node) {
	fields, done := p.b.Begin(Database)
	m := &Mapping{Section: Database}
	if !isNull(n) {
		m.Line = n.Line
		if !p.decode(n, fields, m) {
			return
		}
	}
	p.finish(m, done)
}

// item decodes the i-th node or job.
func (p *parser) item(section, what string, i int, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, fmt.Errorf("%s[%d]: want a mapping of %s options, not %s", section, i, what, describe(n)))
		return
	}
	fields, done := p.b.Begin(section)
	m := &Mapping{Section: section, Index: i, Line: n.Line}
	if p.decode(n, fields, m) {
		p.finish(m, done)
	}
}

func (p *parser) finish(m *Mapping, done func(*Mapping) (string, error)) {
	if key, err := done(m); err != nil {
		p.fail(m.LineOf(key), err)
	}
}
