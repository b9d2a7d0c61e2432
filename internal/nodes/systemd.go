package nodes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
)

// Supervision by systemd: one unit file per worker, written under the
// manager's unit directory, enabled (so that it starts at boot) and
// started. systemd restarts the worker on failure with a growing delay,
// gives up past its start limit, and applies the limits as cgroup v2
// settings of the unit. Kept free of system calls, so that tests can
// check every decision and every line written.

// systemdManager is a systemd manager that supervises workers: the
// system's (as root), or the SSH user's, which must linger, so that it
// outlives the SSH sessions and starts at boot.
type systemdManager struct {
	User bool
	Name string // the user
	// Systemctl reaches the manager, from the agent or over SSH.
	Systemctl []string
	UnitDir   string
	// Controllers are the cgroup v2 controllers the manager may use for
	// its units; nil when the node has no cgroup v2 hierarchy for them.
	Controllers []string
}

func (m *systemdManager) describe() string {
	if m.User {
		return "the systemd user manager of " + m.Name
	}
	return "the systemd system manager"
}

// wantedBy is the target whose start, at boot, starts the units.
func (m *systemdManager) wantedBy() string {
	if m.User {
		return "default.target"
	}
	return "multi-user.target"
}

// unitWhy says why the manager cannot apply a limit on res to its units,
// or "" when it can.
func (m *systemdManager) unitWhy(res string) string {
	ctl := v2Name(res)
	switch {
	case hasWord(strings.Join(m.Controllers, " "), ctl):
		return ""
	case m.Controllers == nil:
		return "systemd sets limits through cgroup v2, and this node has no cgroup v2 " + ctl + " controller (cgroup v1 or a hybrid layout)"
	case m.User:
		return fmt.Sprintf("the %s controller is not delegated to %s (an administrator can add `Delegate=cpu io memory pids` under [Service] in /etc/systemd/system/user@.service.d/delegate.conf)", ctl, m.describe())
	}
	return "the " + ctl + " controller is not enabled in the root cgroup"
}

// systemdProbe is what the agent found out about the node's systemd; the
// fields after a failed check are left zero.
type systemdProbe struct {
	PID1      bool   // /run/systemd/system exists: PID 1 is systemd
	Systemctl string // its path; "" when not installed
	Root      bool
	User      string
	UID       int
	// UnitDir is where the user's units go (~/.config/systemd/user).
	UnitDir    string
	RuntimeDir string // XDG_RUNTIME_DIR, or /run/user/UID
	// ManagerErr says why `systemctl --user show-environment` failed.
	ManagerErr string
	Lingering  bool
	// LingerEnabled is set when the agent enabled lingering itself;
	// LingerErr says why `loginctl enable-linger` failed, when tried.
	LingerEnabled bool
	LingerErr     string
	Controllers   []string
}

// chooseSupervisor picks how the node supervises its workers: want is
// SupervisorSystemd, SupervisorPampa or "" (systemd where usable, else
// Pampa's own). The manager is nil unless systemd supervises.
func chooseSupervisor(want string, p systemdProbe) (SupervisorPlan, *systemdManager, error) {
	if want == SupervisorPampa {
		return SupervisorPlan{Kind: SupervisorPampa, Why: "asked for (--supervisor pampa)"}, nil, nil
	}
	if why := systemdWhyNot(p); why != "" {
		if want == SupervisorSystemd {
			return SupervisorPlan{}, nil, fmt.Errorf("systemd cannot supervise the workers on this node: %s", why)
		}
		return SupervisorPlan{Kind: SupervisorPampa, Why: "systemd is not used: " + why}, nil, nil
	}
	m := &systemdManager{Systemctl: []string{p.Systemctl}, UnitDir: "/etc/systemd/system", Controllers: p.Controllers, Name: p.User}
	if !p.Root {
		m.User, m.UnitDir = true, p.UnitDir
		m.Systemctl = []string{"env", "XDG_RUNTIME_DIR=" + p.RuntimeDir, p.Systemctl, "--user"}
	}
	plan := SupervisorPlan{Kind: SupervisorSystemd, Manager: m.describe(), Boot: true}
	if p.LingerEnabled {
		plan.Notes = append(plan.Notes, fmt.Sprintf("enabled lingering for %s (loginctl enable-linger): its systemd manager runs without a session, and from boot", p.User))
	}
	return plan, m, nil
}

