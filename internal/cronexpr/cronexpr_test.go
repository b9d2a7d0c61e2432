package cronexpr

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 10, 7, 30, 0, time.UTC)
	for _, c := range []struct {
		expr, zone string
		want       time.Time
	}{
		{"*/5 * * * *", "UTC", time.Date(2026, 3, 4, 10, 10, 0, 0, time.UTC)},
		{"*/2 * * * * *", "UTC", time.Date(2026, 3, 4, 10, 7, 32, 0, time.UTC)},
		{"@hourly", "UTC", time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)},
		{"@every 90s", "", at.Add(90 * time.Second)},
		// 12:00 in Paris (UTC+1 in March before the change) is 11:00 UTC.
		{"0 12 * * *", "Europe/Paris", time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)},
		{"CRON_TZ=Europe/Paris 0 12 * * *", "", time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)},
		{"TZ=UTC 0 12 * * *", "Europe/Paris", time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)},
	} {
		s, err := Parse(c.expr, c.zone)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", c.expr, c.zone, err)
			continue
		}
		if got := s.Next(at); !got.Equal(c.want) {
			t.Errorf("Parse(%q, %q).Next(%v) = %v, want %v", c.expr, c.zone, at, got, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ expr, zone, want string }{
		{"every five minutes", "", "bad cron expression"},
		{"* * * *", "", "bad cron expression"},
		{"* * * * * * *", "", "bad cron expression"},
		{"61 * * * *", "", "bad cron expression"},
		{"@fortnightly", "", "bad cron expression"},
		{"", "", "bad cron expression"},
		{"* * * * *", "Mars/Olympus", `unknown time zone "Mars/Olympus"`},
	} {
		_, err := Parse(c.expr, c.zone)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error containing %q", c.expr, c.zone, err, c.want)
		}
	}
}
