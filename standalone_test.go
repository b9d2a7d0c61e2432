package pampa

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// standAloneBuffer is a console that tests read while the loop writes.
type standAloneBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *standAloneBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *standAloneBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// standAloneRun is RunStandAlone running in the background.
type standAloneRun struct {
	cancel  context.CancelFunc
	done    chan error
	console *standAloneBuffer
}

func startStandAlone(t *testing.T, p StandAlone) *standAloneRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &standAloneRun{cancel: cancel, done: make(chan error, 1), console: &standAloneBuffer{}}
	if p.Console == nil {
		p.Console = r.console
	}
	go func() { r.done <- RunStandAlone(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("RunStandAlone did not return after cancel")
		}
	})
	return r
}

// stop cancels the loop and returns RunStandAlone's result, failing if it
// does not return promptly.
func (r *standAloneRun) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

func (r *standAloneRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("RunStandAlone did not return")
		return nil
	}
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a run")
		var zero T
		return zero
	}
}

// work lasts d unless ctx ends first.
func work(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func TestRunStandAlone(t *testing.T) {
	t.Parallel()

	// Timing checks allow for a loaded machine: a run may start late, never
	// early, and the idle time between runs shows what the loop waited for.
	const early = 20 * time.Millisecond

	t.Run("StartToStartSpacing", func(t *testing.T) {
		t.Parallel()
		const delay, runTime, runs = 100 * time.Millisecond, 60 * time.Millisecond, 5
		starts, ends := make(chan time.Time, runs+5), make(chan time.Time, runs+5)
		r := startStandAlone(t, StandAlone{
			Delay: delay,
			Function: func(ctx context.Context, _ *slog.Logger) error {
				starts <- time.Now()
				defer func() { ends <- time.Now() }()
				return work(ctx, runTime)
			},
		})
		var s, e []time.Time
		for range runs {
			s = append(s, receive(t, starts))
			e = append(e, receive(t, ends))
		}
		if err := r.stop(t); err != nil {
			t.Fatalf("RunStandAlone = %v, want nil", err)
		}
		minIdle := time.Hour
		for i := 1; i < runs; i++ {
			if gap := s[i].Sub(s[i-1]); gap < delay-early {
				t.Errorf("run %d started %v after the previous one, want at least %v", i+1, gap, delay)
			}
			minIdle = min(minIdle, s[i].Sub(e[i-1]))
		}
		// Delay counts from start to start: the loop idles about
		// delay-runTime (40ms), not a full delay after each run.
		if minIdle >= delay-runTime/2 {
			t.Errorf("shortest idle time between runs %v, want about %v", minIdle, delay-runTime)
		}
	})

	t.Run("OverrunStartsNextAtOnce", func(t *testing.T) {
		t.Parallel()
		const delay = 100 * time.Millisecond
		starts, ends := make(chan time.Time, 10), make(chan time.Time, 10)
		calls := 0
		r := startStandAlone(t, StandAlone{
			Delay: delay,
			Function: func(ctx context.Context, _ *slog.Logger) error {
				calls++
				starts <- time.Now()
				if calls == 1 {
					_ = work(ctx, 2*delay+delay/2)
				}
				ends <- time.Now()
				return nil
			},
		})
		first := receive(t, starts)
		end := receive(t, ends)
		second := receive(t, starts)
		receive(t, ends)
		third := receive(t, starts)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		if end.Sub(first) < 2*delay {
			t.Fatalf("first run lasted %v", end.Sub(first))
		}
		if con := r.console.String(); !strings.Contains(con, " WARN  standalone  run took longer than the delay; starting the next run now run=1 ") {
			t.Errorf("no overrun warning in %q", con)
		}
		if gap := second.Sub(end); gap >= delay/2 {
			t.Errorf("next run started %v after an overrun, want at once", gap)
		}
		// Back on schedule after the overrun.
		if gap := third.Sub(second); gap < delay-early {
			t.Errorf("run after recovery started %v after the previous, want about %v", gap, delay)
		}
	})

	t.Run("ErrorAndPanicAreLoggedAndLoopGoesOn", func(t *testing.T) {
		t.Parallel()
		logFile := filepath.Join(t.TempDir(), "sa.log")
		third := make(chan struct{})
		calls := 0
		r := startStandAlone(t, StandAlone{
			Name:    "cleaner",
			LogFile: logFile,
			Delay:   10 * time.Millisecond,
			Function: func(ctx context.Context, _ *slog.Logger) error {
				calls++
				switch calls {
				case 1:
					return errors.New("disk \"full\"\nreally")
				case 2:
					var m map[string]int
					m["boom"]++ // a real runtime panic
				case 3:
					close(third)
				}
				return nil
			},
		})
		receive(t, third)
		if err := r.stop(t); err != nil {
			t.Fatalf("RunStandAlone = %v, want nil", err)
		}

		con := r.console.String()
		for _, want := range []string{
			` ERROR cleaner  run failed run=1 elapsed=`,
			`error="disk \"full\"\nreally"`,
			` ERROR cleaner  run panicked run=2 elapsed=`,
			`panic="assignment to entry in nil map"`,
			` INFO  cleaner  run finished run=3 elapsed=`,
			` INFO  cleaner  stopped runs=`,
		} {
			if !strings.Contains(con, want) {
				t.Errorf("console lacks %q:\n%s", want, con)
			}
		}
		// One record per line, whatever the error text holds.
		for _, l := range strings.Split(strings.TrimSuffix(con, "\n"), "\n") {
			if !strings.Contains(l, " cleaner  ") {
				t.Errorf("broken console line %q", l)
			}
		}

		data, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		file := string(data)
		for _, want := range []string{
			`msg="run panicked" component=cleaner run=2`,
			`stack="goroutine `,
			`standalone_test.go`,
			`msg="run failed" component=cleaner run=1`,
		} {
			if !strings.Contains(file, want) {
				t.Errorf("log file lacks %q:\n%s", want, file)
			}
		}
		if !strings.Contains(file, "failures=2") {
			t.Errorf("errors not counted:\n%s", file)
		}
	})

	t.Run("RunOnce", func(t *testing.T) {
		t.Parallel()
		for name, tc := range map[string]struct {
			fn      func() error
			wantErr string
		}{
			"Success": {fn: func() error { return nil }},
			"Error":   {fn: func() error { return io.ErrUnexpectedEOF }, wantErr: io.ErrUnexpectedEOF.Error()},
			"Panic":   {fn: func() error { panic("oops") }, wantErr: "panic: oops"},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				calls := 0
				r := startStandAlone(t, StandAlone{
					RunOnce: true,
					Delay:   time.Millisecond,
					Function: func(context.Context, *slog.Logger) error {
						calls++
						return tc.fn()
					},
				})
				err := r.wait(t)
				if calls != 1 {
					t.Errorf("Function called %d times, want 1", calls)
				}
				switch {
				case tc.wantErr == "" && err != nil:
					t.Errorf("RunStandAlone = %v, want nil", err)
				case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
					t.Errorf("RunStandAlone = %v, want %q", err, tc.wantErr)
				}
				if name == "Error" && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("Function's error is not returned as is: %v", err)
				}
			})
		}
	})

	t.Run("CancelDuringDelayStopsPromptly", func(t *testing.T) {
		t.Parallel()
		ran := make(chan struct{}, 1)
		r := startStandAlone(t, StandAlone{
			Delay: time.Hour,
			Function: func(context.Context, *slog.Logger) error {
				ran <- struct{}{}
				return nil
			},
		})
		receive(t, ran)
		start := time.Now()
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("stop took %v", d)
		}
		if con := r.console.String(); !strings.Contains(con, "stop requested") || !strings.Contains(con, "stopped runs=1 failures=0") {
			t.Errorf("console = %q", con)
		}
	})

	t.Run("CancelDuringRunWaitsForIt", func(t *testing.T) {
		t.Parallel()
		running, returned := make(chan struct{}), make(chan struct{})
		r := startStandAlone(t, StandAlone{
			Delay: time.Hour,
			Function: func(ctx context.Context, _ *slog.Logger) error {
				close(running)
				<-ctx.Done()
				close(returned)
				return fmt.Errorf("interrupted: %w", ctx.Err())
			},
		})
		receive(t, running)
		if err := r.stop(t); err != nil {
			t.Fatalf("RunStandAlone = %v, want nil", err)
		}
		select {
		case <-returned:
		default:
			t.Fatal("RunStandAlone returned before Function did")
		}
		con := r.console.String()
		if !strings.Contains(con, "run interrupted") || strings.Contains(con, "run failed") {
			t.Errorf("a cancelled run should be logged as interrupted:\n%s", con)
		}
	})

	t.Run("AlreadyCancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		called := false
		err := RunStandAlone(ctx, StandAlone{
			Console:  io.Discard,
			Function: func(context.Context, *slog.Logger) error { called = true; return nil },
		})
		if err != nil || called {
			t.Fatalf("RunStandAlone = %v, called = %v; want nil, false", err, called)
		}
	})

	t.Run("LogFileReceivesLines", func(t *testing.T) {
		t.Parallel()
		logFile := filepath.Join(t.TempDir(), "logs", "example.log")
		r := startStandAlone(t, StandAlone{
			Name:    "example",
			LogFile: logFile,
			RunOnce: true,
			Function: func(_ context.Context, log *slog.Logger) error {
				log.Info("Hello, World!", "answer", 42)
				return nil
			},
		})
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`msg=started component=example run_once=true`,
			`msg="Hello, World!" component=example run=1 answer=42`,
			`msg="run finished" component=example run=1`,
			`msg=stopped component=example runs=1 failures=0`,
		} {
			if !strings.Contains(string(data), want) {
				t.Errorf("log file lacks %q:\n%s", want, data)
			}
		}
		if !strings.Contains(r.console.String(), " INFO  example  Hello, World! run=1 answer=42\n") {
			t.Errorf("console = %q", r.console.String())
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		fn := func(context.Context, *slog.Logger) error {
			t.Error("Function ran despite an invalid config")
			return nil
		}
		notADir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(notADir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]struct {
			p    StandAlone
			want []string
		}{
			"NilFunction":   {StandAlone{Name: "x"}, []string{`"x"`, "Function"}},
			"NegativeDelay": {StandAlone{Delay: -time.Second, Function: fn}, []string{`"standalone"`, "Delay", "-1s"}},
			"BadLogFile":    {StandAlone{LogFile: filepath.Join(notADir, "x.log"), Function: fn}, []string{"log file", notADir}},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var console bytes.Buffer
				tc.p.Console = &console
				err := RunStandAlone(t.Context(), tc.p)
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				if name != "BadLogFile" {
					var ce *ConfigError
					if !errors.As(err, &ce) {
						t.Errorf("error %T is not a *ConfigError", err)
					}
				}
				if console.Len() != 0 {
					t.Errorf("logged before validating: %q", console.String())
				}
			})
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		p := StandAlone{}.WithDefaults()
		if p.Name != DefaultStandAloneName || p.Delay != DefaultStandAloneDelay || p.Console != os.Stderr {
			t.Fatalf("defaults = %+v", p)
		}
	})
}

