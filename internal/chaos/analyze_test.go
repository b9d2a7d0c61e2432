package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestFindConcurrent(t *testing.T) {
	t.Parallel()
	// Two worker processes, 1 and 2. Process 2 is alive throughout;
	// process 1 is alive until 100 and again from 200 (a SIGSTOP, then a
	// new registration).
	alive := map[int][]span{
		1: {{0, 100}, {200, open}},
		2: {{0, open}},
	}
	x := func(task int64, pid int, start, end int64) execution {
		return execution{Task: task, PID: pid, Start: start, End: end}
	}
	tests := []struct {
		name  string
		execs []execution
		want  int
	}{
		{"OneRun", []execution{x(1, 1, 10, 20)}, 0},
		{"OneAfterTheOther", []execution{x(1, 1, 10, 20), x(1, 2, 20, 30)}, 0},
		{"OverlapBothAlive", []execution{x(1, 1, 10, 30), x(1, 2, 20, 40)}, 1},
		{"OverlapWhileOneStopped", []execution{x(1, 1, 90, 150), x(1, 2, 110, 140)}, 0},
		{"OverlapStraddlingTheStop", []execution{x(1, 1, 90, 150), x(1, 2, 95, 140)}, 1},
		{"OverlapAfterComingBack", []execution{x(1, 1, 150, 250), x(1, 2, 190, 260)}, 1},
		{"OtherTasks", []execution{x(1, 1, 10, 30), x(2, 2, 20, 40)}, 0},
		{"ThreeRunsTwoPairs", []execution{x(1, 1, 10, 30), x(1, 2, 20, 40), x(1, 2, 35, 50)}, 2},
		{"UnknownProcess", []execution{x(1, 3, 10, 30), x(1, 2, 20, 40)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			execs := append([]execution(nil), tt.execs...)
			sortExecutions(execs)
			if got := len(findConcurrent(execs, alive)); got != tt.want {
				t.Errorf("concurrent pairs = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	t.Parallel()
	execs := []execution{{Task: 3}, {Task: 1}, {Task: 1}, {Task: 2}, {Task: 1}, {Task: 3}}
	sortExecutions(execs)
	if got := duplicates(execs); got != 3 {
		t.Errorf("duplicates = %d, want 3", got)
	}
}

func TestLiveness(t *testing.T) {
	t.Parallel()
	l := newLiveness()
	at := func(ns int64) time.Time { return time.Unix(0, ns) }
	l.begin(7, at(10))
	l.begin(7, at(15)) // already alive: no new span
	l.end(7, at(20))
	l.end(7, at(25)) // already ended: unchanged
	l.begin(7, at(30))
	got := l.snapshot()[7]
	want := []span{{10, 20}, {30, open}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("spans = %v, want %v", got, want)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	r := &runner{cfg: Full()}
	var kinds []string
	plan := r.plan()
	for _, m := range plan {
		kinds = append(kinds, m.kind)
	}
	if got, want := strings.Join(kinds, ", "), "stop, leader kill, postgres restart, leader kill"; got != want {
		t.Errorf("plan = %s, want %s", got, want)
	}
	if plan[0].at != Full().FirstAt || plan[len(plan)-1].at != Full().LastAt {
		t.Errorf("milestones = %v, want from %g to %g", plan, Full().FirstAt, Full().LastAt)
	}
	r.cfg.Stops, r.cfg.LeaderKills, r.cfg.PostgresRestarts = -1, -1, -1
	if plan := r.plan(); len(plan) != 0 {
		t.Errorf("plan with no disruptions = %v", plan)
	}
}

func TestIsLeadingLine(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]bool{
		"10:04:05.123 INFO  dispatcher  leading term=3":                          true,
		"10:04:05.123 WARN  dispatcher  lost the lease to another dispatcher":    false,
		"10:04:05.123 WARN  dispatcher  cannot renew the lease: standing down":   false,
		"10:04:05.123 INFO  dispatcher  dispatcher started id=vm:1:abc jobs=1":   false,
		"10:04:05.123 INFO  dispatcher  relaunched tasks job=leading relaunched": false,
	} {
		if got := isLeadingLine(line); got != want {
			t.Errorf("isLeadingLine(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{Full(), Short(), Small()} {
		if err := c.validate(); err != nil {
			t.Errorf("preset: %v", err)
		}
	}
	bad := Full()
	bad.Dispatchers, bad.StopFor = 1, bad.WorkerTTL
	err := bad.validate()
	if err == nil || !strings.Contains(err.Error(), "Dispatchers") || !strings.Contains(err.Error(), "StopFor") {
		t.Errorf("validate() = %v, want errors naming Dispatchers and StopFor", err)
	}
}
