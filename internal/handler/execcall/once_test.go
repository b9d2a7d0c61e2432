package execcall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pampa-go/pampa/internal/handler"
	"github.com/pampa-go/pampa/internal/proc"
)

// Every process a test starts is reaped: no goroutine waits on one after
// its caller is done.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// script writes an executable /bin/sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "handler.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func input(key int64) handler.Input {
	return handler.Input{Job: "search_odd_numbers", Key: key, Try: 1, Worker: "local.1",
		Deadline: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Row: map[string]any{"value": key, "is_odd": nil}}
}

// call runs one once try of the script under a timeout.
func call(t *testing.T, body string, timeout time.Duration) handler.Outcome {
	t.Helper()
	c := New(Options{Args: []string{script(t, body)}, KillGrace: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Call(ctx, input(7))
}

func wantErr(t *testing.T, out handler.Outcome, parts ...string) {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("outcome = %+v, want an error containing %q", out, parts)
	}
	for _, p := range parts {
		if !strings.Contains(out.Err.Error(), p) {
			t.Errorf("error %q does not contain %q", out.Err, p)
		}
	}
}

// The exit status makes the outcome: 0 succeeds, 100 fails for good, any
// other status or a signal fails the try, with the end of stderr.
func TestOnceExitStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		final      bool
		err        []string // nil: success
	}{
		{"Zero", "exit 0", false, nil},
		{"One", "echo 'no such file' >&2; exit 1", false, []string{"exit status 1", "stderr: no such file"}},
		{"Two", "exit 2", false, []string{"exit status 2 (nothing on stderr)"}},
		{"Final", "echo 'customer 7 does not exist' >&2; exit 100", true, []string{"failed for good (exit status 100)", "customer 7 does not exist"}},
		{"JustBelowFinal", "exit 99", false, []string{"exit status 99"}},
		{"TempFailIsNotFinal", "exit 75", false, []string{"exit status 75"}},
		{"Signal", "kill -SEGV $$", false, []string{"killed by signal 11"}},
		{"FinalIgnoresStdout", `echo '{"is_odd": true}'; exit 100`, true, []string{"exit status 100"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := call(t, tt.body, 10*time.Second)
			if tt.err == nil {
				if out.Err != nil || out.Final || out.Set != nil {
					t.Fatalf("outcome = %+v, want success with nothing set", out)
				}
				return
			}
			wantErr(t, out, tt.err...)
			if out.Final != tt.final || out.Set != nil {
				t.Errorf("outcome = %+v: Final = %v, want %v, and nothing set", out, out.Final, tt.final)
			}
		})
	}
}

// Stdout is nothing, or one JSON object of columns; anything else fails
// the try, quoting the start of what was printed.
func TestOnceStdout(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, stdout string
		set          map[string]any
		err          []string
	}{
		{"Empty", "", nil, nil},
		{"WhiteSpace", "\n  \t\n", nil, nil},
		{"Object", `{"is_odd": true, "n": 42, "big": 9007199254740993, "ratio": 0.5, "name": "seven", "note": null, "tags": ["a", 1], "doc": {"k": [true]}}`,
			map[string]any{"is_odd": true, "n": int64(42), "big": int64(9007199254740993), "ratio": 0.5, "name": "seven", "note": nil, "tags": `["a",1]`, "doc": `{"k":[true]}`}, nil},
		{"ObjectOnSeveralLines", "{\n  \"is_odd\": false\n}\n", map[string]any{"is_odd": false}, nil},
		{"EmptyObject", `{}`, map[string]any{}, nil},
		{"Array", `[{"is_odd": true}]`, nil, []string{"JSON array, not an object", `"[{\"is_odd\": true}]"`}},
		{"String", `"odd"`, nil, []string{"JSON string, not an object"}},
		{"Number", `7`, nil, []string{"JSON number, not an object"}},
		{"Garbage", "odd: yes", nil, []string{"stdout is not JSON", `begins "odd: yes"`}},
		{"TwoObjects", `{"is_odd": true}` + "\n" + `{"is_odd": false}`, nil, []string{"more than one JSON value"}},
		{"TextAfter", `{"is_odd": true} done`, nil, []string{"more than one JSON value"}},
		{"Truncated", `{"is_odd": tr`, nil, []string{"stdout is not JSON"}},
		{"NumberOutOfRange", `{"n": 1e999}`, nil, []string{`column "n"`, "out of range"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "out")
			if err := os.WriteFile(file, []byte(tt.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			out := call(t, "cat "+file, 10*time.Second)
			if tt.err != nil {
				wantErr(t, out, tt.err...)
				return
			}
			if out.Err != nil {
				t.Fatalf("error %v, want success", out.Err)
			}
			if fmt.Sprint(out.Set) != fmt.Sprint(tt.set) || (out.Set == nil) != (tt.set == nil) {
				t.Errorf("set = %#v\nwant  %#v", out.Set, tt.set)
			}
			for col, v := range tt.set {
				if fmt.Sprintf("%T", out.Set[col]) != fmt.Sprintf("%T", v) {
					t.Errorf("column %s = %T, want %T", col, out.Set[col], v)
				}
			}
		})
	}
}

