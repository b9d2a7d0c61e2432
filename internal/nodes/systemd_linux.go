//go:build linux

package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The node side of supervision by systemd: finding out whether the SSH
// user can have it, and writing, enabling and starting a worker's unit.
// Untested against a real systemd: the tests' machines run none as PID 1.
// What can be checked without one (the decisions, the unit files, the
// parsing of systemctl's answers) is, in systemd_test.go.

// probeSystemd finds out what systemd offers this user, as far as want
// needs: nothing when Pampa's own supervisor is asked for. Lingering is
// enabled when it is off and loginctl allows it.
func probeSystemd(want string) systemdProbe {
	var p systemdProbe
	if want == SupervisorPampa {
		return p
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return p
	}
	p.PID1 = true
	bin, err := exec.LookPath("systemctl")
	if err != nil {
		return p
	}
	p.Systemctl, p.UID, p.User = bin, os.Getuid(), currentUser()
	if p.Root = p.UID == 0; p.Root {
		p.Controllers = cgroupControllers("/sys/fs/cgroup")
		if p.Controllers == nil {
			// cgroup v1: the system manager maps these settings to the v1
			// controllers; the read-back says whether they hold.
			p.Controllers = []string{"cpu", "io", "memory"}
		}
		return p
	}
	p.RuntimeDir = os.Getenv("XDG_RUNTIME_DIR")
	if p.RuntimeDir == "" {
		p.RuntimeDir = "/run/user/" + strconv.Itoa(p.UID)
	}
	p.UnitDir = userUnitDir()
	if _, err := runFor(10*time.Second, "env", "XDG_RUNTIME_DIR="+p.RuntimeDir, bin, "--user", "show-environment"); err != nil {
		p.ManagerErr = err.Error()
		return p
	}
	linger := "/var/lib/systemd/linger/" + p.User
	if _, err := os.Stat(linger); err == nil {
		p.Lingering = true
	} else if _, err := runFor(10*time.Second, "loginctl", "enable-linger", p.User); err != nil {
		p.LingerErr = err.Error()
	} else if _, err := os.Stat(linger); err == nil {
		p.Lingering, p.LingerEnabled = true, true
	} else {
		p.LingerErr = "it succeeded, but " + linger + " is still missing"
	}
	p.Controllers = cgroupControllers(fmt.Sprintf("/sys/fs/cgroup/user.slice/user-%d.slice/user@%d.service", p.UID, p.UID))
	return p
}

// userUnitDir is where the user's systemd manager reads unit files.
func userUnitDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return path.Join(d, "systemd", "user")
	}
	home, _ := os.UserHomeDir()
	return path.Join(home, ".config", "systemd", "user")
}

// cgroupControllers lists the controllers a cgroup v2 directory offers its
// children; nil when it is not one.
func cgroupControllers(dir string) []string {
	data, err := os.ReadFile(path.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil
	}
	return append([]string{}, strings.Fields(string(data))...)
}

// runFor runs a command with a time bound; the error holds its output.
func runFor(timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		if text := strings.TrimSpace(string(out)); text != "" {
			err = fmt.Errorf("%v: %s", err, tailLines(out, 3))
		}
		return out, err
	}
	return out, nil
}

