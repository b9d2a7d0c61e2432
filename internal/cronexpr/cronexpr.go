// Package cronexpr parses the cron schedules of stand-alone processes and
// relaunching hooks.
//
// The parser is github.com/robfig/cron/v3 (MIT): feature-complete and
// stable, though no longer actively developed; only its parser is used.
package cronexpr

import (
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// parser takes 5 fields (minute hour dom month dow), 6 with a leading
// seconds field, descriptors (@hourly, @every 1m) and a CRON_TZ= or TZ=
// prefix.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrTimeZone marks an error about the time zone rather than the expression.
var ErrTimeZone = errors.New("unknown time zone")

// Schedule gives the due times of an expression.
type Schedule interface {
	// Next returns the first due time strictly after t.
	Next(t time.Time) time.Time
}

// Parse parses expr; timeZone ("" for the process's local zone, or an IANA
// name such as "Europe/Paris") is the zone in which its fields are read,
// unless expr carries its own CRON_TZ= prefix.
func Parse(expr, timeZone string) (Schedule, error) {
	if timeZone != "" {
		if _, err := time.LoadLocation(timeZone); err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrTimeZone, timeZone, err)
		}
		if !hasZonePrefix(expr) {
			expr = "CRON_TZ=" + timeZone + " " + expr
		}
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("bad cron expression (5 or 6 fields, or a descriptor such as @hourly): %v", err)
	}
	return s, nil
}

func hasZonePrefix(expr string) bool {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if len(expr) >= len(p) && expr[:len(p)] == p {
			return true
		}
	}
	return false
}