// The RunStandAloneMain tests run the test binary again as a child process
// that calls RunStandAloneMain, selected by this variable.
const standAloneMainEnv = "PAMPA_TEST_STANDALONE_MAIN"

// standAloneMainChild is the child process's main, entered from TestMain.
func standAloneMainChild(mode string) {
	p := StandAlone{Name: "child", Delay: 20 * time.Millisecond, Console: os.Stderr}
	say := func(s string) { fmt.Fprintln(os.Stdout, s) }
	switch mode {
	case "loop":
		p.Function = func(context.Context, *slog.Logger) error { say("run"); return nil }
	case "stuck":
		p.Function = func(ctx context.Context, _ *slog.Logger) error {
			say("run")
			<-ctx.Done()
			say("cancelled")
			<-time.After(time.Minute) // ignores the stop on purpose
			return nil
		}
	case "fail":
		p.RunOnce = true
		p.Function = func(context.Context, *slog.Logger) error { return errors.New("no luck") }
	case "invalid":
		p.Delay = -time.Second
		p.Function = func(context.Context, *slog.Logger) error { return nil }
	}
	RunStandAloneMain(p)
	say("main returned")
}

type standAloneChild struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *standAloneBuffer
	exited chan error
}

func startStandAloneChild(t *testing.T, mode string) *standAloneChild {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), standAloneMainEnv+"="+mode)
	c := &standAloneChild{cmd: cmd, lines: make(chan string, 100), stderr: &standAloneBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		c.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *standAloneChild) expectLine(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-c.lines:
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("child never printed %q; stderr:\n%s", want, c.stderr.String())
		}
	}
}

