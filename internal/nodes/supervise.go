package nodes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"
)

// Every worker `start` runs is supervised: by a unit of the node's systemd
// (as root, or as a user whose manager lingers), or else by a small
// supervisor of Pampa's own, the deployed program run as
// `<program> nodes agent supervise`, one per worker. A supervisor restarts
// its worker when it exits abnormally (a non-zero status or a signal),
// after a delay that doubles with each abnormal exit within the restart
// window, and gives up once the worker has been restarted Limit times
// within that window: a crash loop is not hidden by endless restarts. A
// worker that exits with status 0 (a graceful stop) is not restarted.

// Supervisor kinds.
const (
	SupervisorSystemd = "systemd"
	SupervisorPampa   = "pampa"
)

// Supervisor states, as recorded in run/<id>.super.json and shown by
// status.
const (
	SuperRunning    = "running"    // the worker runs
	SuperRestarting = "restarting" // waiting out the delay before the next start
	SuperGaveUp     = "gave-up"    // a crash loop: not restarted until the next `nodes start`
	SuperStopped    = "stopped"    // stopped by `nodes stop` (or another signal)
	SuperExited     = "exited"     // the worker exited with status 0, or failed at start: not restarted
)

// RestartPolicy says how a supervisor restarts a worker that exited
// abnormally.
type RestartPolicy struct {
	// Delay is the wait before the first restart; it doubles with each
	// abnormal exit within Window, up to MaxDelay.
	Delay    time.Duration `json:"delay_ns"`
	MaxDelay time.Duration `json:"max_delay_ns"`
	// Limit is how many restarts Window may hold: the next abnormal exit
	// within it makes the supervisor give up.
	Limit  int           `json:"limit"`
	Window time.Duration `json:"window_ns"`
}

// DefaultRestartPolicy: 1s doubling to 30s; 5 restarts within 60s at most.
var DefaultRestartPolicy = RestartPolicy{Delay: time.Second, MaxDelay: 30 * time.Second, Limit: 5, Window: time.Minute}

// withDefaults fills the fields left zero from DefaultRestartPolicy.
func (p RestartPolicy) withDefaults() RestartPolicy {
	d := DefaultRestartPolicy
	if p.Delay <= 0 {
		p.Delay = d.Delay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = max(d.MaxDelay, p.Delay)
	}
	p.MaxDelay = max(p.MaxDelay, p.Delay)
	if p.Limit <= 0 {
		p.Limit = d.Limit
	}
	if p.Window <= 0 {
		p.Window = d.Window
	}
	return p
}

func (p RestartPolicy) String() string {
	return fmt.Sprintf("restart after %s doubling to %s, give up after %d restarts within %s", p.Delay, p.MaxDelay, p.Limit, p.Window)
}

// crashLoop keeps a worker's recent abnormal exits.
type crashLoop struct {
	p        RestartPolicy
	failures []time.Time // those within the window
}

// failed records an abnormal exit at now. It returns how long to wait
// before the restart, or giveUp once the window holds more exits than
// Limit allows restarts.
func (c *crashLoop) failed(now time.Time) (delay time.Duration, giveUp bool) {
	kept := c.failures[:0]
	for _, f := range c.failures {
		if now.Sub(f) < c.p.Window {
			kept = append(kept, f)
		}
	}
	c.failures = append(kept, now)
	n := len(c.failures)
	if n > c.p.Limit {
		return 0, true
	}
	delay = c.p.Delay
	for i := 1; i < n && delay < c.p.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, c.p.MaxDelay), false
}

// ExitInfo is how a worker process ended.
type ExitInfo struct {
	At time.Time `json:"at"`
	// Code is the exit status, when it exited; Signal names the signal
	// that ended it ("SIGKILL"), when one did.
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	// RanMS is how long it had run, when known.
	RanMS int64 `json:"ran_ms,omitempty"`
}

// Clean reports an exit with status 0: a graceful stop, not restarted.
func (e ExitInfo) Clean() bool { return e.Signal == "" && e.Code == 0 }

func (e ExitInfo) String() string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return "exit status " + strconv.Itoa(e.Code)
}

// linuxSignals names the signals of Linux (the nodes' system) by number.
var linuxSignals = [...]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
	7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
	14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
	21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF",
	28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"}

func signalName(n int) string {
	if n > 0 && n < len(linuxSignals) {
		return linuxSignals[n]
	}
	return "signal " + strconv.Itoa(n)
}

// Supervision is a worker's supervisor as recorded in run/<id>.super.json:
// by the supervisor itself (pampa), or by the agent that created the
// unit (systemd, whose manager status asks for the rest).
type Supervision struct {
	Kind string `json:"kind"`
	// PID and StartTicks are the supervisor's process (pampa).
	PID        int    `json:"pid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
	// Unit is the worker's unit, and Systemctl the command that reaches
	// its manager (systemd).
	Unit      string    `json:"unit,omitempty"`
	Systemctl []string  `json:"systemctl,omitempty"`
	StartedAt time.Time `json:"started_at"`
	State     string    `json:"state"`
	// WorkerPID is the worker's process while it runs.
	WorkerPID int `json:"worker_pid,omitempty"`
	// Restarts counts the restarts since `nodes start`.
	Restarts    int        `json:"restarts"`
	LastExit    *ExitInfo  `json:"last_exit,omitempty"`
	NextStartAt *time.Time `json:"next_start_at,omitempty"`
	// GaveUp is set once a crash loop made the supervisor stop
	// restarting; Reason says why it stopped supervising.
	GaveUp  bool          `json:"gave_up,omitempty"`
	Reason  string        `json:"reason,omitempty"`
	Restart RestartPolicy `json:"restart"`
}

// SupervisorState is a worker's supervisor as status finds it.
type SupervisorState struct {
	Supervision
	// Alive: it still supervises (pampa: its process runs; systemd: the
	// unit is active, or waiting to restart).
	Alive bool `json:"alive"`
	// Why explains a supervisor that is not alive although its record
	// says it should be, or one that could not be asked.
	Why string `json:"why,omitempty"`
}

// supervisorState reads a worker's supervisor record and, for Pampa's
// own, checks its process against /proc as processState does for the
// worker. It returns nil when the worker has no record. A systemd unit's
// state is not known here: Alive stays false until its manager is asked
// (systemdStates).
func supervisorState(read readFunc, dir, id string) *SupervisorState {
	data, err := read(superPath(dir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st := &SupervisorState{}
	if err == nil {
		err = json.Unmarshal(data, &st.Supervision)
	}
	if err != nil || st.Kind == "" {
		st.Why = fmt.Sprintf("unreadable %s", superPath(dir, id))
		return st
	}
	if st.Kind != SupervisorPampa {
		return st
	}
	why := procCheck(read, st.PID, st.StartTicks, id, "supervise")
	switch {
	case why == "":
		st.Alive = true
	case st.State == SuperRunning || st.State == SuperRestarting:
		st.Why = "the supervisor " + why + " without recording why"
	}
	return st
}
