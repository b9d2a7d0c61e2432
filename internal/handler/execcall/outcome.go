package execcall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/handler"
)

// parseSet reads the columns to set from a once try's stdout: nothing
// (only white space) or one JSON object, whose values become column
// values (see columnValue).
func parseSet(out []byte) (map[string]any, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("stdout is not JSON (%v); it begins %s", err, quotePrefix(out))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("stdout holds more than one JSON value (print one object of columns to set, or nothing); it begins %s", quotePrefix(out))
	}
	return setOf(raw, "stdout")
}

// setOf reads a JSON object of columns to set; what names where it came
// from in errors.
func setOf(raw json.RawMessage, what string) (map[string]any, error) {
	if raw[0] != '{' {
		return nil, fmt.Errorf("%s holds a JSON %s, not an object of columns to set; it begins %s", what, jsonKind(raw[0]), quotePrefix(raw))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	set := make(map[string]any, len(obj))
	for col, v := range obj {
		val, err := columnValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: column %q: %w", what, col, err)
		}
		set[col] = val
	}
	return set, nil
}

// columnValue turns a JSON value into one a column takes: a string,
// true/false, NULL, an int64 for a whole number that fits, else a
// float64; an object or an array is kept as its JSON text (for a JSON
// or text column).
func columnValue(v json.RawMessage) (any, error) {
	switch v[0] {
	case '"':
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	case 't', 'f':
		return v[0] == 't', nil
	case 'n':
		return nil, nil
	case '{', '[':
		var b bytes.Buffer
		err := json.Compact(&b, v)
		return b.String(), err
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return nil, fmt.Errorf("number %s out of range", v)
	}
	return f, nil
}

// jsonKind names the kind of JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// answer is a persistent process's answer line.
type answer struct {
	OK    *bool           `json:"ok"`
	Set   json.RawMessage `json:"set"`
	Error string          `json:"error"`
	Final bool            `json:"final"`
}

// parseAnswer reads one answer line: {"ok": true, "set": {...}} or
// {"ok": false, "error": "...", "final": false}. error and final are read
// only when ok is false; set, as Task.Set, either way.
func parseAnswer(line []byte) (handler.Outcome, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return handler.Outcome{}, fmt.Errorf("the answer is not a JSON object; the line begins %s", quotePrefix(line))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var a answer
	if err := dec.Decode(&a); err != nil {
		return handler.Outcome{}, fmt.Errorf("bad answer (%v); want {\"ok\": true, \"set\": {...}} or {\"ok\": false, \"error\": \"...\"}; the line begins %s", err, quotePrefix(line))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return handler.Outcome{}, fmt.Errorf("text after the answer object; the line begins %s", quotePrefix(line))
	}
	if a.OK == nil {
		return handler.Outcome{}, fmt.Errorf(`the answer has no "ok"; the line begins %s`, quotePrefix(line))
	}
	var out handler.Outcome
	if len(a.Set) > 0 && string(a.Set) != "null" {
		set, err := setOf(a.Set, `the answer's "set"`)
		if err != nil {
			return handler.Outcome{}, err
		}
		out.Set = set
	}
	if !*a.OK {
		if a.Error == "" {
			a.Error = `the function answered "ok": false with no "error"`
		}
		out.Err, out.Final = errors.New(a.Error), a.Final
	}
	return out, nil
}

// quotePrefix quotes the start of data for an error message.
func quotePrefix(data []byte) string {
	const max = 120
	if len(data) <= max {
		return strconv.Quote(string(data))
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(data[cut]) {
		cut--
	}
	return strconv.Quote(string(data[:cut])) + fmt.Sprintf("… (%d bytes)", len(data))
}
