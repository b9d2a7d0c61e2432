package nodes

// Supervision by systemd, without a systemd: which kind a node gets and
// why, the unit files written, and the reading of systemctl's answers.
// None of it has run against a real systemd (the test machines have none
// as PID 1).

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNodesChooseSupervisor(t *testing.T) {
	t.Parallel()
	user := systemdProbe{PID1: true, Systemctl: "/usr/bin/systemctl", User: "alice", UID: 1000,
		UnitDir: "/home/alice/.config/systemd/user", RuntimeDir: "/run/user/1000", Lingering: true, Controllers: []string{"cpu", "io", "memory", "pids"}}
	for _, tc := range []struct {
		name     string
		want     string
		probe    func(p *systemdProbe)
		kind     string
		says     string // in the plan's Why, the error, or the notes
		failures bool
	}{
		{"AskedForPampa", SupervisorPampa, nil, SupervisorPampa, "asked for (--supervisor pampa)", false},
		{"NoSystemd", "", func(p *systemdProbe) { *p = systemdProbe{} }, SupervisorPampa, "systemd is not used: PID 1 is not systemd (/run/systemd/system is missing)", false},
		{"NoSystemdButAsked", SupervisorSystemd, func(p *systemdProbe) { *p = systemdProbe{} }, "", "systemd cannot supervise the workers on this node: PID 1 is not systemd", true},
		{"NoSystemctl", "", func(p *systemdProbe) { p.Systemctl = "" }, SupervisorPampa, "systemctl is not installed", false},
		{"ManagerDown", "", func(p *systemdProbe) { p.ManagerErr = "Failed to connect to bus: No medium found" }, SupervisorPampa,
			"alice's systemd user manager does not answer (systemctl --user show-environment: Failed to connect to bus: No medium found)", false},
		{"NoLinger", "", func(p *systemdProbe) { p.Lingering, p.LingerErr = false, "Access denied" }, SupervisorPampa,
			"alice does not linger, so its systemd user manager stops with the last SSH session, and the workers with it; `loginctl enable-linger alice` was refused (Access denied): an administrator can run it", false},
		{"LingerEnabledNow", "", func(p *systemdProbe) { p.LingerEnabled = true }, SupervisorSystemd, "enabled lingering for alice (loginctl enable-linger)", false},
		{"User", SupervisorSystemd, nil, SupervisorSystemd, "", false},
		{"Root", "", func(p *systemdProbe) {
			*p = systemdProbe{PID1: true, Systemctl: "/bin/systemctl", Root: true, User: "root"}
		}, SupervisorSystemd, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := user
			if tc.probe != nil {
				tc.probe(&p)
			}
			plan, m, err := chooseSupervisor(tc.want, p)
			if tc.failures {
				if err == nil || !strings.Contains(err.Error(), tc.says) || m != nil {
					t.Fatalf("err = %v, manager %+v; want an error saying %q", err, m, tc.says)
				}
				return
			}
			if err != nil || plan.Kind != tc.kind || (m != nil) != (tc.kind == SupervisorSystemd) {
				t.Fatalf("plan %+v, manager %+v, err %v; want kind %s", plan, m, err, tc.kind)
			}
			if text := plan.Why + strings.Join(plan.Notes, "; "); !strings.Contains(text, tc.says) {
				t.Errorf("plan %+v does not say %q", plan, tc.says)
			}
			if tc.kind == SupervisorPampa && plan.Boot {
				t.Errorf("Pampa's own supervisor does not start workers at boot: %+v", plan)
			}
		})
	}

	// The managers: the user's is reached with its runtime directory, even
	// from an SSH session without one; root's is the system's.
	plan, m, _ := chooseSupervisor("", user)
	if !slices.Equal(m.Systemctl, []string{"env", "XDG_RUNTIME_DIR=/run/user/1000", "/usr/bin/systemctl", "--user"}) ||
		m.UnitDir != "/home/alice/.config/systemd/user" || m.wantedBy() != "default.target" || !plan.Boot || plan.Manager != "the systemd user manager of alice" {
		t.Errorf("user manager %+v, plan %+v", m, plan)
	}
	_, m, _ = chooseSupervisor("", systemdProbe{PID1: true, Systemctl: "/bin/systemctl", Root: true, User: "root"})
	if !slices.Equal(m.Systemctl, []string{"/bin/systemctl"}) || m.UnitDir != "/etc/systemd/system" || m.wantedBy() != "multi-user.target" || m.describe() != "the systemd system manager" {
		t.Errorf("system manager %+v", m)
	}
}

