// Package logging builds the log/slog logger of a Pampa process: a compact,
// human-readable console and, optionally, a rotated log file.
//
// One handler fans every record out to both sinks:
//
//	             ┌─▶ console: 10:04:05.123 INFO  dispatcher  reserved tasks job=x n=5
//	slog.Logger ─┤
//	             └─▶ file (lumberjack): time=2025-01-02T10:04:05.123+01:00 level=INFO msg="reserved tasks" component=dispatcher job=x n=5
//
// Every line carries the process's component. A failure to write a line (a
// full disk, a file removed under the process) is dropped silently; it never
// stops or crashes the process that logs.
package logging

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Defaults for Options.
const (
	DefaultComponent  = "pampa"
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 5
)

// ComponentKey is the attribute that names the component in the log file.
const ComponentKey = "component"

// Options configures New.
type Options struct {
	// Component names the process on every line, e.g. "dispatcher" or
	// "worker local.1". Default "pampa".
	Component string
	// File is the log file's path. "" means no file. Its directory is
	// created if needed.
	File string
	// Console receives the compact human-readable lines. nil means no console.
	Console io.Writer
	// Level is the minimum level written to both sinks. The zero value is
	// slog.LevelInfo.
	Level slog.Level
	// MaxSizeMB is the size in megabytes at which the file is rotated.
	// 0 means 100.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept. 0 means 5.
	MaxBackups int
	// JSON writes the file as JSON lines instead of slog's key=value text.
	JSON bool
}

// New returns a logger writing to opts.Console and opts.File, and a Closer
// that closes the file. Close is idempotent; lines logged after it are
// dropped. With neither a console nor a file the logger discards everything.
//
// When a file is set, the Closer also has a Rotate() error method that
// starts a new file at once (for example on SIGHUP).
//
// An unusable file path (its directory cannot be created, or the file cannot
// be opened for appending) is reported here, not on the first write.
func New(opts Options) (*slog.Logger, io.Closer, error) {
	if opts.MaxSizeMB < 0 {
		return nil, nil, fmt.Errorf("logging: MaxSizeMB = %d: must not be negative (0 means %d)", opts.MaxSizeMB, DefaultMaxSizeMB)
	}
	if opts.MaxBackups < 0 {
		return nil, nil, fmt.Errorf("logging: MaxBackups = %d: must not be negative (0 means %d)", opts.MaxBackups, DefaultMaxBackups)
	}
	if opts.Component == "" {
		opts.Component = DefaultComponent
	}
	if opts.MaxSizeMB == 0 {
		opts.MaxSizeMB = DefaultMaxSizeMB
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = DefaultMaxBackups
	}

	var handlers []slog.Handler
	var closer io.Closer = nopCloser{}
	if opts.Console != nil {
		handlers = append(handlers, newConsoleHandler(opts.Console, opts.Level, opts.Component))
	}
	if opts.File != "" {
		sink, err := openFile(opts)
		if err != nil {
			return nil, nil, err
		}
		closer = sink
		hopts := &slog.HandlerOptions{Level: opts.Level}
		var h slog.Handler
		if opts.JSON {
			h = slog.NewJSONHandler(sink, hopts)
		} else {
			h = slog.NewTextHandler(sink, hopts)
		}
		handlers = append(handlers, h.WithAttrs([]slog.Attr{slog.String(ComponentKey, opts.Component)}))
	}

	switch len(handlers) {
	case 0:
		return Discard(), closer, nil
	case 1:
		return slog.New(handlers[0]), closer, nil
	default:
		return slog.New(multiHandler(handlers)), closer, nil
	}
}

// Discard returns a logger that drops every record.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// fileSink is the rotated log file. It refuses writes after Close, since
// lumberjack would otherwise reopen the file on the next write.
//
// lumberjack starts one clean-up goroutine per file on first use, and that
// goroutine outlives Close; a process opens one log file, so it is harmless.
type fileSink struct {
	mu     sync.Mutex
	lj     *lumberjack.Logger
	closed bool
}

func openFile(opts Options) (*fileSink, error) {
	path := opts.File
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("logging: create directory of log file %q: %w", path, err)
		}
	}
	// lumberjack opens the file lazily; open it now so that a bad path is
	// an error here rather than silently lost lines later.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logging: open log file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("logging: open log file: %w", err)
	}
	return &fileSink{lj: &lumberjack.Logger{
		Filename:   path,
		MaxSize:    opts.MaxSizeMB,
		MaxBackups: opts.MaxBackups,
		LocalTime:  true,
	}}, nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, os.ErrClosed
	}
	return s.lj.Write(p)
}