// systemdWhyNot says why systemd cannot supervise workers, or "".
func systemdWhyNot(p systemdProbe) string {
	switch {
	case !p.PID1:
		return "PID 1 is not systemd (/run/systemd/system is missing)"
	case p.Systemctl == "":
		return "systemctl is not installed"
	case p.Root:
		return ""
	case p.ManagerErr != "":
		return fmt.Sprintf("%s's systemd user manager does not answer (systemctl --user show-environment: %s)", p.User, p.ManagerErr)
	case !p.Lingering:
		return fmt.Sprintf("%s does not linger, so its systemd user manager stops with the last SSH session, and the workers with it; "+
			"`loginctl enable-linger %s` was refused (%s): an administrator can run it", p.User, p.User, p.LingerErr)
	}
	return ""
}

// unitName is worker id's unit: the id, escaped as systemd-escape does,
// and a digest of the node directory, so that two node directories of one
// user never share a unit.
func unitName(dir, id string) string {
	sum := sha256.Sum256([]byte(dir))
	return "pampa-" + unitEscape(id) + "-" + hex.EncodeToString(sum[:3]) + ".service"
}

// unitEscape escapes s for a unit name: bytes other than ASCII letters,
// digits, ':', '_' and '.' (and a leading '.') become \xNN.
func unitEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || (c == '.' && i > 0)
		if ok {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// unitSpec is what a worker's unit file says.
type unitSpec struct {
	Description string
	Dir         string
	// Command is ExecStart, and StopPost ExecStopPost (its failure is
	// ignored); the first argument of each must be an absolute path.
	Command  []string
	StopPost []string
	Env      []string // NAME=VALUE
	Out      string   // standard output and error are appended to it
	// StopTimeout is how long a stop waits after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	Restart     RestartPolicy
	// Props are the resource-control settings (MemoryMax=...).
	Props    []string
	WantedBy string
}

// text is the unit file.
func (u unitSpec) text() string {
	r := u.Restart.withDefaults()
	var b strings.Builder
	b.WriteString("# Written by `pampa nodes start`, at each start of the worker; `pampa nodes stop` disables it.\n")
	fmt.Fprintf(&b, "[Unit]\nDescription=%s\n", specifierEscape(u.Description))
	// The first start and Limit restarts are Limit+1 starts: the next one
	// within the window is refused, and the unit fails.
	fmt.Fprintf(&b, "StartLimitIntervalSec=%s\nStartLimitBurst=%d\n\n", spanMS(r.Window), r.Limit+1)
	b.WriteString("[Service]\nType=simple\n")
	fmt.Fprintf(&b, "WorkingDirectory=%s\n", specifierEscape(u.Dir))
	fmt.Fprintf(&b, "ExecStart=%s\n", execLine(u.Command))
	if len(u.StopPost) > 0 {
		// After each end of the worker: records how it ended, which
		// systemd forgets once it has started it again.
		fmt.Fprintf(&b, "ExecStopPost=-%s\n", execLine(u.StopPost))
	}
	for _, e := range u.Env {
		fmt.Fprintf(&b, "Environment=%s\n", quoteValue(specifierEscape(e)))
	}
	fmt.Fprintf(&b, "StandardOutput=append:%s\nStandardError=append:%s\n", specifierEscape(u.Out), specifierEscape(u.Out))
	// The delay grows from RestartSec to RestartMaxDelaySec in
	// RestartSteps steps (systemd 254 and later; earlier ones keep
	// RestartSec and log that they ignore the other two).
	fmt.Fprintf(&b, "Restart=on-failure\nRestartSec=%s\nRestartSteps=%d\nRestartMaxDelaySec=%s\n", spanMS(r.Delay), restartSteps(r), spanMS(r.MaxDelay))
	fmt.Fprintf(&b, "KillSignal=SIGTERM\nTimeoutStopSec=%s\n", spanMS(u.StopTimeout))
	for _, p := range u.Props {
		b.WriteString(p + "\n")
	}
	fmt.Fprintf(&b, "\n[Install]\nWantedBy=%s\n", u.WantedBy)
	return b.String()
}

// restartSteps is how many steps of doubling lead from Delay to MaxDelay.
func restartSteps(r RestartPolicy) int {
	if r.MaxDelay <= r.Delay {
		return 0
	}
	return int(math.Ceil(math.Log2(float64(r.MaxDelay) / float64(r.Delay))))
}

// spanMS writes a duration as a systemd time span, in whole milliseconds.
func spanMS(d time.Duration) string { return strconv.FormatInt(max(1, d.Milliseconds()), 10) + "ms" }

// execLine is a command line for ExecStart= and the like.
func execLine(argv []string) string {
	args := []string{argv[0]}
	for _, a := range argv[1:] {
		args = append(args, execArg(a))
	}
	return strings.Join(args, " ")
}

// execArg quotes one argument of ExecStart=: in double quotes, with '\'
// and '"' escaped and control characters as C escapes, and '%' and '$'
// doubled, since systemd expands specifiers and variables even inside
// quotes.
func execArg(a string) string {
	return quoteValue(strings.ReplaceAll(specifierEscape(a), "$", "$$"))
}

// quoteValue puts s in double quotes, escaping as systemd's C-style
// unquoting expects.
func quoteValue(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func specifierEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// unitState is one unit as `systemctl show` reports it.
type unitState struct {
	Unit, LoadState, ActiveState, SubState, Result string
	MainPID, NRestarts                             int
	// ExecMainCode is how the main process last ended (1 exited, 2
	// killed, 3 dumped core), ExecMainStatus its status or signal.
	ExecMainCode, ExecMainStatus int
	ExecMainExit                 time.Time
}

// showProps are the properties systemdStates asks for.
var showProps = "Id,LoadState,ActiveState,SubState,Result,MainPID,NRestarts,ExecMainCode,ExecMainStatus,ExecMainExitTimestamp"

// showCommand asks the manager for the state of units.
func showCommand(systemctl []string, units []string) []string {
	return append(append(append([]string{}, systemctl...), "show", "-p", showProps, "--"), units...)
}

// parseShow reads `systemctl show` output: one block of NAME=VALUE lines
// per unit, blocks separated by blank lines.
func parseShow(data []byte) map[string]unitState {
	out := map[string]unitState{}
	for _, block := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
		var u unitState
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			n, _ := strconv.Atoi(v)
			switch k {
			case "Id":
				u.Unit = v
			case "LoadState":
				u.LoadState = v
			case "ActiveState":
				u.ActiveState = v
			case "SubState":
				u.SubState = v
			case "Result":
				u.Result = v
			case "MainPID":
				u.MainPID = n
			case "NRestarts":
				u.NRestarts = n
			case "ExecMainCode":
				u.ExecMainCode = n
			case "ExecMainStatus":
				u.ExecMainStatus = n
			case "ExecMainExitTimestamp":
				u.ExecMainExit = parseSystemdTime(v)
			}
		}
		if u.Unit != "" {
			out[u.Unit] = u
		}
	}
	return out
}

