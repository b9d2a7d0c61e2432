package chaos

import (
	"cmp"
	"fmt"
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
// alive. Safe for concurrent use.
type liveness struct {
	mu    sync.Mutex
	spans map[int][]span
}

func newLiveness() *liveness { return &liveness{spans: map[int][]span{}} }

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

// snapshot copies the spans.
func (l *liveness) snapshot() map[int][]span {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int][]span, len(l.spans))
	for pid, s := range l.spans {
		out[pid] = slices.Clone(s)
	}
	return out
}

// execution is one recorded run of the processing function.
type execution struct {
	Task       int64
	Worker     string
	Try        int
	PID        int
	Start, End int64 // Unix nanoseconds
}

func (x execution) String() string {
	return fmt.Sprintf("%s (pid %d) try %d from %s for %s", x.Worker, x.PID, x.Try,
		time.Unix(0, x.Start).Format("15:04:05.000000"), time.Duration(x.End-x.Start).Round(time.Microsecond))
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

// findConcurrent returns the overlapping pairs whose processes were both
// alive during the overlap: the concurrent runs.
func findConcurrent(execs []execution, alive map[int][]span) []concurrentPair {
	var out []concurrentPair
	for _, p := range findOverlaps(execs, alive) {
		if p.BothAlive {
			out = append(out, p)
		}
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
