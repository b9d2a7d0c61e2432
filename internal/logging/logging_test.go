package logging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// lumberjack's clean-up goroutine is started once per file and is not
	// stopped by Close.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// syncBuffer is a bytes.Buffer safe for the concurrent reads a test makes
// while loggers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type bundle struct {
	console *syncBuffer
	file    string
	log     *slog.Logger
	closer  io.Closer
}

// setup returns a logger writing to a console buffer and a file in a
// temporary directory; opts fields other than Console and File are kept.
func setup(t *testing.T, opts Options) *bundle {
	t.Helper()
	b := &bundle{console: &syncBuffer{}, file: filepath.Join(t.TempDir(), "logs", "test.log")}
	opts.Console = b.console
	opts.File = b.file
	log, closer, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	b.log, b.closer = log, closer
	return b
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}

func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

var consoleTime = `\d\d:\d\d:\d\d\.\d{3}`

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("BothSinksCarryComponent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Component: "dispatcher"})
		b.log.Info("reserved tasks", "job", "search_odd_numbers", "worker", "local.1", "n", 5)
		if err := b.closer.Close(); err != nil {
			t.Fatal(err)
		}

		want := regexp.MustCompile(`^` + consoleTime + ` INFO  dispatcher  reserved tasks job=search_odd_numbers worker=local.1 n=5\n$`)
		if got := b.console.String(); !want.MatchString(got) {
			t.Fatalf("console line = %q, want match %s", got, want)
		}
		wantFile := regexp.MustCompile(`^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* level=INFO msg="reserved tasks" component=dispatcher job=search_odd_numbers worker=local.1 n=5\n$`)
		if got := readFile(t, b.file); !wantFile.MatchString(got) {
			t.Fatalf("file line = %q, want match %s", got, wantFile)
		}
	})

	t.Run("JSONFile", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Component: "worker local.1", JSON: true})
		b.log.With("job", "j").WithGroup("task").Warn("failed", "id", 7)
		var m map[string]any
		if err := json.Unmarshal([]byte(readFile(t, b.file)), &m); err != nil {
			t.Fatal(err)
		}
		if m[ComponentKey] != "worker local.1" || m["job"] != "j" || m["level"] != "WARN" {
			t.Fatalf("file record = %v", m)
		}
		if task, _ := m["task"].(map[string]any); task["id"] != float64(7) {
			t.Fatalf("task group = %v", m["task"])
		}
		want := regexp.MustCompile(`^` + consoleTime + ` WARN  worker local.1  failed job=j task.id=7\n$`)
		if got := b.console.String(); !want.MatchString(got) {
			t.Fatalf("console line = %q", got)
		}
	})

	t.Run("DefaultComponent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		b.log.Info("hi")
		if got := readFile(t, b.file); !strings.Contains(got, "component="+DefaultComponent) {
			t.Fatalf("file = %q", got)
		}
	})

	t.Run("Level", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Component: "c", Level: slog.LevelWarn})
		b.log.Info("dropped")
		b.log.Error("kept")
		for name, got := range map[string]string{"console": b.console.String(), "file": readFile(t, b.file)} {
			if strings.Contains(got, "dropped") || !strings.Contains(got, "kept") || len(lines(got)) != 1 {
				t.Errorf("%s = %q", name, got)
			}
		}
	})

	t.Run("ConsoleOnly", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		log, closer, err := New(Options{Component: "c", Console: &buf})
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x")
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), " INFO  c  x\n") {
			t.Fatalf("console = %q", buf.String())
		}
	})

	t.Run("NothingConfiguredDiscards", func(t *testing.T) {
		t.Parallel()
		log, closer, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		log.With("a", 1).WithGroup("g").Error("nowhere", "err", errors.New("boom"))
		if log.Enabled(t.Context(), slog.LevelError) {
			t.Error("an empty config should disable every level")
		}
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		Discard().Info("also nowhere")
	})

	t.Run("CreatesDirectory", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "a", "b", "c.log")
		log, closer, err := New(Options{File: path})
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("file not created by New: %v", err)
		}
		log.Info("x")
		if !strings.Contains(readFile(t, path), "msg=x") {
			t.Fatal("line missing")
		}
	})

	t.Run("AppendsToExistingFile", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "x.log")
		if err := os.WriteFile(path, []byte("old line\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		log, closer, err := New(Options{File: path})
		if err != nil {
			t.Fatal(err)
		}
		log.Info("new")
		closer.Close()
		got := lines(readFile(t, path))
		if len(got) != 2 || got[0] != "old line" {
			t.Fatalf("file = %q", got)
		}
	})

	t.Run("UnwritablePath", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		notADir := filepath.Join(dir, "plain")
		if err := os.WriteFile(notADir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, path := range map[string]string{
			"ParentIsAFile": filepath.Join(notADir, "sub", "x.log"),
			"IsADirectory":  dir,
		} {
			_, _, err := New(Options{File: path, Console: io.Discard})
			if err == nil || !strings.Contains(err.Error(), "log file") {
				t.Errorf("%s: New(%q) error = %v, want a log file error", name, path, err)
			}
		}
	})

	t.Run("BadRotationOptions", func(t *testing.T) {
		t.Parallel()
		for _, o := range []Options{{MaxSizeMB: -1}, {MaxBackups: -2}} {
			_, _, err := New(o)
			if err == nil || !strings.Contains(err.Error(), "must not be negative") {
				t.Errorf("New(%+v) error = %v", o, err)
			}
		}
	})

	t.Run("CloseIsIdempotentAndStopsWrites", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		b.log.Info("before")
		if err := b.closer.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.closer.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := os.Remove(b.file); err != nil {
			t.Fatal(err)
		}
		b.log.Info("after") // must neither panic nor recreate the file
		if _, err := os.Stat(b.file); !os.IsNotExist(err) {
			t.Fatalf("file recreated after Close: %v", err)
		}
		if !strings.Contains(b.console.String(), "after") {
			t.Fatal("console should still work after the file is closed")
		}
	})
}

