package execcall

// Persistent mode: a process serves one try after another. The line
// protocol, both ways one JSON object per line (the user's side is in
// docs/handlers.md):
//
//	in:  the try's handler.Input
//	out: {"ok": true, "set": {"column": value, ...}}        ("set" optional)
//	     {"ok": false, "error": "why", "final": false}      ("final" optional)
//
// A pool keeps the idle processes of one caller; a try takes one, or
// starts one, so that a worker runs at most one per slot busy with the
// job. A process is dropped, and another started for the next try, when
// it exits, when its try's deadline passes (it is killed), and when it
// breaks the protocol (a bad or oversized line, or a line nobody asked
// for): its stream can no longer be trusted to be in step.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
)

// Backoff before starting a process after others died in a row.
const (
	restartBackoff    = 100 * time.Millisecond
	maxRestartBackoff = 2 * time.Second
)

// pool holds a caller's idle persistent processes.
type pool struct {
	c *Caller

	mu     sync.Mutex
	idle   []*member
	closed bool
	deaths int // processes in a row that died before answering
	stops  sync.WaitGroup
}

// member is a persistent process and the lines it writes.
type member struct {
	*process
	lines *lineWriter
}

// call runs one try on a pooled process.
func (pl *pool) call(ctx context.Context, line []byte, in handler.Input) handler.Outcome {
	m, err := pl.get(ctx)
	if err != nil {
		return handler.Outcome{Err: err}
	}
	go m.send(line, false)
	select {
	case r := <-m.lines.ch:
		return pl.answered(m, r)
	case <-m.done:
		select { // all it wrote is in before done closes
		case r := <-m.lines.ch:
			return pl.answered(m, r)
		default:
		}
		pl.died()
		return handler.Outcome{Err: errors.New(m.withStderr(fmt.Sprintf("the process exited (%s) before answering", m.status())))}
	case <-ctx.Done():
		how := m.terminate(pl.c.opts.KillGrace)
		if how == "" {
			how = "the process exited"
		}
		return handler.Outcome{Err: stopped(ctx, m.process, how)}
	}
}

// answered judges an answer line; a good one puts its process back.
func (pl *pool) answered(m *member, r lineResult) handler.Outcome {
	if r.err != nil {
		pl.drop(m)
		return handler.Outcome{Err: fmt.Errorf("%w in one answer line: the process was killed and is restarted", r.err)}
	}
	out, err := parseAnswer(r.line)
	if err != nil {
		pl.drop(m)
		return handler.Outcome{Err: fmt.Errorf("%w; the process is restarted", err)}
	}
	pl.put(m)
	return out
}

// get takes an idle process that is still fit, or starts one, after a
// backoff if processes died in a row.
func (pl *pool) get(ctx context.Context) (*member, error) {
	for {
		pl.mu.Lock()
		if pl.closed {
			pl.mu.Unlock()
			return nil, errors.New("the worker is stopping")
		}
		n := len(pl.idle)
		if n == 0 {
			deaths := pl.deaths
			pl.mu.Unlock()
			if err := backoff(ctx, deaths); err != nil {
				return nil, err
			}
			return pl.start()
		}
		m := pl.idle[n-1]
		pl.idle = pl.idle[:n-1]
		pl.mu.Unlock()
		switch {
		case m.gone():
			pl.died()
			pl.c.opts.Log.Warn("a persistent process exited between tries; starting another", "status", m.status(),
				"stderr", m.stderr.String())
		case m.lines.unasked():
			pl.c.opts.Log.Warn("a persistent process wrote a line nobody asked for; restarting it")
			pl.drop(m)
		default:
			return m, nil
		}
	}
}

// backoff waits before a start after deaths processes died in a row.
func backoff(ctx context.Context, deaths int) error {
	if deaths == 0 {
		return nil
	}
	d := min(restartBackoff<<min(deaths-1, 8), maxRestartBackoff)
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting %s to restart the process, which exited %d times in a row: %w", d, deaths, context.Cause(ctx))
	}
}

func (pl *pool) start() (*member, error) {
	lw := &lineWriter{ch: make(chan lineResult, 1)}
	p, err := pl.c.start(lw)
	if err != nil {
		return nil, err
	}
	return &member{process: p, lines: lw}, nil
}

// put gives a process that answered back to the pool.
func (pl *pool) put(m *member) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.deaths = 0
	if pl.closed {
		pl.stopLater(m, true)
		return
	}
	pl.idle = append(pl.idle, m)
}

// drop stops a process out of step, in the background.
func (pl *pool) drop(m *member) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.stopLater(m, false)
}

func (pl *pool) died() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.deaths++
}

// stopLater stops m in the background (gently: stdin closed first);
// close waits for it. Call with mu held.
func (pl *pool) stopLater(m *member, gently bool) {
	pl.stops.Add(1)
	go func() {
		defer pl.stops.Done()
		if gently {
			m.stopGently(pl.c.opts.KillGrace)
		} else {
			m.terminate(pl.c.opts.KillGrace)
		}
	}()
}

// close stops every idle process and waits for all stops under way.
func (pl *pool) close() {
	pl.mu.Lock()
	pl.closed = true
	for _, m := range pl.idle {
		pl.stopLater(m, true)
	}
	pl.idle = nil
	pl.mu.Unlock()
	pl.stops.Wait()
}

// lineResult is one line a persistent process wrote, or why none can be
// read.
type lineResult struct {
	line []byte
	err  error
}

// lineWriter splits a persistent process's stdout into lines. It never
// blocks: a line arriving while one is still unread means the process
// wrote what nobody asked for.
type lineWriter struct {
	ch      chan lineResult // holds at most one unread line
	mu      sync.Mutex
	partial []byte
	extra   bool   // a line was dropped: the process wrote unasked
	kill    func() // kills the process (a line past MaxOutput)
}

func (w *lineWriter) setKill(kill func()) { w.kill = kill }

func (w *lineWriter) Write(data []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(data)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(w.partial)+len(data) > MaxOutput {
				w.deliver(lineResult{err: errTooLarge})
				w.kill()
				return 0, errTooLarge
			}
			w.partial = append(w.partial, data...)
			break
		}
		line := append(w.partial, data[:i]...)
		w.partial = nil
		data = data[i+1:]
		if len(line) > MaxOutput {
			w.deliver(lineResult{err: errTooLarge})
			w.kill()
			return 0, errTooLarge
		}
		w.deliver(lineResult{line: line})
	}
	return n, nil
}

func (w *lineWriter) deliver(r lineResult) {
	select {
	case w.ch <- r:
	default:
		w.extra = true
	}
}

// unasked reports whether the process wrote a line before being asked.
func (w *lineWriter) unasked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.extra || len(w.ch) > 0
}
