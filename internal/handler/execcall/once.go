package execcall

import (
	"context"
	"errors"
	"fmt"

	"github.com/pampa-go/pampa/internal/handler"
)

// once runs one try in a process of its own: the Input line on stdin,
// then stdin closed; the exit status and stdout make the outcome.
func (c *Caller) once(ctx context.Context, line []byte, in handler.Input) handler.Outcome {
	out := &cappedBuffer{}
	p, err := c.start(out)
	if err != nil {
		return handler.Outcome{Err: err}
	}
	go p.send(line, true)
	select {
	case <-p.done:
	case <-ctx.Done():
		if how := p.terminate(c.opts.KillGrace); how != "" {
			return handler.Outcome{Err: stopped(ctx, p, how)}
		}
	}
	if out.over {
		return handler.Outcome{Err: fmt.Errorf("%w on stdout: the command was killed", errTooLarge)}
	}
	switch code := p.exitCode(); code {
	case 0:
		set, err := parseSet(out.buf.Bytes())
		if err != nil {
			return handler.Outcome{Err: err}
		}
		if tail, n := p.stderr.tail(); n > 0 {
			c.opts.Log.Debug("the command wrote on stderr", "job", in.Job, "task", in.Key, "try", in.Try, "stderr", string(tail))
		}
		return handler.Outcome{Set: set}
	case FinalStatus:
		return handler.Outcome{Err: errors.New(p.withStderr(fmt.Sprintf("failed for good (exit status %d)", code))), Final: true}
	}
	return handler.Outcome{Err: errors.New(p.withStderr(p.status()))}
}

// stopped is the error of a try whose context ended while its process
// ran: why it ended, how the process was stopped, and its stderr.
func stopped(ctx context.Context, p *process, how string) error {
	return errors.New(p.withStderr(fmt.Sprintf("%s when its try ended (%v)", how, context.Cause(ctx))))
}

// Run runs the command once with input on stdin, then stdin closed, for
// a hook rather than a try: exit status 0 is success and stdout is not
// read; any other end is an error that quotes the end of stderr. The end
// of ctx stops the process as it stops a try's.
func (c *Caller) Run(ctx context.Context, input []byte) error {
	p, err := c.start(&cappedBuffer{})
	if err != nil {
		return err
	}
	go p.send(input, true)
	select {
	case <-p.done:
	case <-ctx.Done():
		if how := p.terminate(c.opts.KillGrace); how != "" {
			return errors.New(p.withStderr(fmt.Sprintf("%s when its deadline passed (%v)", how, context.Cause(ctx))))
		}
	}
	if code := p.exitCode(); code != 0 {
		return errors.New(p.withStderr(p.status()))
	}
	return nil
}