func backups(t *testing.T, file string) []string {
	t.Helper()
	ext := filepath.Ext(file)
	pattern := strings.TrimSuffix(file, ext) + "-*" + ext
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRotation(t *testing.T) {
	t.Parallel()

	t.Run("Rotate", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Component: "c"})
		rot, ok := b.closer.(interface{ Rotate() error })
		if !ok {
			t.Fatalf("closer %T has no Rotate method", b.closer)
		}
		b.log.Info("first")
		if err := rot.Rotate(); err != nil {
			t.Fatal(err)
		}
		b.log.Info("second")
		old := backups(t, b.file)
		if len(old) != 1 {
			t.Fatalf("backups = %v, want 1", old)
		}
		if got := readFile(t, old[0]); !strings.Contains(got, "msg=first") || strings.Contains(got, "second") {
			t.Fatalf("backup = %q", got)
		}
		if got := readFile(t, b.file); !strings.Contains(got, "msg=second") || strings.Contains(got, "first") {
			t.Fatalf("current = %q", got)
		}
	})

	t.Run("MaxBackups", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{MaxBackups: 2})
		rot := b.closer.(interface{ Rotate() error })
		for i := range 5 {
			b.log.Info("line", "i", i)
			if err := rot.Rotate(); err != nil {
				t.Fatal(err)
			}
			// Backup names have millisecond resolution; keep them distinct.
			<-time.After(2 * time.Millisecond)
		}
		// Old backups are removed in the background.
		waitUntil(t, func() bool { return len(backups(t, b.file)) == 2 })
	})

	t.Run("BySize", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{MaxSizeMB: 1})
		filler := strings.Repeat("x", 1000)
		for i := range 1200 { // ~1.2 MB
			b.log.Debug("not written")
			b.log.Info("fill", "i", i, "data", filler)
		}
		old := backups(t, b.file)
		if len(old) != 1 {
			t.Fatalf("backups = %v, want 1", old)
		}
		for _, f := range append(old, b.file) {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > 1<<20 {
				t.Errorf("%s is %d bytes, over 1 MB", f, st.Size())
			}
		}
		n := len(lines(readFile(t, old[0]))) + len(lines(readFile(t, b.file)))
		if n != 1200 {
			t.Fatalf("%d lines across files, want 1200", n)
		}
	})
}

// waitUntil polls cond until it holds or a few seconds pass; for effects
// that happen in a goroutine the test does not own.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not met in time")
		case <-tick.C:
		}
	}
}

type panicky struct{}

func (panicky) String() string { panic("bad String") }

func TestLineFormat(t *testing.T) {
	t.Parallel()

	awkward := []string{
		"two\nlines",
		"carriage\rreturn",
		`say "hi"`,
		"tab\there",
		"bad utf8 \xff\xfe end",
		"line\u2028separator",
		"nul\x00byte",
		"",
		"a=b",
		`back\slash`,
		"ünïcødé ok",
	}
	for i, s := range awkward {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{Component: "c"})
			b.log.Info(s, "v", s, s, "key")

			con := b.console.String()
			if strings.Count(con, "\n") != 1 || !strings.HasSuffix(con, "\n") {
				t.Fatalf("console is not one line: %q", con)
			}
			// The value after "v=" reads back as the original text.
			idx := strings.Index(con, " v=")
			if idx < 0 {
				t.Fatalf("no v= in %q", con)
			}
			rest := con[idx+3:]
			var got string
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					t.Fatalf("bad quoting in %q: %v", con, err)
				}
				got, _ = strconv.Unquote(q)
			} else {
				got, _, _ = strings.Cut(rest, " ")
			}
			if want := strings.ToValidUTF8(s, ""); strings.ToValidUTF8(got, "") != want {
				t.Fatalf("value read back %q, want %q (line %q)", got, s, con)
			}

			file := readFile(t, b.file)
			if strings.Count(file, "\n") != 1 {
				t.Fatalf("file is not one line: %q", file)
			}
		})
	}

	t.Run("KindsOfValues", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Component: "c"})
		b.log.Info("m",
			"err", errors.New("disk full"),
			"d", 1500*time.Millisecond,
			"ok", true,
			"f", 2.5,
			"u", uint(3),
			"bytes", []byte("raw"),
			"t", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
			"p", panicky{},
			slog.Group("g", "a", 1, slog.Group("h", "b", 2)),
			slog.Group("empty"),
		)
		con := b.console.String()
		for _, want := range []string{
			`err="disk full"`, "d=1.5s", "ok=true", "f=2.5", "u=3", "bytes=raw",
			"t=2024-05-06T07:08:09.000Z", "g.a=1", "g.h.b=2",
		} {
			if !strings.Contains(con, " "+want) {
				t.Errorf("console %q lacks %s", con, want)
			}
		}
		if !regexp.MustCompile(` p="[^"]*PANIC[^"]*bad String[^"]*"`).MatchString(con) {
			t.Errorf("panicking String not reported: %q", con)
		}
		if strings.Contains(con, "empty") {
			t.Errorf("empty group printed: %q", con)
		}
	})
}

