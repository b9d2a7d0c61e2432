package cli

import (
	"io"
	"unicode/utf8"

	"github.com/pampa-go/pampa/internal/visible"
)

// Text the CLI prints for people goes through visible.Escape, because much
// of it comes from elsewhere: task errors, log lines, node replies, names
// in the config. Left as they are, an escape sequence in a task's error
// could recolour, retitle or rewrite the operator's terminal, a carriage
// return could hide what a line says, and a bidi override could make it
// read backwards. JSON output is left exact: encoding/json escapes C0
// itself, and scripts want the bytes as stored.

// escapingWriter escapes what it is given with visible.Escape. A character
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
	if _, err := io.WriteString(ew.w, visible.Escape(string(data))); err != nil {
		return 0, err
	}
	return len(p), nil
}
