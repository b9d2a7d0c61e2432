// Package visible makes text from elsewhere (task errors, log lines, node
// replies, column values) safe to show a person: every character that
// could act on a terminal, or hide or reorder what a line says, is written
// as a visible escape. The CLI prints through it; the dashboard shows
// through it (html/template escapes HTML, not these).
package visible

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape returns s with every character that could act on a
// terminal written as a visible escape: C0 controls other than tab and
// newline (which tables and lines need) as \xNN (\r as \r), DEL as \x7f,
// C1 controls and the bidi embedding, override and isolate marks as
// \uNNNN, and bytes that are not UTF-8 as \xNN. Everything else is kept.
func Escape(s string) string {
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
