package config

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Decoding one mapping: binding keys to fields, decoding scalars strictly,
// resolving aliases and merges, and naming what is wrong.

// Fields binds each key a mapping accepts to the variable (a pointer) its
// value is decoded into.
type Fields map[string]any

// FieldsOf maps the yaml-tagged fields of the struct ptr points to,
// descending into ",inline" structs. Untagged fields and "-" are skipped.
func FieldsOf(ptr any) Fields {
	m := Fields{}
	addFields(m, reflect.ValueOf(ptr).Elem())
	return m
}

func addFields(m Fields, v reflect.Value) {
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
			addFields(m, v.Field(i))
		case name != "":
			m[name] = v.Field(i).Addr().Interface()
		}
	}
}

// decode stores a mapping's values into fields. On the first problem it
// records an error and returns false.
func (p *parser) decode(n *yaml.Node, fields Fields, m *Mapping) bool {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, fmt.Errorf("%s must be a mapping, not %s", m.Section, describe(n)))
		return false
	}
	pairs, perr := p.pairs(n, 0)
	if perr != nil {
		p.fail(perr.line, perr)
		return false
	}
	m.lines = make(map[string]int, len(pairs))
	for _, kv := range pairs {
		m.lines[kv.name] = kv.key.Line
		if kv.name == "name" && kv.value.Kind == yaml.ScalarNode && !isNull(kv.value) {
			m.Name = kv.value.Value
		}
	}
	for _, kv := range pairs {
		dst, ok := fields[kv.name]
		if !ok {
			p.fail(kv.key.Line, p.b.FieldError(m, kv.name, "", unknownKeyReason(kv.name, fields.keys())))
			return false
		}
		if why := p.decodeValue(kv.value, dst); why != "" {
			p.fail(kv.value.Line, p.b.FieldError(m, kv.name, shortValue(kv.value), why))
			return false
		}
	}
	return true
}

func (m Fields) keys() []string { return slices.Sorted(maps.Keys(m)) }

// StringList is a value written as a list of strings or as one string;
// the latter (Scalar) decodes as a list of that one string.
type StringList struct {
	Items  []string
	Scalar bool
}

// decodeValue decodes one value into dst; it returns why it could
// not, or "". A null value leaves dst alone; a pointer target (**int) is
// allocated only when there is a value. Values are scalars, but for a
// StringList, a []string (a list only) and a map[string]string.
func (p *parser) decodeValue(v *yaml.Node, dst any) string {
	if isNull(v) {
		return ""
	}
	if pv := reflect.ValueOf(dst).Elem(); pv.Kind() == reflect.Pointer {
		nv := reflect.New(pv.Type().Elem())
		why := p.decodeValue(v, nv.Interface())
		if why == "" {
			pv.Set(nv)
		}
		return why
	}
	switch d := dst.(type) {
	case *StringList:
		return decodeStringList(v, d)
	case *[]string: // a list only, such as a job's files
		if v.Kind != yaml.SequenceNode {
			return "want a list, such as [a, b], not " + describe(v)
		}
		var l StringList
		why := decodeStringList(v, &l)
		*d = l.Items
		return why
	case *map[string]string:
		return p.decodeStringMap(v, d)
	}
	if v.Kind != yaml.ScalarNode {
		return "want a single value, not " + describe(v)
	}
	switch d := dst.(type) {
	case *string:
		*d = v.Value
	case *int:
		n, ok := wholeNumber(v)
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

// decodeStringList reads a list of strings, or one string.
func decodeStringList(v *yaml.Node, d *StringList) string {
	switch v.Kind {
	case yaml.ScalarNode:
		*d = StringList{Items: []string{v.Value}, Scalar: true}
		return ""
	case yaml.SequenceNode:
	default:
		return "want a list of strings, not " + describe(v)
	}
	items := make([]string, len(v.Content))
	for i, item := range v.Content {
		item = resolve(item)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return fmt.Sprintf("item %d: want a string, not %s", i+1, describe(item))
		}
		items[i] = item.Value
	}
	*d = StringList{Items: items}
	return ""
}

// decodeStringMap reads a mapping of names to single values, merge keys
// and aliases resolved as everywhere else.
func (p *parser) decodeStringMap(v *yaml.Node, d *map[string]string) string {
	if v.Kind != yaml.MappingNode {
		return "want a mapping of names to values, not " + describe(v)
	}
	pairs, err := p.pairs(v, 0)
	if err != nil {
		return err.msg
	}
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		switch {
		case isNull(kv.value):
			return fmt.Sprintf("%q has no value; write \"\" for an empty one", kv.name)
		case kv.value.Kind != yaml.ScalarNode:
			return fmt.Sprintf("%q: want a single value, not %s", kv.name, describe(kv.value))
		}
		m[kv.name] = kv.value.Value
	}
	*d = m
	return ""
}

