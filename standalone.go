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

	"github.com/pampa-go/pampa/internal/cronexpr"
	"github.com/pampa-go/pampa/internal/logging"
)

// Defaults for StandAlone.
const (
	DefaultStandAloneName  = "standalone"
	DefaultStandAloneDelay = 10 * time.Second
)

// StandAlone describes a function run every Delay, at the due times of a
// cron expression, or once: a process of its own, with its own log, outside
// the dispatcher and the workers.
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
	// Cron runs Function at each due time of a cron expression instead of
	// every Delay: 5 fields (minute hour day-of-month month day-of-week),
	// 6 with a leading seconds field, or a descriptor (@hourly, @every
	// 90s); a CRON_TZ=Zone prefix is allowed. A due time that comes while a
	// run is still going is skipped (and logged): runs never overlap, and
	// no due time runs twice. Exclusive with Delay and RunOnce.
	Cron string
	// TimeZone is the IANA zone ("Europe/Paris") in which Cron is read;
	// "" is the process's local zone. Only with Cron.
	TimeZone string
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
	if p.Delay == 0 && p.Cron == "" {
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
	if p.Cron == "" {
		if p.TimeZone != "" {
			return bad("TimeZone", p.TimeZone, "is only used with Cron; set Cron or clear TimeZone")
		}
		return nil
	}
	switch {
	case p.Delay != 0:
		return bad("Cron", p.Cron, "and Delay ("+p.Delay.String()+") are exclusive; set one of them")
	case p.RunOnce:
		return bad("Cron", p.Cron, "and RunOnce are exclusive; set one of them")
	}
	_, err := p.schedule()
	return err
}

// schedule parses Cron in TimeZone; the error names the field and value.
func (p *StandAlone) schedule() (cronexpr.Schedule, error) {
	s, err := cronexpr.Parse(p.Cron, p.TimeZone)
	if err != nil {
		field, value := "Cron", p.Cron
		if errors.Is(err, cronexpr.ErrTimeZone) {
			field, value = "TimeZone", p.TimeZone
		}
		return nil, fmt.Errorf("stand-alone process %q: %w", p.Name, &ConfigError{Field: field, Value: value, Reason: err.Error()})
	}
	return s, nil
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

	switch {
	case p.RunOnce:
		log.Info("started", "run_once", true, "log_file", p.LogFile)
	case p.Cron != "":
		log.Info("started", "cron", p.Cron, "time_zone", p.TimeZone, "log_file", p.LogFile)
	default:
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

	pace, err := p.pacer()
	if err != nil {
		return false, err
	}
	failures := 0
	due := pace(log, time.Time{}, time.Time{}, time.Now())
	for run := 1; ; run++ {
		if wait := time.Until(due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			settle()
			log.Info("stopped", "runs", run-1, "failures", failures)
			return false, nil
		}
		start := time.Now()
		err := runStandAloneOnce(ctx, p.Function, log.With("run", run))
		if err != nil {
			failures++
		}
		if p.RunOnce {
			settle()
			log.Info("stopped", "runs", 1, "failures", failures)
			return true, err
		}
		due = pace(log.With("run", run), due, start, time.Now())
	}
}

// pacer returns the function that says when the next run starts, given the
// last run's due time, start and end (zero times before the first run); it
// logs to log what it skips or hurries.
func (p *StandAlone) pacer() (func(log *slog.Logger, due, start, end time.Time) time.Time, error) {
	if p.Cron == "" {
		return func(log *slog.Logger, _, start, end time.Time) time.Time {
			next := start.Add(p.Delay)
			if start.IsZero() || p.RunOnce {
				return end
			}
			if !next.After(end) {
				log.Warn("run took longer than the delay; starting the next run now",
					"elapsed", end.Sub(start), "delay", p.Delay)
				return end
			}
			return next
		}, nil
	}
	sched, err := p.schedule()
	if err != nil {
		return nil, err
	}
	return func(log *slog.Logger, due, _, end time.Time) time.Time {
		if due.IsZero() {
			return sched.Next(end)
		}
		// Due times that came while the run was going are skipped:
		// runs never overlap, and the next one is the first due after now.
		var skipped []time.Time
		for t := sched.Next(due); !t.After(end); t = sched.Next(t) {
			skipped = append(skipped, t)
		}
		if len(skipped) > 0 {
			log.Warn("run still going at its next due time; skipped that due time",
				"due", due, "skipped", len(skipped), "first_skipped", skipped[0], "elapsed", end.Sub(due))
		}
		return sched.Next(end)
	}, nil
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