// parseConsole reads a console line back into the map shape slogtest
// expects: time, level and msg keys, and dotted keys as nested groups.
// Messages are single words in slogtest.
func parseConsole(t *testing.T, line string) map[string]any {
	t.Helper()
	m := map[string]any{}
	rest := strings.TrimSuffix(line, "\n")
	if ok, _ := regexp.MatchString(`^`+consoleTime+` `, rest); ok {
		m[slog.TimeKey] = rest[:12]
		rest = rest[13:]
	}
	m[slog.LevelKey] = strings.TrimSpace(rest[:5])
	rest = rest[6:]
	_, rest, _ = strings.Cut(rest, "  ") // component
	msg, rest, _ := strings.Cut(rest, " ")
	m[slog.MessageKey] = msg
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("no '=' in %q of line %q", rest, line)
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				t.Fatalf("bad quoting in %q: %v", line, err)
			}
			val, _ = strconv.Unquote(q)
			rest = strings.TrimPrefix(after[len(q):], " ")
		} else {
			val, rest, _ = strings.Cut(after, " ")
		}
		parts := strings.Split(key, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = val
	}
	return m
}

func TestConformance(t *testing.T) {
	t.Parallel()

	t.Run("Console", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		slogtest.Run(t,
			func(t *testing.T) slog.Handler {
				buf.Reset()
				return newConsoleHandler(&buf, slog.LevelInfo, "c")
			},
			func(t *testing.T) map[string]any { return parseConsole(t, buf.String()) },
		)
	})

	t.Run("Fanout", func(t *testing.T) {
		t.Parallel()
		var a, b bytes.Buffer
		slogtest.Run(t,
			func(t *testing.T) slog.Handler {
				a.Reset()
				b.Reset()
				return multiHandler{slog.NewJSONHandler(&a, nil), slog.NewJSONHandler(&b, nil)}
			},
			func(t *testing.T) map[string]any {
				// Both sinks got the same record; time differs by nothing
				// since the record is shared.
				if a.String() != b.String() {
					t.Fatalf("sinks differ:\n%s\n%s", a.String(), b.String())
				}
				var m map[string]any
				if err := json.Unmarshal(a.Bytes(), &m); err != nil {
					t.Fatal(err)
				}
				return m
			},
		)
	})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Component: "worker"})
	const goroutines, each = 32, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			log := b.log.With("g", g)
			if g%2 == 0 {
				log = log.WithGroup("task")
			}
			for i := range each {
				log.Info("processing task", "i", i, "note", "a \"quoted\"\nvalue")
			}
		})
	}
	wg.Wait()
	if err := b.closer.Close(); err != nil {
		t.Fatal(err)
	}

	conLine := regexp.MustCompile(`^` + consoleTime + ` INFO  worker  processing task g=\d+ (task\.)?i=\d+ (task\.)?note="a \\"quoted\\"\\nvalue"$`)
	con := lines(b.console.String())
	if len(con) != goroutines*each {
		t.Fatalf("%d console lines, want %d", len(con), goroutines*each)
	}
	for _, l := range con {
		if !conLine.MatchString(l) {
			t.Fatalf("garbled console line %q", l)
		}
	}

	f, err := os.Open(b.file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		if l := sc.Text(); !strings.HasPrefix(l, "time=") || !strings.Contains(l, " component=worker g=") {
			t.Fatalf("garbled file line %q", l)
		}
	}
	if n != goroutines*each {
		t.Fatalf("%d file lines, want %d", n, goroutines*each)
	}
}

func ExampleNew() {
	log, closer, err := New(Options{Component: "dispatcher", Console: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closer.Close()
	// Drop the time so the example's output is stable.
	log = slog.New(stripTime{log.Handler()})
	log.Info("reserved tasks", "job", "search_odd_numbers", "worker", "local.1", "n", 5)
	// Output:
	// INFO  dispatcher  reserved tasks job=search_odd_numbers worker=local.1 n=5
}

type stripTime struct{ slog.Handler }

func (s stripTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = time.Time{}
	return s.Handler.Handle(ctx, r)
}