func TestNodesSystemdUnitWhy(t *testing.T) {
	t.Parallel()
	m := &systemdManager{User: true, Name: "alice", Controllers: []string{"cpu", "memory", "pids"}}
	if why := m.unitWhy(ResRAM); why != "" {
		t.Errorf("memory delegated: %q", why)
	}
	if why := m.unitWhy(ResDiskIO); !strings.Contains(why, "the io controller is not delegated to the systemd user manager of alice") ||
		!strings.Contains(why, "Delegate=cpu io memory pids") {
		t.Errorf("io not delegated: %q", why)
	}
	m.Controllers = nil
	if why := m.unitWhy(ResCPU); !strings.Contains(why, "no cgroup v2 cpu controller (cgroup v1 or a hybrid layout)") {
		t.Errorf("no cgroup v2: %q", why)
	}
	root := &systemdManager{Controllers: []string{"memory"}}
	if why := root.unitWhy(ResCPU); why != "the cpu controller is not enabled in the root cgroup" {
		t.Errorf("root without cpu: %q", why)
	}
}

func TestNodesUnitName(t *testing.T) {
	t.Parallel()
	a, b := unitName("/home/u/pampa", "n1.1"), unitName("/home/u/other", "n1.1")
	if !strings.HasPrefix(a, "pampa-n1.1-") || !strings.HasSuffix(a, ".service") || len(a) != len("pampa-n1.1-")+6+len(".service") || a == b {
		t.Errorf("unit names %q and %q: want pampa-n1.1-<6 hex>.service, one per node directory", a, b)
	}
	if a != unitName("/home/u/pampa", "n1.1") {
		t.Error("unit names are not stable")
	}
	for in, want := range map[string]string{"n1.1": "n1.1", "ñ$1.2": `\xc3\xb1\x241.2`, ".x": `\x2ex`, "a-b c/d": `a\x2db\x20c\x2fd`} {
		if got := unitEscape(in); got != want {
			t.Errorf("unitEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNodesUnitFile(t *testing.T) {
	t.Parallel()
	tricky := "it's $HOME, 100% \"quoted\" back\\slash\nand a tab\t"
	cmd := []string{"/bin/sh", "-c", launcher, "pampa-launcher", "/h/pampa/releases/r 1/env", "/h/pampa/releases/r 1/prog", "worker", "--id", "n.1", tricky, ";"}
	u := unitSpec{
		Description: "Pampa worker n.1 (release r 1, in /h/pampa)", Dir: "/h/pampa", Command: cmd,
		StopPost: []string{"/bin/sh", "-c", "exit 0"},
		Env:      []string{"GOMEMLIMIT=460MiB", "ODD=50% \"x\""}, Out: "/h/pampa/logs/worker.n.1.out",
		StopTimeout: 40 * time.Second, Restart: DefaultRestartPolicy,
		Props:    []string{"MemoryMax=536870912", "CPUQuota=80%", "IOReadBandwidthMax=/dev/sda 1000000"},
		WantedBy: "default.target",
	}
	text := u.text()
	for _, want := range []string{
		"[Unit]\nDescription=Pampa worker n.1 (release r 1, in /h/pampa)\n",
		"\nStartLimitIntervalSec=60000ms\nStartLimitBurst=6\n", // the first start and 5 restarts
		"\n[Service]\nType=simple\nWorkingDirectory=/h/pampa\n",
		"\nExecStart=/bin/sh \"-c\" ",
		"\nExecStopPost=-/bin/sh \"-c\" \"exit 0\"\n",
		"\nEnvironment=\"GOMEMLIMIT=460MiB\"\nEnvironment=\"ODD=50%% \\\"x\\\"\"\n",
		"\nStandardOutput=append:/h/pampa/logs/worker.n.1.out\nStandardError=append:/h/pampa/logs/worker.n.1.out\n",
		"\nRestart=on-failure\nRestartSec=1000ms\nRestartSteps=5\nRestartMaxDelaySec=30000ms\n",
		"\nKillSignal=SIGTERM\nTimeoutStopSec=40000ms\n",
		"\nMemoryMax=536870912\nCPUQuota=80%\nIOReadBandwidthMax=/dev/sda 1000000\n",
		"\n[Install]\nWantedBy=default.target\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %q:\n%s", want, text)
		}
	}
	// ExecStart= reads back, by systemd's rules, as the very arguments.
	var line string
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			line = v
		}
	}
	if strings.Contains(line, "\n") || strings.ContainsAny(strings.ReplaceAll(line, "$$", ""), "$") {
		t.Errorf("ExecStart= holds a newline or a lone $: %s", line)
	}
	if got := systemdSplit(t, line); !slices.Equal(got, cmd) {
		t.Errorf("ExecStart= reads back as\n%q\nwant\n%q", got, cmd)
	}
	if n := restartSteps(RestartPolicy{Delay: time.Second, MaxDelay: time.Second}); n != 0 {
		t.Errorf("steps with a fixed delay = %d", n)
	}
}

