package pampa

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Rate is a rate limit: at most N task starts in any window of Per, paced
// evenly (one every Per/N) rather than in bursts (docs/limits.md). The
// zero Rate is no limit. Written "N/Per" in a config file: "60/1m",
// "10/s", "1000/1h" (a bare unit means one of it).
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports whether the rate sets no limit.
func (r Rate) IsZero() bool { return r.N == 0 && r.Per == 0 }

// String writes the rate as ParseRate reads it.
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	return strconv.Itoa(r.N) + "/" + shortDuration(r.Per)
}

// shortDuration writes whole minutes and hours without the trailing
// zero units time.Duration.String adds ("1m", not "1m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseRate reads "N/Per": a whole number of starts, a slash, and a Go
// duration ("1m", "30s", "1h30m") or a bare unit ("s", "m", "h").
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("want starts/interval, such as 60/1m or 10/s")
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 1 {
		return Rate{}, fmt.Errorf("the number of starts %q must be a whole number of at least 1", n)
	}
	per = strings.TrimSpace(per)
	if per == "s" || per == "m" || per == "h" {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("the interval %q must be a positive duration such as 1m, 30s or h", per)
	}
	return Rate{N: count, Per: d}, nil
}

// minRateSpacing is the shortest pace a rate may ask for: the dispatcher
// hands out a rate-limited job's tasks round by round, and a finer pace
// would be a promise its rounds cannot keep.
const minRateSpacing = time.Millisecond

// checkLimits validates the limit options (max_running, rate_limit,
// group_by and their per-group forms).
func (j *Job) checkLimits(bad func(string, any, string) error) error {
	if j.MaxRunning < 0 {
		return bad("max_running", j.MaxRunning, "must not be negative (0 means no limit)")
	}
	if j.MaxRunningPerGroup < 0 {
		return bad("max_running_per_group", j.MaxRunningPerGroup, "must not be negative (0 means no limit)")
	}
	for _, r := range []struct {
		field string
		rate  Rate
	}{{"rate_limit", j.RateLimit}, {"rate_limit_per_group", j.RateLimitPerGroup}} {
		if r.rate.IsZero() {
			continue
		}
		if r.rate.N < 1 || r.rate.Per <= 0 {
			return bad(r.field, r.rate, "want at least 1 start per positive interval, such as 60/1m")
		}
		if r.rate.Per/time.Duration(r.rate.N) < minRateSpacing {
			return bad(r.field, r.rate, "paces starts less than 1ms apart; a limit this high limits nothing")
		}
	}
	if j.limited() {
		switch {
		case j.Hooks.Selecting != nil || j.Hooks.SelectingSQL != "":
			return bad("selecting_sql", j.Hooks.SelectingSQL, "a job with limits or group_by has its rows picked through the limits, group by group; leave the selecting hook out")
		case j.Hooks.Occupied != nil || j.Hooks.OccupiedSQL != "":
			return bad("occupied_sql", j.Hooks.OccupiedSQL, "a job with limits or group_by is handed only what its workers' free slots start at once; leave the occupied hook out")
		}
	}
	if j.GroupBy == "" {
		switch {
		case j.MaxRunningPerGroup > 0:
			return bad("max_running_per_group", j.MaxRunningPerGroup, "limits each group; set group_by to the column that names a task's group")
		case !j.RateLimitPerGroup.IsZero():
			return bad("rate_limit_per_group", j.RateLimitPerGroup, "limits each group; set group_by to the column that names a task's group")
		}
		return nil
	}
	if err := checkName(j.GroupBy, maxNameLen); err != nil {
		return bad("group_by", j.GroupBy, err.Error())
	}
	if j.GroupBy == j.PrimaryKey {
		return bad("group_by", j.GroupBy, "is the primary key: every task would be a group of its own")
	}
	for _, f := range j.columns() {
		if f.column == j.GroupBy {
			return bad("group_by", j.GroupBy, "is a tracking column ("+f.option+"); name a column of the task's own data")
		}
	}
	return nil
}

// limited reports whether the job has a limit or groups: the dispatcher
// then hands its tasks out through the limits (docs/limits.md).
func (j *Job) limited() bool {
	return j.MaxRunning > 0 || !j.RateLimit.IsZero() || j.GroupBy != "" || j.MaxRunningPerGroup > 0 || !j.RateLimitPerGroup.IsZero()
}

// storeLimits is the limits as the store reads them.
func (j *Job) storeLimits() store.Limits {
	return store.Limits{
		MaxRunning: j.MaxRunning, Rate: store.Rate{N: j.RateLimit.N, Per: j.RateLimit.Per},
		GroupBy: j.GroupBy, MaxRunningPerGroup: j.MaxRunningPerGroup,
		RatePerGroup: store.Rate{N: j.RateLimitPerGroup.N, Per: j.RateLimitPerGroup.Per},
	}
}
