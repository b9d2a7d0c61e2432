package pampa

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/pampa-go/pampa/internal/logging"
)

// Defaults for StandAlone.
const (
	DefaultStandAloneName  = "standalone"
	DefaultStandAloneDelay = 10 * time.Second
)

// StandAlone describes a function run every Delay, or once: a process of its
// own, with its own log, outside the dispatcher and the workers.
type StandAlone struct {
	// Name is used in log lines (as the component). Default "standalone".
	Name string
	// LogFile is the log file's path, rotated at 100 MB with 5 backups.
	// "" means console only.
	LogFile string
	// Delay is the time between the STARTS of two runs. A run that takes
	// longer than Delay is followed at once by the next. Default 10s;
	// negative is an error. Ignored when RunOnce is set.
	Delay time.Duration
	// RunOnce runs Function a single time and returns its error.
	RunOnce bool
	// Function is the work. It gets the process's context, which is
	// cancelled on stop, and a logger whose lines carry the run number. An
	// error it returns is logged and the loop goes on; a panic is recovered,
	// logged with its stack trace, and counted as an error. Required.
	Function func(ctx context.Context, log *slog.Logger) error
	// Console receives the human-readable log lines. Default os.Stderr;
	// io.Discard silences the console.
	Console io.Writer
}

// WithDefaults returns a copy of p with defaults filled in for unset fields.
func (p StandAlone) WithDefaults() StandAlone {
	if p.Name == "" {
		p.Name = DefaultStandAloneName
	}
	if p.Delay == 0 {
		p.Delay = DefaultStandAloneDelay
	}
	if p.Console == nil {
		p.Console = os.Stderr
	}
	return p
}

// Validate checks p after defaults; the error names the process, the field
// and the bad value.
func (p *StandAlone) Validate() error {
	bad := func(field, value, why string) error {
		return fmt.Errorf("stand-alone process %q: %w", p.Name, &ConfigError{Field: field, Value: value, Reason: why})
	}
	if p.Function == nil {
		return bad("Function", "", "is nil; set the function to run")
	}
	if p.Delay < 0 {
		return bad("Delay", p.Delay.String(), "must not be negative (0 means "+DefaultStandAloneDelay.String()+")")
	}
	return nil
}

// RunStandAlone runs p.Function every p.Delay (start to start) until ctx is
// cancelled, then returns nil; with p.RunOnce it runs it once and returns
// its error. A run in progress when ctx is cancelled is not abandoned:
// RunStandAlone waits for Function to return, so Function should watch ctx.
//
// Validation errors and an unusable log file are returned before anything
// runs.
func RunStandAlone(ctx context.Context, p StandAlone) error {
	_, err := runStandAlone(ctx, p)
	return err
}

// RunStandAloneMain runs p from a program's main function: SIGINT or SIGTERM
// stops it gracefully (the current run gets a cancelled context and is
// waited for), a second signal ends the process at once, and an error makes
// the process exit with status 1.
func RunStandAloneMain(p StandAlone) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal has cancelled ctx, give the signals their
	// default behaviour back, so that the next one terminates the process.
	context.AfterFunc(ctx, stop)

	logged, err := runStandAlone(ctx, p)
	if err != nil {
		if !logged {
			p = p.WithDefaults()
			fmt.Fprintf(p.Console, "%s: %v\n", p.Name, err)
		}
		stop()
		os.Exit(1)
	}
}

// runStandAlone is RunStandAlone; logged reports whether a returned error
// was already written to the log.
func runStandAlone(ctx context.Context, p StandAlone) (logged bool, err error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return false, err
	}
	log, closer, err := logging.New(logging.Options{Component: p.Name, File: p.LogFile, Console: p.Console})
	if err != nil {
		return false, fmt.Errorf("stand-alone process %q: %w", p.Name, err)
	}
	defer closer.Close()

	if p.RunOnce {
		log.Info("started", "run_once", true, "log_file", p.LogFile)
	} else {
		log.Info("started", "delay", p.Delay, "log_file", p.LogFile)
	}

	// Say so as soon as a stop is requested, even in the middle of a run,
	// and make sure the line is written before the log file is closed.
	stopLogged := make(chan struct{})
	unregister := context.AfterFunc(ctx, func() {
		defer close(stopLogged)
		log.Info("stop requested")
	})
	// settle waits for that line, or writes it if the context was
	// cancelled but had not yet started the function when unregister
	// stopped it; called before "stopped", so the lines come in order.
	var settleOnce sync.Once
	settle := func() {
		settleOnce.Do(func() {
			if !unregister() {
				<-stopLogged
			} else if ctx.Err() != nil {
				log.Info("stop requested")
			}
		})
	}
	defer settle()

	failures := 0
	for run := 1; ; run++ {
		if ctx.Err() != nil {
			settle()
			log.Info("stopped", "runs", run-1, "failures", failures)
			return false, nil
		}
		start := time.Now()
		err := runStandAloneOnce(ctx, p.Function, log.With("run", run))
		elapsed := time.Since(start)
		if err != nil {
			failures++
		}
		if p.RunOnce {
			settle()
			log.Info("stopped", "runs", 1, "failures", failures)
			return true, err
		}

		wait := p.Delay - elapsed
		if wait <= 0 {
			if ctx.Err() == nil {
				log.Warn("run took longer than the delay; starting the next run now",
					"run", run, "elapsed", elapsed, "delay", p.Delay)
			}
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
}

// runStandAloneOnce calls fn once, turning a panic into an error, and logs
// the outcome.
func runStandAloneOnce(ctx context.Context, fn func(context.Context, *slog.Logger) error, log *slog.Logger) (err error) {
	start := time.Now()
	defer func() {
		elapsed := time.Since(start)
		if r := recover(); r != nil {
			log.Error("run panicked", "elapsed", elapsed, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if rerr, ok := r.(error); ok {
				err = fmt.Errorf("panic: %w", rerr)
			} else {
				err = fmt.Errorf("panic: %v", r)
			}
			return
		}
		switch {
		case err == nil:
			log.Info("run finished", "elapsed", elapsed)
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			log.Info("run interrupted", "elapsed", elapsed, "error", err)
		default:
			log.Error("run failed", "elapsed", elapsed, "error", err)
		}
	}()
	return fn(ctx, log)
}
