package chaos

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	// Worker processes 1 to 4. Process 2 is alive throughout; process 1
	// is alive until 100 and again from 200 (a SIGSTOP, then a new
	// registration); process 3 was SIGKILLed at 100; process 4 was
	// SIGSTOPped at 100, registered again at 200 and SIGKILLed at 300.
	alive := map[int][]span{
		1: {{0, 100}, {200, open}},
		2: {{0, open}},
		3: {{0, 100}},
		4: {{0, 100}, {200, 300}},
	}
	deaths := map[int]int64{3: 100, 4: 300}
	// x is a run that ended; cut one that has no end record; cancelled
	// one that ended on its context.
	x := func(task int64, pid int, start, end int64) execution {
		return execution{Task: task, PID: pid, Start: start, End: end, Outcome: outcomeDone}
	}
	cut := func(task int64, pid int, start int64) execution {
		return execution{Task: task, PID: pid, Start: start}
	}
	cancelled := func(task int64, pid int, start, end int64) execution {
		return execution{Task: task, PID: pid, Start: start, End: end, Outcome: outcomeCancelled}
	}
	tests := []struct {
		name                 string
		execs                []execution
		concurrent, overlaps int
		duplicates, cutOff   int
		cancelledRuns        int
	}{
		{name: "OneRun", execs: []execution{x(1, 1, 10, 20)}},
		{name: "OneAfterTheOther", execs: []execution{x(1, 1, 10, 20), x(1, 2, 20, 30)}, duplicates: 1},
		{name: "OverlapBothAlive", execs: []execution{x(1, 1, 10, 30), x(1, 2, 20, 40)}, concurrent: 1, overlaps: 1, duplicates: 1},
		{name: "OverlapWhileOneStopped", execs: []execution{x(1, 1, 90, 150), x(1, 2, 110, 140)}, overlaps: 1, duplicates: 1},
		{name: "OverlapStraddlingTheStop", execs: []execution{x(1, 1, 90, 150), x(1, 2, 95, 140)}, concurrent: 1, overlaps: 1, duplicates: 1},
		{name: "OverlapAfterComingBack", execs: []execution{x(1, 1, 150, 250), x(1, 2, 190, 260)}, concurrent: 1, overlaps: 1, duplicates: 1},
		{name: "OtherTasks", execs: []execution{x(1, 1, 10, 30), x(2, 2, 20, 40)}},
		{name: "ThreeRunsTwoPairs", execs: []execution{x(1, 1, 10, 30), x(1, 2, 20, 40), x(1, 2, 35, 50)}, concurrent: 2, overlaps: 2, duplicates: 2},
		{name: "UnknownProcess", execs: []execution{x(1, 9, 10, 30), x(1, 2, 20, 40)}, overlaps: 1, duplicates: 1},

		// A run cut off by its process's SIGKILL at 100 lasted until then.
		{name: "KilledRunOverlapsARunBeforeTheKill", execs: []execution{cut(1, 3, 10), x(1, 2, 50, 70)},
			concurrent: 1, overlaps: 1, duplicates: 1, cutOff: 1},
		{name: "KilledRunOverlapsARunStraddlingTheKill", execs: []execution{cut(1, 3, 10), x(1, 2, 90, 130)},
			concurrent: 1, overlaps: 1, duplicates: 1, cutOff: 1},
		{name: "KilledRunThenRelaunchAfterTheKill", execs: []execution{cut(1, 3, 10), x(1, 2, 150, 170)},
			duplicates: 1, cutOff: 1},
		{name: "KilledRunThenRelaunchAtTheKill", execs: []execution{cut(1, 3, 10), x(1, 2, 100, 170)},
			duplicates: 1, cutOff: 1},
		{name: "TwoKilledRunsOneAfterTheOther", execs: []execution{cut(1, 3, 10), cut(1, 4, 220)},
			duplicates: 1, cutOff: 2},
		{name: "KilledRunsOverlapping", execs: []execution{cut(1, 3, 10), cut(1, 4, 50)},
			concurrent: 1, overlaps: 1, duplicates: 1, cutOff: 2},
		// Process 4 came back from its stop with the run still going.
		{name: "RunCutOffAcrossAStopOverlapsWhileStopped", execs: []execution{cut(1, 4, 90), x(1, 2, 110, 150)},
			overlaps: 1, duplicates: 1, cutOff: 1},
		{name: "RunCutOffAcrossAStopOverlapsAfterComingBack", execs: []execution{cut(1, 4, 90), x(1, 2, 250, 260)},
			concurrent: 1, overlaps: 1, duplicates: 1, cutOff: 1},
		// A process not known to have died: its run never ended.
		{name: "RunCutOffOnAProcessNotKnownToDie", execs: []execution{cut(1, 2, 10), x(1, 1, 500, 510)},
			concurrent: 1, overlaps: 1, duplicates: 1, cutOff: 1},

		// A cancelled run says when it stopped.
		{name: "CancelledThenRelaunched", execs: []execution{cancelled(1, 2, 10, 40), x(1, 1, 50, 60)},
			duplicates: 1, cancelledRuns: 1},
		{name: "CancelledAfterTheRelaunchBegan", execs: []execution{cancelled(1, 2, 10, 60), x(1, 1, 50, 70)},
			concurrent: 1, overlaps: 1, duplicates: 1, cancelledRuns: 1},
		{name: "CancelledWhileStopped", execs: []execution{cancelled(1, 1, 90, 180), x(1, 2, 120, 130)},
			overlaps: 1, duplicates: 1, cancelledRuns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			execs := append([]execution(nil), tt.execs...)
			v := judge(execs, alive, deaths)
			if got := len(v.Concurrent); got != tt.concurrent {
				t.Errorf("concurrent pairs = %d, want %d: %v", got, tt.concurrent, v.Concurrent)
			}
			if got := len(v.Overlaps); got != tt.overlaps {
				t.Errorf("overlapping pairs = %d, want %d", got, tt.overlaps)
			}
			if v.Duplicates != tt.duplicates || v.CutOff != tt.cutOff || v.Cancelled != tt.cancelledRuns {
				t.Errorf("duplicates, cut off, cancelled = %d, %d, %d; want %d, %d, %d",
					v.Duplicates, v.CutOff, v.Cancelled, tt.duplicates, tt.cutOff, tt.cancelledRuns)
			}
		})
	}
}