// wholeNumber reads an integer, refusing the fractions yaml.v3 would
// otherwise truncate.
func wholeNumber(v *yaml.Node) (int, bool) {
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

// pair is one entry of a mapping, its value resolved from any alias.
type pair struct {
	name       string
	key, value *yaml.Node
}

type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// pairs lists a mapping's entries with merge keys ("<<") expanded: keys
// written in the mapping win over merged ones, and earlier merged mappings
// win over later ones. A key written twice is an error. depth counts the
// merges that led here.
func (p *parser) pairs(m *yaml.Node, depth int) ([]pair, *lineError) {
	var out []pair
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if p.mergeWork--; p.mergeWork < 0 {
			return nil, &lineError{m.Line, "too many merged keys; simplify the \"<<\" merges"}
		}
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		kr := resolve(k)
		if kr.Kind != yaml.ScalarNode || isNull(kr) {
			return nil, &lineError{k.Line, "keys must be plain names, not " + describe(kr)}
		}
		if first, dup := seen[kr.Value]; dup {
			return nil, &lineError{k.Line, fmt.Sprintf("%s is set twice (first on line %d)", strconv.Quote(kr.Value), first)}
		}
		seen[kr.Value] = k.Line
		out = append(out, pair{name: kr.Value, key: k, value: resolve(v)})
	}
	for _, mv := range merges {
		var sources []*yaml.Node
		switch mv = resolve(mv); mv.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{mv}
		case yaml.SequenceNode:
			for _, s := range mv.Content {
				sources = append(sources, resolve(s))
			}
		default:
			sources = []*yaml.Node{mv}
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				return nil, &lineError{mv.Line, "\"<<\" must merge a mapping or a list of mappings, not " + describe(src)}
			}
			if depth >= maxMergeDepth {
				return nil, &lineError{mv.Line, "\"<<\" merges nest too deeply (or a mapping merges itself)"}
			}
			if p.mergeWork--; p.mergeWork < 0 {
				return nil, &lineError{mv.Line, "too many merged keys; simplify the \"<<\" merges"}
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

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for range 4 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		return "the value " + strconv.Quote(shortValue(n))
	}
	return "an empty document"
}

// shortValue is a scalar's text, cut to read well in an error.
func shortValue(n *yaml.Node) string {
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

// unknownKeyReason says why a key is not accepted, with a hint: a close
// match, advice for the original's Ruby-only options, or the keys allowed.
func unknownKeyReason(key string, allowed []string) string {
	reason := "unknown key"
	if base, ok := strings.CutSuffix(key, "_function"); ok {
		switch {
		case base == "processing":
			return reason + "; name a command with exec: [program, args...] (docs/handlers.md), or register a Go function with Cluster.Handle"
		case slices.Contains(allowed, base+"_sql"):
			return reason + fmt.Sprintf("; write the hook as SQL in %s, or set it in Go on the job's Hooks", base+"_sql")
		}
	}
	if best := closestKey(key, allowed); best != "" {
		return reason + fmt.Sprintf("; did you mean %q?", best)
	}
	return reason + "; expected one of " + strings.Join(allowed, ", ")
}

// closestKey returns the allowed key nearest to key when it is close
// enough to be a typo, else "".
func closestKey(key string, allowed []string) string {
	if len(key) > 64 {
		return ""
	}
	key = strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := editDistance(key, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
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
