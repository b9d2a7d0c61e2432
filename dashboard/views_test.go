package dashboard

import (
	"slices"
	"testing"

	"github.com/pampa-go/pampa"
)

// A job's schedule shows among its options only when it has one.
func TestJobOptionsRelaunchCron(t *testing.T) {
	t.Parallel()
	j := &pampa.Job{Name: "check_websites", RelaunchCron: "*/5 * * * *", RelaunchTimeZone: "UTC"}
	opts := jobOptions(j)
	for _, want := range []Option{{"relaunch_cron", "*/5 * * * *"}, {"relaunch_time_zone", "UTC"}} {
		if !slices.Contains(opts, want) {
			t.Errorf("options %v lack %v", opts, want)
		}
	}
	for _, o := range jobOptions(&pampa.Job{Name: "plain"}) {
		if o.Name == "relaunch_cron" || o.Name == "relaunch_time_zone" {
			t.Errorf("a job without a schedule shows %v", o)
		}
	}
}
