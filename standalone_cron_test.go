package pampa

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRunStandAloneCron(t *testing.T) {
	t.Parallel()

	t.Run("RunsAtEachDueTime", func(t *testing.T) {
		t.Parallel()
		starts := make(chan time.Time, 10)
		r := startStandAlone(t, StandAlone{
			Cron: "* * * * * *", TimeZone: "UTC",
			Function: func(context.Context, *slog.Logger) error { starts <- time.Now(); return nil },
		})
		var seen []time.Time
		for range 3 {
			seen = append(seen, receive(t, starts))
		}
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		for i, s := range seen {
			// A run starts at its due time (a whole second), never before.
			if late := s.Sub(s.Truncate(time.Second)); late > 500*time.Millisecond {
				t.Errorf("run %d started %v after its second, want at the due time", i+1, late)
			}
			if i > 0 && s.Truncate(time.Second).Equal(seen[i-1].Truncate(time.Second)) {
				t.Errorf("runs %d and %d started in one second (%v, %v): one due time ran twice", i, i+1, seen[i-1], s)
			}
		}
	})

	t.Run("SkipsDueTimesDuringARun", func(t *testing.T) {
		t.Parallel()
		starts, ends := make(chan time.Time, 10), make(chan time.Time, 10)
		first := true
		r := startStandAlone(t, StandAlone{
			Cron: "* * * * * *",
			Function: func(ctx context.Context, _ *slog.Logger) error {
				starts <- time.Now()
				defer func() { ends <- time.Now() }()
				if first {
					first = false
					return work(ctx, 1500*time.Millisecond)
				}
				return nil
			},
		})
		receive(t, starts)
		end := receive(t, ends)
		second := receive(t, starts)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		// The due time that came during the first run is skipped: the
		// second run waits for the first due time after the first ended.
		if !second.After(end) || second.Truncate(time.Second).Equal(end.Truncate(time.Second)) {
			t.Errorf("second run started at %v, first ended at %v: want the next whole second after the end", second, end)
		}
		if con := r.console.String(); !strings.Contains(con, "WARN  standalone  run still going at its next due time; skipped that due time run=1 ") {
			t.Errorf("no skip warning in %q", con)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		t.Parallel()
		fn := func(context.Context, *slog.Logger) error { return nil }
		for _, c := range []struct {
			p    StandAlone
			want string
		}{
			{StandAlone{Cron: "*/5 * * * *", Delay: time.Second}, `Cron = "*/5 * * * *": and Delay (1s) are exclusive`},
			{StandAlone{Cron: "*/5 * * * *", RunOnce: true}, `Cron = "*/5 * * * *": and RunOnce are exclusive`},
			{StandAlone{Cron: "every 5 minutes"}, `Cron = "every 5 minutes": bad cron expression`},
			{StandAlone{Cron: "* * * * *", TimeZone: "Nowhere/Land"}, `TimeZone = "Nowhere/Land": unknown time zone`},
			{StandAlone{TimeZone: "UTC"}, `TimeZone = "UTC": is only used with Cron`},
		} {
			c.p.Function = fn
			err := RunStandAlone(t.Context(), c.p)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), `stand-alone process "standalone": `+c.want) {
				t.Errorf("RunStandAlone(%+v) = %v, want a ConfigError containing %q", c.p, err, c.want)
			}
		}
	})
}
