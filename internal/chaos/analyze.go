package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// span is a time interval [From, To) in Unix nanoseconds.
type span struct{ From, To int64 }

// open is the end of a span that has not ended.
const open = math.MaxInt64

// liveness records, per process id, the spans in which the process was
// alive, and when it died (was SIGKILLed, or exited). Safe for concurrent
// use.
type liveness struct {
	mu     sync.Mutex
	spans  map[int][]span
	deaths map[int]int64 // Unix nanoseconds
}

func newLiveness() *liveness {
	return &liveness{spans: map[int][]span{}, deaths: map[int]int64{}}
}

// begin opens a span for pid at t, unless one is open already.
func (l *liveness) begin(pid int, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.spans[pid]
	if len(s) > 0 && s[len(s)-1].To == open {
		return
	}
	l.spans[pid] = append(s, span{From: t.UnixNano(), To: open})
}

// end closes pid's open span at t, if it has one.
func (l *liveness) end(pid int, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.spans[pid]
	if len(s) > 0 && s[len(s)-1].To == open {
		s[len(s)-1].To = max(t.UnixNano(), s[len(s)-1].From)
	}
}

// died records that pid was killed or exited at t, keeping the earliest
// such moment (the SIGKILL comes before the exit it causes). It ends
// pid's open span too.
func (l *liveness) died(pid int, t time.Time) {
	l.end(pid, t)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, ok := l.deaths[pid]; !ok || t.UnixNano() < d {
		l.deaths[pid] = t.UnixNano()
	}
}

// snapshot copies the spans and the deaths.
func (l *liveness) snapshot() (map[int][]span, map[int]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int][]span, len(l.spans))
	for pid, s := range l.spans {
		out[pid] = slices.Clone(s)
	}
	return out, maps.Clone(l.deaths)
}

// execution is one run of the processing function, from its start record
// and, unless it was cut off, its end record.
type execution struct {
	Task       int64
	Worker     string
	Try        int
	PID        int
	Start, End int64 // Unix nanoseconds; End is set by closeCutOff for a run cut off
	// Outcome is outcomeDone or outcomeCancelled from the end record, or
	// "" for a run cut off (no end record).
	Outcome string
}

// cutOff reports whether the run has no end record.
func (x execution) cutOff() bool { return x.Outcome == "" }

func (x execution) String() string {
	how := x.Outcome
	if x.cutOff() {
		how = "cut off"
	}
	took := "until the end of the run"
	if x.End != open {
		took = time.Duration(x.End - x.Start).Round(time.Microsecond).String()
	}
	return fmt.Sprintf("%s (pid %d) try %d from %s for %s, %s", x.Worker, x.PID, x.Try,
		time.Unix(0, x.Start).Format("15:04:05.000000"), took, how)
}

// closeCutOff ends each run that was cut off at its process's death: a
// run with no end record lasted, for all anyone knows, until its process
// was killed. A run whose process is not known to have died lasts to the
// end of time.
func closeCutOff(execs []execution, deaths map[int]int64) {
	for i, x := range execs {
		if !x.cutOff() {
			continue
		}
		execs[i].End = open
		if d, ok := deaths[x.PID]; ok {
			execs[i].End = max(d, x.Start)
		}
	}
}

// verdict is what the executions say.
type verdict struct {
	Overlaps   []concurrentPair // pairs of runs of one task overlapping in time
	Concurrent []concurrentPair // those overlapping while both processes were alive
	Duplicates int              // runs beyond the first of each task
	CutOff     int              // runs with no end record
	Cancelled  int              // runs that ended on their context
}

// judge computes the verdict on execs (sorted by sortExecutions, in
// place), given each worker process's spans of life and death.
func judge(execs []execution, alive map[int][]span, deaths map[int]int64) verdict {
	var v verdict
	for _, x := range execs {
		switch x.Outcome {
		case "":
			v.CutOff++
		case outcomeCancelled:
			v.Cancelled++
		}
	}
	closeCutOff(execs, deaths)
	sortExecutions(execs)
	v.Duplicates = duplicates(execs)
	v.Overlaps = findOverlaps(execs, alive)
	for _, p := range v.Overlaps {
		if p.BothAlive {
			v.Concurrent = append(v.Concurrent, p)
		}
	}
	return v
}

// concurrentPair is two executions of one task whose spans overlap;
// BothAlive says whether they did so at a moment when both processes
// were alive.
type concurrentPair struct {
	A, B      execution
	BothAlive bool
}

// findOverlaps returns the pairs of executions of one task whose spans
// overlap, each marked with whether both processes were alive at some
// moment of the overlap. execs must be sorted by task.
func findOverlaps(execs []execution, alive map[int][]span) []concurrentPair {
	var out []concurrentPair
	for lo := 0; lo < len(execs); {
		hi := lo + 1
		for hi < len(execs) && execs[hi].Task == execs[lo].Task {
			hi++
		}
		group := execs[lo:hi]
		for i := range group {
			for j := i + 1; j < len(group); j++ {
				a, b := group[i], group[j]
				from, to := max(a.Start, b.Start), min(a.End, b.End)
				if from < to {
					out = append(out, concurrentPair{a, b, bothAlive(alive[a.PID], alive[b.PID], from, to)})
				}
			}
		}
		lo = hi
	}
	return out
}

// bothAlive reports whether some moment of [from, to) lies in a span of a
// and in a span of b.
func bothAlive(a, b []span, from, to int64) bool {
	for _, sa := range a {
		for _, sb := range b {
			if max(from, sa.From, sb.From) < min(to, sa.To, sb.To) {
				return true
			}
		}
	}
	return false
}

// duplicates counts executions beyond the first of each task; execs must
// be sorted by task.
func duplicates(execs []execution) int {
	n := 0
	for i := 1; i < len(execs); i++ {
		if execs[i].Task == execs[i-1].Task {
			n++
		}
	}
	return n
}

func sortExecutions(execs []execution) {
	slices.SortFunc(execs, func(a, b execution) int {
		if a.Task != b.Task {
			return cmp.Compare(a.Task, b.Task)
		}
		return cmp.Compare(a.Start, b.Start)
	})
}
