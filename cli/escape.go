package cli

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Text the CLI prints for people goes through escapeControl, because much
// of it comes from elsewhere: task errors, log lines, node replies, names
// in the config. Left as they are, an escape sequence in a task's error
// could recolour, retitle or rewrite the operator's terminal, a carriage
// return could hide what a line says, and a bidi override could make it
// read backwards. JSON output is left exact: encoding/json escapes C0
// itself, and scripts want the bytes as stored.

// escapeControl returns s with every character that could act on a
// terminal written as a visible escape: C0 controls other than tab and
// newline (which tables and lines need) as \xNN (\r as \r), DEL as \x7f,
// C1 controls and the bidi embedding, override and isolate marks as
// \uNNNN, and bytes that are not UTF-8 as \xNN. Everything else is kept.
func escapeControl(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !needsEscape(r, size):
			b.WriteString(s[i : i+size])
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true // not UTF-8
	case r == '\t' || r == '\n':
		return false
	case r < 0x20, r == 0x7f, 0x80 <= r && r <= 0x9f:
		return true
	case 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069:
		return true // bidi embeddings, overrides and isolates
	}
	return false
}

// escapingWriter escapes what it is given with escapeControl. A character
// split between two writes (a stream read in pieces) is held back until
// its end arrives.
type escapingWriter struct {
	w       io.Writer
	pending []byte // the start of a character cut off by the last write
}

func newEscapingWriter(w io.Writer) *escapingWriter { return &escapingWriter{w: w} }

func (ew *escapingWriter) Write(p []byte) (int, error) {
	data := p
	if len(ew.pending) > 0 {
		data = append(ew.pending, p...)
		ew.pending = nil
	}
	// Hold back a trailing incomplete (but so far valid) UTF-8 sequence.
	for k := 1; k <= 3 && k <= len(data); k++ {
		c := data[len(data)-k]
		if !utf8.RuneStart(c) {
			continue
		}
		if c >= 0xc0 && !utf8.FullRune(data[len(data)-k:]) {
			ew.pending = append([]byte(nil), data[len(data)-k:]...)
			data = data[:len(data)-k]
		}
		break
	}
	if _, err := io.WriteString(ew.w, escapeControl(string(data))); err != nil {
		return 0, err
	}
	return len(p), nil
}