// The long garbage is quoted by its start only.
func TestOnceQuotesAPrefix(t *testing.T) {
	t.Parallel()
	out := call(t, `i=0; while [ $i -lt 500 ]; do printf 'garbage '; i=$((i+1)); done`, 10*time.Second)
	wantErr(t, out, "stdout is not JSON", "… (3999 bytes)")
	if len(out.Err.Error()) > 400 {
		t.Errorf("error is %d bytes long, want the output quoted by a short prefix: %s", len(out.Err.Error()), out.Err)
	}
}

// Output past MaxOutput fails the try and kills the command, without
// waiting for it to end: this one would print forever.
func TestOnceOutputTooLarge(t *testing.T) {
	t.Parallel()
	start := time.Now()
	out := call(t, "cat /dev/zero", time.Minute)
	wantErr(t, out, "output too large", "more than 1048576 bytes", "killed")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to stop a command printing without end", d)
	}
	// Just at the cap is fine.
	out = call(t, fmt.Sprintf(`printf '{"s": "'; head -c %d /dev/zero | tr '\0' a; printf '"}'`, MaxOutput-10), time.Minute)
	if out.Err != nil || len(out.Set["s"].(string)) != MaxOutput-10 {
		t.Errorf("stdout of exactly MaxOutput bytes: err %v", out.Err)
	}
}

// Stderr is kept by its end, StderrTail bytes at most.
func TestOnceStderrCapped(t *testing.T) {
	t.Parallel()
	out := call(t, `head -c 100000 /dev/zero | tr '\0' x >&2; echo ' the real reason' >&2; exit 1`, 30*time.Second)
	wantErr(t, out, "exit status 1", fmt.Sprintf("its last %d of 100017 bytes", StderrTail), "the real reason")
	if n := len(out.Err.Error()); n > StderrTail+200 {
		t.Errorf("error is %d bytes, want at most about %d", n, StderrTail)
	}
}

// The Input arrives as one JSON line on stdin, which is then closed.
func TestOnceInput(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "in.json")
	out := call(t, "cat > "+file, 10*time.Second)
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), "\n") != 1 || !strings.HasSuffix(string(data), "\n") {
		t.Errorf("stdin = %q, want one line", data)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := `map[deadline:2030-01-02T03:04:05Z job:search_odd_numbers key:7 row:map[is_odd:<nil> value:7] try:1 worker:local.1]`
	if fmt.Sprint(got) != want {
		t.Errorf("input = %v\nwant    %s", got, want)
	}
}

// The command runs in Dir with Env.
func TestOnceEnvAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := New(Options{Args: []string{script(t, `printf '{"greeting": "%s", "dir": "%s"}' "$GREETING" "$(pwd)"`)},
		Dir: dir, Env: append(os.Environ(), "GREETING=hello there")})
	out := c.Call(context.Background(), input(1))
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	if out.Set["greeting"] != "hello there" || out.Set["dir"] != dir {
		t.Errorf("set = %v, want GREETING from Env and the working directory %s", out.Set, dir)
	}
}

func TestOnceProgramMissing(t *testing.T) {
	t.Parallel()
	c := New(Options{Args: []string{filepath.Join(t.TempDir(), "nowhere")}})
	wantErr(t, c.Call(context.Background(), input(1)), "start ", "nowhere", "no such file")
}

// waitPID waits for the script to write a pid in file.
func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

// wantGone checks, within a second, that the process pid has ended.
func wantGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !proc.Gone(pid, "") {
		if time.Now().After(deadline) {
			t.Errorf("%s (pid %d) still runs", what, pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command still running at its try's deadline gets SIGTERM, then
// SIGKILL after the grace when it ignores it; its children go with it.
func TestOnceDeadlineKillsTheGroup(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, trap, how string
	}{
		{"Stops", "", "stopped by SIGTERM when its try ended (context deadline exceeded)"},
		{"IgnoresSIGTERM", "trap '' TERM", "killed by SIGKILL, 300ms after SIGTERM when its try ended"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "child.pid")
			start := time.Now()
			out := call(t, tt.trap+"\nsleep 60 & echo $! > "+pidFile+"\necho working >&2\nwait", 500*time.Millisecond)
			wantErr(t, out, tt.how, "stderr: working")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			wantGone(t, waitPID(t, pidFile), "the child of a command killed at its deadline")
		})
	}
}

// A command that leaves a child running in the background and exits is
// done: the call does not wait for the child (which holds stdout), and
// the child is killed.
func TestOnceForkAndExit(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	start := time.Now()
	out := call(t, "sleep 60 & echo $! > "+pidFile+"\necho '{\"is_odd\": true}'", time.Minute)
	if out.Err != nil || out.Set["is_odd"] != true {
		t.Fatalf("outcome = %+v", out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s: the call waited for the background child", d)
	}
	wantGone(t, waitPID(t, pidFile), "the background child of a command that exited")
}

// A cancelled context (a worker stopping hard, an operator's cancel)
// stops the command the same way, its cause in the error.
func TestOnceCancelled(t *testing.T) {
	t.Parallel()
	c := New(Options{Args: []string{script(t, "sleep 60")}, KillGrace: time.Second})
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(errors.New("cancelled by an operator")) })
	wantErr(t, c.Call(ctx, input(1)), "stopped by SIGTERM when its try ended (cancelled by an operator)")
}