// parseSystemdTime reads a timestamp as systemctl prints it ("Tue
// 2024-05-14 10:01:02 UTC"); zero when empty or unreadable.
func parseSystemdTime(v string) time.Time {
	t, err := time.Parse("Mon 2006-01-02 15:04:05 MST", strings.TrimSpace(v))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// running reports a unit whose worker runs or is about to restart.
func (u unitState) running() bool {
	return u.ActiveState == "active" || u.ActiveState == "activating" || u.ActiveState == "reloading" || u.SubState == "auto-restart"
}

// exit is how the unit's main process last ended; nil if it has not.
func (u unitState) exit() *ExitInfo {
	if u.ExecMainCode <= 0 {
		return nil
	}
	e := ExitInfo{At: u.ExecMainExit, Code: u.ExecMainStatus}
	if u.ExecMainCode != 1 { // killed, or dumped core
		e.Code, e.Signal = 0, signalName(u.ExecMainStatus)
	}
	return &e
}

// apply fills a systemd-supervised worker's state from its unit's. The
// last exit is systemd's while the unit is down, else the one the unit's
// ExecStopPost recorded.
func (u unitState) apply(st *SupervisorState) {
	st.Restarts, st.WorkerPID, st.Alive = u.NRestarts, u.MainPID, u.running()
	if e := u.exit(); e != nil && !u.ExecMainExit.IsZero() {
		st.LastExit = e
	}
	switch {
	case u.LoadState == "not-found":
		st.State, st.Why = SuperStopped, "its unit "+u.Unit+" is gone"
	case u.SubState == "auto-restart":
		st.State = SuperRestarting
	case st.Alive:
		st.State = SuperRunning
	case u.ActiveState == "failed" && u.Result == "timeout":
		st.State, st.Reason = SuperStopped, "stopped: its worker outlived TimeoutStopSec and was killed"
	case u.ActiveState == "failed":
		st.State, st.GaveUp = SuperGaveUp, true
		st.Reason = "the unit failed (" + u.Result + "): not restarted until the next `nodes start`"
		if u.Result == "start-limit-hit" {
			st.Reason = fmt.Sprintf("crash loop: systemd's start limit was hit (StartLimitBurst=%d within StartLimitIntervalSec=%s); not restarted until the next `nodes start`",
				st.Restart.Limit+1, st.Restart.Window)
		}
	case st.LastExit != nil && st.LastExit.Clean():
		st.State = SuperExited
	default:
		st.State = SuperStopped
	}
}

// unitPath is where a unit file goes.
func (m *systemdManager) unitPath(unit string) string { return path.Join(m.UnitDir, unit) }

// byManager groups systemd-supervised workers by the manager that runs
// their units, for one systemctl command per manager.
func byManager(sts []*SupervisorState) [][]*SupervisorState {
	var groups [][]*SupervisorState
	index := map[string]int{}
	for _, st := range sts {
		if st == nil || st.Kind != SupervisorSystemd || st.Unit == "" || len(st.Systemctl) == 0 {
			continue
		}
		k := strings.Join(st.Systemctl, "\x00")
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], st)
	}
	return groups
}

