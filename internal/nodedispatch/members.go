package nodedispatch

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/pampa-go/pampa/internal/engine"
	"github.com/pampa-go/pampa/internal/executor"
)

// member is one worker of the node: its slots, the tries it runs and
// the ones started for it that wait for a slot. Only the loop's
// goroutine touches its fields, but busy.
type member struct {
	r     *Runtime
	id    string
	slots int
	jobs  map[string]bool
	log   *slog.Logger

	// gen counts the worker's incarnations: outcomes and ends of an
	// earlier one are ignored once it was replaced.
	gen     int
	exec    *executor.Executor
	in      chan *engine.Attempt
	running map[*engine.Attempt]bool // handed to the worker, outcome not back
	buffer  []*engine.Attempt        // started for it, waiting for a slot
	since   time.Time                // when the buffer filled
	busy    atomic.Int64

	drained bool // an operator drained it: no new tries
	lost    bool // its id was taken by another process: never again
	down    bool // its goroutine died: started again at restartAt
	backoff time.Duration
	restart time.Time
}

// result is what a worker's slot sends back to the loop: an outcome, or
// the news that the slot's goroutine died (panic set).
type result struct {
	m     *member
	gen   int
	out   engine.Outcome
	d     time.Duration
	panic any
}

func newMember(r *Runtime, m Member) *member {
	mb := &member{r: r, id: m.Info.ID, slots: m.Concurrency, jobs: map[string]bool{}, log: m.Log, running: map[*engine.Attempt]bool{}}
	if mb.log == nil {
		mb.log = r.log.With("worker", m.Info.ID)
	}
	for _, j := range m.Jobs {
		mb.jobs[j] = true
	}
	return mb
}

// start starts the worker's slots: one goroutine each, reading attempts
// from the member's channel.
func (m *member) start(done chan<- result) {
	m.gen++
	m.exec = executor.New(executor.Options{OverrunGrace: m.r.opts.OverrunGrace, Store: m.r.opts.Store, Hard: m.r.hardCtx})
	m.in = make(chan *engine.Attempt, m.slots)
	m.down = false
	for range m.slots {
		go m.slot(m.exec, m.in, m.gen, done)
	}
}

// slot runs the tries handed to it until its channel closes. A panic out
// of a try (a hook's: the processing function's are recovered by the
// executor) ends the slot and, with it, the worker.
func (m *member) slot(exec *executor.Executor, in <-chan *engine.Attempt, gen int, done chan<- result) {
	var cur *engine.Attempt
	defer func() {
		if p := recover(); p != nil {
			m.busy.Add(-1)
			done <- result{m: m, gen: gen, out: engine.Outcome{Attempt: cur}, panic: fmt.Sprintf("%v\n%s", p, debug.Stack())}
		}
	}()
	for a := range in {
		cur = a
		m.busy.Add(1)
		o, d := exec.Execute(a)
		m.busy.Add(-1)
		done <- result{m: m, gen: gen, out: o, d: d}
	}
}

// stop closes the worker's channel: its slots end once their tries do.
func (m *member) stop() {
	if m.in != nil {
		close(m.in)
		m.in = nil
	}
}

// room is how many more tries the worker can take now: its free slots,
// while it runs, is not drained and its id is its own.
func (m *member) room() int {
	if m.down || m.lost || m.in == nil {
		return 0
	}
	return m.slots - len(m.running)
}

// feed hands the tries waiting in the buffer to free slots.
func (m *member) feed() {
	for len(m.buffer) > 0 && m.room() > 0 {
		a := m.buffer[0]
		m.buffer = m.buffer[1:]
		m.running[a] = true
		m.in <- a // never blocks: the channel holds a slot's worth per slot
	}
}

// take hands a try started for the worker to a free slot, or keeps it
// in the buffer.
func (m *member) take(a *engine.Attempt) {
	if len(m.buffer) == 0 {
		m.since = time.Now()
	}
	m.buffer = append(m.buffer, a)
	m.feed()
}

// held lists the tries the worker holds: running or waiting.
func (m *member) held() []*engine.Attempt {
	out := append([]*engine.Attempt(nil), m.buffer...)
	for a := range m.running {
		out = append(out, a)
	}
	return out
}