// TestJudgeEndsCutOffRunsAtTheirDeath checks the span given to a run cut
// off: from its start to its process's death, never before its start.
func TestJudgeEndsCutOffRunsAtTheirDeath(t *testing.T) {
	t.Parallel()
	execs := []execution{
		{Task: 1, PID: 3, Start: 10},
		{Task: 2, PID: 3, Start: 150}, // recorded after the death seen: a clock step
		{Task: 3, PID: 5, Start: 20},
		{Task: 4, PID: 3, Start: 30, End: 40, Outcome: outcomeDone},
	}
	judge(execs, nil, map[int]int64{3: 100})
	want := map[int64]int64{1: 100, 2: 150, 3: open, 4: 40}
	for _, x := range execs {
		if x.End != want[x.Task] {
			t.Errorf("task %d: end = %d, want %d", x.Task, x.End, want[x.Task])
		}
	}
}

// TestResultJSONKeys pins the keys of the verdict line.
func TestResultJSONKeys(t *testing.T) {
	t.Parallel()
	var m map[string]any
	if err := json.Unmarshal([]byte(Result{Problems: []string{"x"}, Dir: "d"}.JSON()), &m); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(m))
	want := []string{"concurrent_runs", "cut_off_runs", "duplicate_runs", "failed", "kills", "lost", "max_recovery_s", "succeeded", "tasks"}
	if !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
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
	l.died(7, at(40)) // the SIGKILL…
	l.died(7, at(45)) // …then the exit it caused: the kill counts
	l.begin(8, at(50))
	spans, deaths := l.snapshot()
	want := []span{{10, 20}, {30, 40}}
	if !slices.Equal(spans[7], want) {
		t.Errorf("spans = %v, want %v", spans[7], want)
	}
	if d, ok := deaths[7]; !ok || d != 40 {
		t.Errorf("death of 7 = %d (known %v), want 40", d, ok)
	}
	if _, ok := deaths[8]; ok {
		t.Errorf("process 8, alive, has a death")
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