// systemdSplit reads a command line as systemd does: words split on
// spaces, double quotes with C escapes, then "%%" and "$$" each one
// character. The words Pampa writes are always quoted, but the first.
func systemdSplit(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			break
		}
		var w strings.Builder
		if line[i] != '"' {
			for i < len(line) && line[i] != ' ' {
				w.WriteByte(line[i])
				i++
			}
			words = append(words, w.String())
			continue
		}
		for i++; ; i++ {
			if i >= len(line) {
				t.Fatalf("unterminated quote in %s", line)
			}
			c := line[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				i++
				switch line[i] {
				case 'n':
					c = '\n'
				case 't':
					c = '\t'
				default:
					c = line[i]
				}
			}
			w.WriteByte(c)
		}
		words = append(words, strings.NewReplacer("%%", "%", "$$", "$").Replace(w.String()))
	}
	return words
}

func TestNodesParseSystemctlShow(t *testing.T) {
	t.Parallel()
	out := []byte(`Id=pampa-n.1-aaaaaa.service
LoadState=loaded
ActiveState=active
SubState=running
Result=success
MainPID=4242
NRestarts=2
ExecMainCode=0
ExecMainStatus=0
ExecMainExitTimestamp=

Id=pampa-n.2-aaaaaa.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart
Result=signal
MainPID=0
NRestarts=3
ExecMainCode=2
ExecMainStatus=9
ExecMainExitTimestamp=Tue 2024-05-14 10:01:02 UTC

Id=pampa-n.3-aaaaaa.service
LoadState=loaded
ActiveState=failed
SubState=failed
Result=start-limit-hit
MainPID=0
NRestarts=5
ExecMainCode=1
ExecMainStatus=3
ExecMainExitTimestamp=Tue 2024-05-14 10:02:03 UTC

Id=pampa-n.4-aaaaaa.service
LoadState=loaded
ActiveState=inactive
SubState=dead
Result=success
MainPID=0
NRestarts=0
ExecMainCode=1
ExecMainStatus=0
ExecMainExitTimestamp=Tue 2024-05-14 10:03:04 UTC

Id=pampa-n.5-aaaaaa.service
LoadState=not-found
ActiveState=inactive
SubState=dead
Result=success
MainPID=0
NRestarts=0
ExecMainCode=0
ExecMainStatus=0
ExecMainExitTimestamp=

Id=pampa-n.6-aaaaaa.service
LoadState=loaded
ActiveState=failed
SubState=failed
Result=timeout
MainPID=0
NRestarts=0
ExecMainCode=2
ExecMainStatus=9
ExecMainExitTimestamp=Tue 2024-05-14 10:04:05 UTC
`)
	// The record of n.1 holds the exit its ExecStopPost recorded.
	recorded := &ExitInfo{Signal: "SIGKILL", At: time.Date(2024, 5, 14, 9, 0, 0, 0, time.UTC)}
	var sts []*SupervisorState
	for i := 1; i <= 7; i++ {
		st := &SupervisorState{Supervision: Supervision{Kind: SupervisorSystemd, Unit: fmt.Sprintf("pampa-n.%d-aaaaaa.service", i),
			Systemctl: []string{"systemctl"}, Restart: DefaultRestartPolicy}}
		sts = append(sts, st)
	}
	sts[0].LastExit = recorded
	states := applyShow(out, sts)
	if len(states) != 6 || states["pampa-n.2-aaaaaa.service"].ExecMainExit != time.Date(2024, 5, 14, 10, 1, 2, 0, time.UTC) {
		t.Fatalf("parsed %+v", states)
	}
	for i, want := range []struct {
		alive    bool
		state    string
		restarts int
		exit     string // "" for none
		gaveUp   bool
		says     string
	}{
		{true, SuperRunning, 2, "killed by SIGKILL", false, ""},
		{true, SuperRestarting, 3, "killed by SIGKILL", false, ""},
		{false, SuperGaveUp, 5, "exit status 3", true, "crash loop: systemd's start limit was hit (StartLimitBurst=6 within StartLimitIntervalSec=1m0s)"},
		{false, SuperExited, 0, "exit status 0", false, ""},
		{false, SuperStopped, 0, "", false, "is gone"},
		{false, SuperStopped, 0, "killed by SIGKILL", false, "outlived TimeoutStopSec"},
		{false, "", 0, "", false, "systemctl show says nothing of pampa-n.7-aaaaaa.service"},
	} {
		st := sts[i]
		exit := ""
		if st.LastExit != nil {
			exit = st.LastExit.String()
		}
		if st.Alive != want.alive || st.State != want.state || st.Restarts != want.restarts || exit != want.exit || st.GaveUp != want.gaveUp ||
			!strings.Contains(st.Reason+st.Why, want.says) {
			t.Errorf("n.%d: %+v (last exit %q); want %+v", i+1, st, exit, want)
		}
	}
	if sts[0].WorkerPID != 4242 || sts[0].LastExit != recorded {
		t.Errorf("n.1 runs as pid 4242 with its recorded exit: %+v", sts[0])
	}
	if !states["pampa-n.1-aaaaaa.service"].running() || states["pampa-n.4-aaaaaa.service"].running() {
		t.Error("running() is wrong")
	}
	if got := showCommand([]string{"systemctl", "--user"}, []string{"a.service", "b.service"}); strings.Join(got, " ") !=
		"systemctl --user show -p "+showProps+" -- a.service b.service" {
		t.Errorf("showCommand = %q", got)
	}
}

