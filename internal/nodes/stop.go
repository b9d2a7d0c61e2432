package nodes

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
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
	// Supervisor is the kind of the worker's supervisor, stopped first so
	// that it does not start the worker again: SupervisorPID is its
	// process (pampa), Unit its unit (systemd, which stops the worker
	// itself, with the unit's TimeoutStopSec).
	Supervisor    string `json:"supervisor,omitempty"`
	SupervisorPID int    `json:"supervisor_pid,omitempty"`
	Unit          string `json:"unit,omitempty"`
}

// Stop stops workers gracefully. Their supervisors go first, so that none
// starts its worker again: Pampa's own get SIGTERM (SIGKILL after 5s),
// systemd units are stopped and disabled, which stops their workers.
// Then each other worker gets SIGTERM, by the pid in its pid file once
// the process is confirmed to be that worker (see processState), and
// SIGKILL if it is still there after timeout (0: its grace period plus
// 10s). Stopping a stopped worker is not an error. ids default to all of
// the node's workers, any other pid file found, and its node dispatcher
// (<node>.0), which stops as a worker does, its workers with it.
func (c *Conn) Stop(ctx context.Context, ids []string, timeout time.Duration) ([]Stopped, error) {
	var sv supervisors
	if err := c.bounded(ctx, "stop the supervisors", func(ctx context.Context) error { return c.stopSupervisors(ctx, &sv, ids) }); err != nil {
		return nil, err
	}
	if len(sv.units) > 0 {
		err := c.boundedFor(ctx, c.opts.CommandTimeout+sv.longest+15*time.Second, "stop the systemd units", func(ctx context.Context) error {
			return c.stopUnits(ctx, &sv)
		})
		if err != nil {
			return nil, err
		}
	}
	var rest []string
	for _, id := range sv.ids {
		if _, ok := sv.done[id]; !ok {
			rest = append(rest, id)
		}
	}
	var s stopping
	var err error
	if len(rest) > 0 {
		err = c.bounded(ctx, "stop", func(context.Context) error { return c.prepareStop(&s, rest, timeout) })
	}
	if err == nil && len(s.term) > 0 {
		// Waiting takes as long as the longest grace period, and then some.
		longest := time.Duration(0)
		for _, d := range s.deadlines {
			longest = max(longest, time.Until(d))
		}
		err = c.boundedFor(ctx, c.opts.CommandTimeout+longest+15*time.Second, "stop", func(ctx context.Context) error {
			return c.stop(ctx, &s)
		})
	}
	return c.withMembers(sv.merge(s.out), sv.nd), err
}

// withMembers explains the workers of a node dispatcher that was
// running, which have no process of their own to stop.
func (c *Conn) withMembers(out []Stopped, nd *WorkerProcess) []Stopped {
	if nd == nil || nd.Members == 0 {
		return out
	}
	stopped := false
	for _, s := range out {
		if s.ID == nd.ID && s.WasRunning && s.Error == "" {
			stopped = true
		}
	}
	for i, s := range out {
		if s.WasRunning || s.Error != "" || !c.t.HasWorker(s.ID) {
			continue
		}
		if k, _ := strconv.Atoi(strings.TrimPrefix(s.ID, c.t.Name+".")); k < 1 || k > nd.Members {
			continue
		}
		if stopped {
			out[i].Why = fmt.Sprintf("runs in the node dispatcher %s, stopped with it", nd.ID)
		} else {
			out[i].Why = fmt.Sprintf("has no process of its own: it runs in the node dispatcher %s (pid %d), which `nodes stop --worker %s` stops with all its workers (`drain %s` gives it no more tasks)",
				nd.ID, nd.PID, nd.ID, s.ID)
		}
	}
	return out
}

// supervisors are what a stop found and did of the workers' supervisors.
type supervisors struct {
	dir     string
	ids     []string
	pampa   map[string]int              // the supervisor's pid, by worker
	units   map[string]*SupervisorState // systemd units, by worker
	longest time.Duration               // the longest stop timeout of a unit
	done    map[string]Stopped          // workers stopped with their unit
	nd      *WorkerProcess              // the node dispatcher's record, while it runs
}

// merge lists every worker's outcome in the order of ids.
func (sv *supervisors) merge(out []Stopped) []Stopped {
	by := map[string]Stopped{}
	for _, s := range out {
		by[s.ID] = s
	}
	var all []Stopped
	for _, id := range sv.ids {
		s, ok := sv.done[id]
		if !ok {
			s = by[id]
			s.ID = id
			if pid, ok := sv.pampa[id]; ok {
				s.Supervisor, s.SupervisorPID = SupervisorPampa, pid
			}
		}
		all = append(all, s)
	}
	return all
}

// workerFiles reads the node's files of the workers ids, or, with none,
// of every worker the node has files of (allWorkerIDs).
func (c *Conn) workerFiles(ids []string) (read readFunc, dir string, _ []string, err error) {
	sc, err := c.SFTP()
	if err != nil {
		return nil, "", nil, err
	}
	if dir, _, err = c.Dir(); err != nil {
		return nil, "", nil, err
	}
	if len(ids) == 0 {
		ids = c.allWorkerIDs(dir)
	}
	return sftpRead(sc), dir, ids, nil
}