func (c *standAloneChild) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		return c.cmd.ProcessState
	case <-time.After(10 * time.Second):
		t.Fatalf("child did not exit; stderr:\n%s", c.stderr.String())
		return nil
	}
}

func TestRunStandAloneMain(t *testing.T) {
	t.Parallel()

	for name, sig := range map[string]syscall.Signal{"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM} {
		t.Run("SignalStopsGracefully_"+name, func(t *testing.T) {
			t.Parallel()
			c := startStandAloneChild(t, "loop")
			c.expectLine(t, "run")
			if err := c.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			st := c.wait(t)
			if st.ExitCode() != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", st.ExitCode(), c.stderr.String())
			}
			if !strings.Contains(c.stderr.String(), "child  stopped runs=") {
				t.Errorf("no stop line; stderr:\n%s", c.stderr.String())
			}
		})
	}

	t.Run("SecondSignalExitsAtOnce", func(t *testing.T) {
		t.Parallel()
		c := startStandAloneChild(t, "stuck")
		c.expectLine(t, "run")
		if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		c.expectLine(t, "cancelled")
		// The default signal behaviour is restored right after the first
		// signal is seen; repeat in case this one lands just before that.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(5 * time.Second)
	loop:
		for {
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case err := <-c.exited:
				c.exited <- err
				break loop
			case <-tick.C:
			case <-deadline:
				t.Fatalf("second signal did not end the process; stderr:\n%s", c.stderr.String())
			}
		}
		ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Fatalf("child ended with %v, want killed by SIGINT", c.cmd.ProcessState)
		}
	})

	for mode, want := range map[string]string{
		"fail":    `child  run failed run=1`,
		"invalid": `child: stand-alone process "child": Delay = "-1s"`,
	} {
		t.Run("ExitsWithOne_"+mode, func(t *testing.T) {
			t.Parallel()
			c := startStandAloneChild(t, mode)
			st := c.wait(t)
			if st.ExitCode() != 1 {
				t.Fatalf("exit code %d, want 1; stderr:\n%s", st.ExitCode(), c.stderr.String())
			}
			if !strings.Contains(c.stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, c.stderr.String())
			}
		})
	}
}