func unitsOf(group []*SupervisorState) []string {
	var out []string
	for _, st := range group {
		out = append(out, st.Unit)
	}
	return out
}

// applyShow fills the states of a group of workers from their manager's
// `systemctl show` answer, and returns the units' states.
func applyShow(out []byte, group []*SupervisorState) map[string]unitState {
	states := parseShow(out)
	for _, st := range group {
		if u, ok := states[st.Unit]; ok {
			u.apply(st)
		} else {
			st.Why = "systemctl show says nothing of " + st.Unit
		}
	}
	return states
}

// exitFromEnv is how a unit's main process ended, from the $EXIT_CODE
// ("exited", "killed", "dumped") and $EXIT_STATUS (a status, or a signal
// such as "KILL") systemd gives ExecStopPost; nil when they say nothing.
func exitFromEnv(code, status string, at time.Time) *ExitInfo {
	e := &ExitInfo{At: at.UTC()}
	n, err := strconv.Atoi(status)
	switch {
	case code == "exited" && err == nil:
		e.Code = n
	case (code == "killed" || code == "dumped") && err == nil:
		e.Signal = signalName(n)
	case (code == "killed" || code == "dumped") && status != "":
		e.Signal = "SIG" + strings.TrimPrefix(status, "SIG")
	default:
		return nil
	}
	return e
}
