package nodes

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"time"
)

// Stopped is the outcome of stopping one worker.
type Stopped struct {
	ID  string `json:"id"`
	PID int    `json:"pid,omitempty"`
	// WasRunning is false when there was nothing to stop: never started,
	// already stopped, or died (a stale pid file is removed).
	WasRunning bool `json:"was_running"`
	// Killed is set when the worker outlived its grace period and was
	// sent SIGKILL.
	Killed bool   `json:"killed,omitempty"`
	Why    string `json:"why,omitempty"`
	Error  string `json:"error,omitempty"`
	TookMS int64  `json:"took_ms,omitempty"`
}

// Stop stops workers gracefully: SIGTERM to the pid in each one's pid
// file, once the process is confirmed to be that worker (see
// processState); SIGKILL if it is still there after timeout (0: its grace
// period plus 10s). Stopping a stopped worker is not an error. ids
// default to all of the node's workers and any other pid file found.
func (c *Conn) Stop(ctx context.Context, ids []string, timeout time.Duration) ([]Stopped, error) {
	var s stopping
	err := c.bounded(ctx, "stop", func(context.Context) error { return c.prepareStop(&s, ids, timeout) })
	if err != nil || len(s.term) == 0 {
		return s.out, err
	}
	// Waiting takes as long as the longest grace period, and then some.
	longest := time.Duration(0)
	for _, d := range s.deadlines {
		longest = max(longest, time.Until(d))
	}
	err = c.boundedFor(ctx, c.opts.CommandTimeout+longest+15*time.Second, "stop", func(ctx context.Context) error {
		return c.stop(ctx, &s)
	})
	return s.out, err
}

// stopping is a stop in progress.
type stopping struct {
	dir       string
	ids       []string
	read      readFunc
	out       []Stopped
	deadlines []time.Time
	term      []string
	start     time.Time
}

// prepareStop finds which workers run, and when each must be gone.
func (c *Conn) prepareStop(s *stopping, ids []string, timeout time.Duration) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	dir, _, err := c.Dir()
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		ids = c.allWorkerIDs(dir)
	}
	s.dir, s.ids, s.read, s.start = dir, ids, sftpRead(sc), time.Now()
	s.out = make([]Stopped, len(ids))
	s.deadlines = make([]time.Time, len(ids))
	read, out, start := s.read, s.out, s.start
	for i, id := range ids {
		out[i].ID = id
		st := processState(read, dir, id)
		out[i].PID = st.PID
		if !st.Running {
			out[i].Why = st.Why
			if st.Stale {
				c.removeRecord(dir, id)
			}
			continue
		}
		out[i].WasRunning = true
		wait := timeout
		if wait <= 0 {
			wait = 30*time.Second + 10*time.Second
			if st.Record != nil && st.Record.GraceMS > 0 {
				wait = time.Duration(st.Record.GraceMS)*time.Millisecond + 10*time.Second
			}
		}
		s.deadlines[i] = start.Add(wait)
		s.term = append(s.term, strconv.Itoa(st.PID))
	}
	return nil
}

// stop signals the running workers and waits for them to go.
func (c *Conn) stop(ctx context.Context, s *stopping) error {
	dir, ids, read, out, deadlines, start := s.dir, s.ids, s.read, s.out, s.deadlines, s.start
	if err := c.signal(ctx, "TERM", s.term); err != nil {
		return err
	}
	// Wait for each to go, escalating to SIGKILL past its deadline.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		pending, kill := 0, []string(nil)
		for i, id := range ids {
			s := &out[i]
			if !s.WasRunning || s.TookMS > 0 || s.Error != "" {
				continue
			}
			if !processState(read, dir, id).Running {
				s.TookMS = max(1, time.Since(start).Milliseconds())
				c.removeRecord(dir, id)
				continue
			}
			pending++
			if time.Now().After(deadlines[i]) && !s.Killed {
				s.Killed = true
				kill = append(kill, strconv.Itoa(s.PID))
			}
			if s.Killed && time.Now().After(deadlines[i].Add(10*time.Second)) {
				s.Error = fmt.Sprintf("pid %d survived SIGKILL for 10s", s.PID)
			}
		}
		if len(kill) > 0 {
			if err := c.signal(ctx, "KILL", kill); err != nil {
				return err
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// signal sends a signal to pids with the node's kill command. A pid that
// exited meanwhile makes kill fail; that is the goal reached, so its
// status is ignored and the caller's next look decides.
func (c *Conn) signal(ctx context.Context, sig string, pids []string) error {
	_, err := c.Output(ctx, append([]string{"kill", "-s", sig}, pids...), nil)
	if _, ok := err.(*ExitError); ok {
		return nil
	}
	return err
}

func (c *Conn) removeRecord(dir, id string) {
	if sc, err := c.SFTP(); err == nil {
		_ = sc.Remove(metaPath(dir, id))
		_ = sc.Remove(pidPath(dir, id))
	}
}

// allWorkerIDs lists the node's workers, then the ids of any other pid
// files (workers of an earlier, larger max_workers).
func (c *Conn) allWorkerIDs(dir string) []string {
	ids := c.t.WorkerIDs()
	sc, err := c.SFTP()
	if err != nil {
		return ids
	}
	entries, err := sc.ReadDir(path.Join(dir, runDir))
	if err != nil {
		return ids
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	for _, e := range entries {
		name := e.Name()
		if path.Ext(name) != ".pid" {
			continue
		}
		id := name[:len(name)-len(".pid")]
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}