// systemctl runs one systemctl command against the manager.
func (m *systemdManager) systemctl(args ...string) ([]byte, error) {
	out, err := runFor(time.Minute, append(append([]string{}, m.Systemctl...), args...)...)
	if err != nil {
		return out, fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// unitOf asks the manager for one unit's state.
func (m *systemdManager) unitOf(unit string) (unitState, error) {
	out, err := runFor(time.Minute, showCommand(m.Systemctl, []string{unit})...)
	if err != nil {
		return unitState{}, fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	u, ok := parseShow(out)[unit]
	if !ok {
		return unitState{}, fmt.Errorf("systemctl show %s: no such unit in its answer", unit)
	}
	return u, nil
}

// askSystemd fills a systemd-supervised worker's state from its manager.
func askSystemd(st *SupervisorState) {
	out, err := runFor(time.Minute, showCommand(st.Systemctl, []string{st.Unit})...)
	if err != nil {
		st.Why = "systemctl show: " + err.Error()
		return
	}
	applyShow(out, []*SupervisorState{st})
}

// launchUnit writes the worker's unit, enables it for boot and starts it.
// The unit runs the worker through the launcher, for the release's
// environment, and the exec step, for the limits systemd does not apply
// and for the pid file.
func (s *starter) launchUnit(w *WorkerStart, spec execSpec) (supervised, error) {
	req, m := s.req, s.sd
	spec.Record, spec.Dir = &WorkerProcess{ID: w.ID, Release: req.Release, GraceMS: req.GraceMS, Members: req.NodeWorkers}, req.Dir
	unit := unitName(req.Dir, w.ID)
	launch := []string{"/bin/sh", "-c", launcher, "pampa-launcher", path.Join(s.relDir, envName)}
	bin := path.Join(s.relDir, s.rel.Program)
	u := unitSpec{
		Description: fmt.Sprintf("Pampa %s %s (release %s, in %s)", kindOf(w.ID), w.ID, req.Release, req.Dir),
		Dir:         req.Dir, Env: s.plan.env, Out: OutPath(req.Dir, w.ID),
		Command:     append(append([]string{}, launch...), s.workerCommand(w.ID, spec)...),
		StopPost:    append(append([]string{}, launch...), bin, "nodes", "agent", "exited", "--id", w.ID, req.Dir),
		StopTimeout: time.Duration(req.GraceMS)*time.Millisecond + 10*time.Second,
		Restart:     req.Restart, Props: systemdProperties(s.plan), WantedBy: m.wantedBy(),
	}
	if err := os.MkdirAll(m.UnitDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeAtomic(m.unitPath(unit), []byte(u.text())); err != nil {
		return nil, fmt.Errorf("write the unit: %w", err)
	}
	if _, err := m.systemctl("daemon-reload"); err != nil {
		return nil, err
	}
	_, _ = m.systemctl("reset-failed", unit) // a unit that gave up before starts afresh
	if _, err := m.systemctl("enable", unit); err != nil {
		w.Warning = fmt.Sprintf("it will not start again after a reboot: %v", err)
	}
	rec := Supervision{Kind: SupervisorSystemd, Unit: unit, Systemctl: m.Systemctl, StartedAt: time.Now().UTC(), State: SuperRunning, Restart: req.Restart}
	if err := writeJSON(superPath(req.Dir, w.ID), rec); err != nil {
		return nil, err
	}
	if _, err := m.systemctl("start", unit); err != nil {
		_, _ = m.systemctl("disable", unit)
		return nil, err
	}
	return &unitRun{m: m, unit: unit, settleFor: time.Duration(req.SettleMS) * time.Millisecond}, nil
}

// unitRun is a worker handed to systemd.
type unitRun struct {
	m         *systemdManager
	unit      string
	settleFor time.Duration
}

// settle polls the unit until its main process has run the worker's
// program for the settle time, or has ended (systemd would restart a
// worker that cannot start: the caller stops it instead, and reports it).
func (u *unitRun) settle(ctx context.Context, within time.Duration) (int, *ExitInfo, error) {
	deadline := time.Now().Add(within)
	pid, since := 0, time.Time{}
	for {
		st, err := u.m.unitOf(u.unit)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case st.SubState == "auto-restart" || st.NRestarts > 0 || !st.running():
			if exit := st.exit(); exit != nil {
				return 0, exit, nil
			}
			return 0, nil, fmt.Errorf("its unit %s is %s/%s (%s)", u.unit, st.ActiveState, st.SubState, st.Result)
		case st.MainPID > 0 && execDone(st.MainPID) && st.MainPID != pid:
			pid, since = st.MainPID, time.Now()
		case pid > 0 && time.Since(since) >= u.settleFor:
			return pid, nil, nil
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("its unit %s did not run the worker within %s: stopped it", u.unit, within)
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// abandon stops and disables the unit: systemd stops the worker with it.
func (u *unitRun) abandon(int) { _, _ = u.m.systemctl("disable", "--now", u.unit) }

// recordExit notes in a systemd-supervised worker's record how it ended.
func recordExit(dir, id string, exit *ExitInfo) error {
	data, err := os.ReadFile(superPath(dir, id))
	if err != nil {
		return err
	}
	var rec Supervision
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("unreadable %s: %w", superPath(dir, id), err)
	}
	if exit == nil || rec.Kind != SupervisorSystemd {
		return nil
	}
	rec.LastExit = exit
	return writeJSON(superPath(dir, id), rec)
}