func TestNodesExitFromEnv(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 5, 14, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ code, status, want string }{
		{"exited", "0", "exit status 0"},
		{"exited", "3", "exit status 3"},
		{"killed", "KILL", "killed by SIGKILL"},
		{"killed", "9", "killed by SIGKILL"},
		{"dumped", "SEGV", "killed by SIGSEGV"},
		{"", "", ""},
		{"exited", "", ""},
	} {
		e := exitFromEnv(tc.code, tc.status, at)
		got := ""
		if e != nil {
			got = e.String()
			if !e.At.Equal(at) {
				t.Errorf("%s/%s: at %v", tc.code, tc.status, e.At)
			}
		}
		if got != tc.want {
			t.Errorf("exitFromEnv(%q, %q) = %q, want %q", tc.code, tc.status, got, tc.want)
		}
	}
}

func TestNodesByManager(t *testing.T) {
	t.Parallel()
	a := &SupervisorState{Supervision: Supervision{Kind: SupervisorSystemd, Unit: "a.service", Systemctl: []string{"systemctl", "--user"}}}
	b := &SupervisorState{Supervision: Supervision{Kind: SupervisorSystemd, Unit: "b.service", Systemctl: []string{"systemctl", "--user"}}}
	c := &SupervisorState{Supervision: Supervision{Kind: SupervisorSystemd, Unit: "c.service", Systemctl: []string{"systemctl"}}}
	p := &SupervisorState{Supervision: Supervision{Kind: SupervisorPampa, PID: 9}}
	groups := byManager([]*SupervisorState{a, nil, p, c, b})
	if len(groups) != 2 || !slices.Equal(unitsOf(groups[0]), []string{"a.service", "b.service"}) || !slices.Equal(unitsOf(groups[1]), []string{"c.service"}) {
		t.Errorf("groups = %v", groups)
	}
}