// stopSupervisors finds the workers' supervisors and stops Pampa's own,
// waiting for each to be gone.
func (c *Conn) stopSupervisors(ctx context.Context, sv *supervisors, ids []string) error {
	read, dir, ids, err := c.workerFiles(ids)
	if err != nil {
		return err
	}
	sv.dir, sv.ids = dir, ids
	sv.pampa, sv.units, sv.done = map[string]int{}, map[string]*SupervisorState{}, map[string]Stopped{}
	if st := processState(read, dir, c.t.NodeDispatcherID()); st.Running {
		sv.nd = st.Record
	}
	var pids []string
	for _, id := range ids {
		st := supervisorState(read, dir, id)
		switch {
		case st == nil:
		case st.Kind == SupervisorSystemd && st.Unit != "":
			sv.units[id] = st
			grace := 30 * time.Second
			if rec, err := readRecord(read, dir, id); err == nil && rec.GraceMS > 0 {
				grace = time.Duration(rec.GraceMS) * time.Millisecond
			}
			sv.longest = max(sv.longest, grace+10*time.Second)
		case st.Alive:
			sv.pampa[id] = st.PID
			pids = append(pids, strconv.Itoa(st.PID))
		}
	}
	if len(pids) == 0 {
		return nil
	}
	alive := func() []string {
		var left []string
		for id, pid := range sv.pampa {
			if st := supervisorState(read, dir, id); st != nil && st.Alive && st.PID == pid {
				left = append(left, strconv.Itoa(pid))
			}
		}
		return left
	}
	return c.signalUntilGone(ctx, pids, alive)
}

// signalUntilGone sends SIGTERM to pids, then SIGKILL to those alive
// still lists after 5s; it fails if any outlives that by 5s more.
func (c *Conn) signalUntilGone(ctx context.Context, pids []string, alive func() []string) error {
	if err := c.signal(ctx, "TERM", pids); err != nil {
		return err
	}
	start, killed := time.Now(), false
	for {
		left := alive()
		switch {
		case len(left) == 0:
			return nil
		case time.Since(start) > 10*time.Second:
			return fmt.Errorf("supervisor pid %s survived SIGKILL for 5s", strings.Join(left, ", "))
		case time.Since(start) > 5*time.Second && !killed:
			killed = true
			if err := c.signal(ctx, "KILL", left); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopUnits stops and disables the systemd units: systemd sends the
// worker SIGTERM, then SIGKILL after the unit's TimeoutStopSec, and
// neither restarts it nor starts it at boot.
func (c *Conn) stopUnits(ctx context.Context, sv *supervisors) error {
	var sts []*SupervisorState
	for _, st := range sv.units {
		sts = append(sts, st)
	}
	if _, err := c.askUnits(ctx, sts); err != nil {
		return err
	}
	start := time.Now()
	for _, group := range byManager(sts) {
		argv := append(append(append([]string{}, group[0].Systemctl...), "disable", "--now", "--"), unitsOf(group)...)
		if _, err := c.Output(ctx, argv, nil); err != nil {
			return fmt.Errorf("systemctl disable --now: %w", err)
		}
	}
	took := max(1, time.Since(start).Milliseconds())
	before := map[string]SupervisorState{}
	for id, st := range sv.units {
		before[id] = *st
	}
	after, err := c.askUnits(ctx, sts)
	for id, st := range sv.units {
		b := before[id]
		s := Stopped{ID: id, PID: b.WorkerPID, WasRunning: b.Alive, Supervisor: SupervisorSystemd, Unit: st.Unit}
		if b.Alive {
			s.TookMS, s.Killed = took, after[st.Unit].Result == "timeout"
		} else {
			s.Why = "its unit " + st.Unit + " was " + b.State
		}
		c.removeRecord(sv.dir, id)
		sv.done[id] = s
	}
	return err
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
	read, dir, ids, err := c.workerFiles(ids)
	if err != nil {
		return err
	}
	s.dir, s.ids, s.read, s.start = dir, ids, read, time.Now()
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

// allWorkerIDs lists the node's node dispatcher, when it has a pid file
// or a supervisor record, then the node's workers, then the ids of any
// other pid files (workers of an earlier, larger max_workers).
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
	nd := c.t.NodeDispatcherID()
	for _, e := range entries {
		name := e.Name()
		if name == nd+superExt && !seen[nd] {
			seen[nd] = true
			ids = append([]string{nd}, ids...)
		}
		if path.Ext(name) != ".pid" {
			continue
		}
		id := name[:len(name)-len(".pid")]
		switch {
		case seen[id]:
		case id == nd:
			seen[id] = true
			ids = append([]string{nd}, ids...)
		default:
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// Workers lists the ids of the node's workers and of any other worker a
// pid file names, leaving out its node dispatcher: what a restart of the
// workers stops.
func (c *Conn) Workers(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.bounded(ctx, "list the workers", func(context.Context) error {
		dir, _, err := c.Dir()
		if err != nil {
			return err
		}
		for _, id := range c.allWorkerIDs(dir) {
			if id != c.t.NodeDispatcherID() {
				ids = append(ids, id)
			}
		}
		return nil
	})
	return ids, err
}
