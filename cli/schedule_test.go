package cli

import (
	"testing"
	"time"
)

// --at takes RFC 3339 or a signed duration from now; anything else is a
// usage error naming the value.
func TestParseAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"+10m":                      now.Add(10 * time.Minute),
		"90s":                       now.Add(90 * time.Second),
		"-1h":                       now.Add(-time.Hour),
		"2026-05-06T07:08:09+02:00": time.Date(2026, 5, 6, 5, 8, 9, 0, time.UTC),
	} {
		if got, err := parseAt(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tomorrow", "2026-05-06"} {
		if _, err := parseAt(in, now); err == nil {
			t.Errorf("parseAt(%q): no error", in)
		}
	}
}