// Rotate closes the current file, renames it with a timestamp and starts a
// new one; backups beyond MaxBackups are removed in the background.
func (s *fileSink) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return os.ErrClosed
	}
	return s.lj.Rotate()
}

func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lj.Close()
}

// multiHandler sends each record to every handler that accepts its level.
type multiHandler []slog.Handler

func (m multiHandler) Enabled(ctx context.Context, level slog.Level) bool {
	for _, h := range m {
		if h.Enabled(ctx, level) {
			return true
		}
	}
	return false
}

func (m multiHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range m {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (m multiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return m
	}
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (m multiHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return m
	}
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithGroup(name)
	}
	return out
}

// consoleHandler writes one compact line per record:
//
//	15:04:05.000 LEVEL component  message key=value key="quoted value"
//
// Attributes inside groups are written with dotted keys (group.key). Control
// characters and invalid UTF-8 are escaped, so a record is always one line.
type consoleHandler struct {
	out    *consoleOut
	attrs  []byte // preformatted attributes from WithAttrs
	prefix string // open groups, each followed by '.'
}

type consoleOut struct {
	mu        sync.Mutex
	w         io.Writer
	level     slog.Leveler
	component string
}

func newConsoleHandler(w io.Writer, level slog.Leveler, component string) *consoleHandler {
	return &consoleHandler{out: &consoleOut{w: w, level: level, component: escapeText(component)}}
}

func (h *consoleHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.out.level.Level()
}

func (h *consoleHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, 256)
	if !r.Time.IsZero() {
		buf = r.Time.AppendFormat(buf, "15:04:05.000")
		buf = append(buf, ' ')
	}
	lvl := r.Level.String()
	buf = append(buf, lvl...)
	for i := len(lvl); i < 5; i++ {
		buf = append(buf, ' ')
	}
	buf = append(buf, ' ')
	buf = append(buf, h.out.component...)
	buf = append(buf, "  "...)
	buf = append(buf, escapeText(r.Message)...)
	buf = append(buf, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendAttr(buf, h.prefix, a)
		return true
	})
	buf = append(buf, '\n')

	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(buf)
	return err
}

func (h *consoleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append([]byte(nil), h.attrs...)
	for _, a := range attrs {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

func (h *consoleHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

// appendAttr appends " key=value" (nothing for an empty attribute or an
// empty group), following slog's rules for handlers.
func appendAttr(buf []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			buf = appendAttr(buf, p, ga)
		}
		return buf
	}
	buf = append(buf, ' ')
	buf = appendMaybeQuoted(buf, prefix+a.Key)
	buf = append(buf, '=')
	return appendMaybeQuoted(buf, formatValue(a.Value))
}

// formatValue renders a resolved, non-group value. A panicking String,
// Error or MarshalText method yields a "!PANIC" text instead of a crash.
func formatValue(v slog.Value) (s string) {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format("2006-01-02T15:04:05.000Z07:00")
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindAny:
		defer func() {
			if r := recover(); r != nil {
				s = fmt.Sprintf("!PANIC: %v", r)
			}
		}()
		switch x := v.Any().(type) {
		case error:
			return x.Error()
		case encoding.TextMarshaler:
			b, err := x.MarshalText()
			if err != nil {
				return "!ERROR: " + err.Error()
			}
			return string(b)
		case []byte:
			return string(x)
		default:
			return fmt.Sprintf("%+v", x)
		}
	default: // int, uint, float, bool
		return v.String()
	}
}

// appendMaybeQuoted appends s as is when it is a plain word, and as a Go
// quoted string when it is empty or holds spaces, '=', '"', control
// characters, non-printable runes or invalid UTF-8.
func appendMaybeQuoted(buf []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(buf, s)
	}
	return append(buf, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b <= ' ' || b == '=' || b == '"' || b == '\\' || b == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// escapeText makes free text (a message) safe for a single line without
// quoting it: control characters, non-printable runes and invalid UTF-8 are
// written as Go escapes; everything else, quotes included, is kept.
func escapeText(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (r != ' ' && !unicode.IsPrint(r)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	buf := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			buf = append(buf, `\x`...)
			buf = append(buf, "0123456789abcdef"[s[i]>>4], "0123456789abcdef"[s[i]&0xf])
		case r == ' ' || unicode.IsPrint(r):
			buf = append(buf, s[i:i+size]...)
		default:
			q := strconv.QuoteRune(r) // 'x' with the rune escaped
			buf = append(buf, q[1:len(q)-1]...)
		}
		i += size
	}
	return string(buf)
}

// compile-time checks
var (
	_ slog.Handler = multiHandler(nil)
	_ slog.Handler = (*consoleHandler)(nil)
	_ io.Closer    = (*fileSink)(nil)
)
