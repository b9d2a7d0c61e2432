//go:build linux

package nodes

// How limits are planned, prepared and read back, against cgroup
// hierarchies laid out in temporary directories (the kernel's own are
// left alone) and real processes.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/nodes/nodestest"
)

func TestNodesCgroupBase(t *testing.T) {
	t.Parallel()
	if _, why := cgroupBase(nil, nil, ResCPU, "u"); why != "no cgroup hierarchy is mounted" {
		t.Errorf("no mounts: %q", why)
	}

	t.Run("V1", func(t *testing.T) {
		root := t.TempDir()
		m := []cgMount{{point: root, root: "/", controllers: []string{"cpu"}}}
		own := map[string]string{"cpu": "/job/42"}
		// The agent's own cgroup does not exist here: the delegated one is
		// made and used.
		base, why := cgroupBase(m, own, ResCPU, "alice")
		if why != "" || base.v2 || base.dir != filepath.Join(root, "pampa-alice") {
			t.Fatalf("base = %+v, %q", base, why)
		}
		if fi, err := os.Stat(base.dir); err != nil || !fi.IsDir() {
			t.Errorf("the delegated cgroup was not made: %v", err)
		}
		// Once the agent's cgroup exists, "pampa" under it comes first.
		os.MkdirAll(filepath.Join(root, "job", "42"), 0o755)
		if base, why := cgroupBase(m, own, ResCPU, "alice"); why != "" || base.dir != filepath.Join(root, "job", "42", "pampa") {
			t.Errorf("base = %+v, %q", base, why)
		}
	})
	t.Run("V2ControllerMissing", func(t *testing.T) {
		root := t.TempDir()
		m := []cgMount{{v2: true, point: root, root: "/"}}
		_, why := cgroupBase(m, map[string]string{"": "/"}, ResDiskIO, "bob")
		for _, want := range []string{"the io controller is not enabled for " + filepath.Join(root, "pampa"), "cgroup v2",
			"mkdir " + filepath.Join(root, "pampa-bob") + " && chown bob " + filepath.Join(root, "pampa-bob")} {
			if !strings.Contains(why, want) {
				t.Errorf("why %q does not say %q", why, want)
			}
		}
	})
	t.Run("V2EnablesTheController", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "pampa")
		os.Mkdir(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
		m := []cgMount{{v2: true, point: root, root: "/"}}
		base, why := cgroupBase(m, map[string]string{"": "/"}, ResRAM, "bob")
		if why != "" || !base.v2 || base.dir != dir {
			t.Fatalf("base = %+v, %q", base, why)
		}
		if sub, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); string(sub) != "+memory" {
			t.Errorf("cgroup.subtree_control = %q, want +memory", sub)
		}
		// Already enabled: nothing written.
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("cpu memory\n"), 0o644)
		if _, why := cgroupBase(m, map[string]string{"": "/"}, ResCPU, "bob"); why != "" {
			t.Errorf("cpu: %q", why)
		}
		if sub, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); string(sub) != "cpu memory\n" {
			t.Errorf("cgroup.subtree_control rewritten: %q", sub)
		}
	})
	t.Run("NotADirectory", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "pampa"), nil, 0o644)
		os.WriteFile(filepath.Join(root, "pampa-bob"), nil, 0o644)
		m := []cgMount{{point: root, root: "/", controllers: []string{"memory"}}}
		// A file where the cgroup should be: usable, but making a worker's
		// cgroup in it then fails, with a message naming the limit.
		base, why := cgroupBase(m, nil, ResRAM, "bob")
		if why != "" {
			t.Fatalf("why = %q", why)
		}
		p := &limitPlan{limits: Limits{RAMMB: 64}, reports: []LimitReport{{Resource: ResRAM, Applied: true}}, bases: map[string]cgBase{ResRAM: base}}
		if _, err := p.prepare("n.1"); err == nil || !strings.Contains(err.Error(), "ram limit: create cgroup") {
			t.Errorf("prepare in a file: %v", err)
		}
	})
}

func TestNodesLimitPlanPrepare(t *testing.T) {
	t.Parallel()
	v1, v2 := t.TempDir(), t.TempDir()
	l := Limits{RAMMB: 512, CPUPercent: 50, DiskIOMbps: 80, NetIOMbps: 10}
	p := &limitPlan{
		limits: l,
		reports: []LimitReport{
			{Resource: ResRAM, Applied: true}, {Resource: ResCPU, Applied: true},
			{Resource: ResDiskIO, Applied: true}, {Resource: ResNetIO, Why: netIOWhy},
		},
		bases:  map[string]cgBase{ResRAM: {dir: v1}, ResCPU: {v2: true, dir: v2}, ResDiskIO: {v2: true, dir: v2}},
		rlimit: 7 << 20,
		dev:    "8:0",
	}
	spec, err := p.prepare("n.1")
	if err != nil {
		t.Fatal(err)
	}
	if scope := p.scope(); scope != nil {
		t.Errorf("scope without systemd = %q", scope)
	}
	want := []string{filepath.Join(v1, "n.1", "cgroup.procs"), filepath.Join(v2, "n.1", "cgroup.procs")}
	if !slices.Equal(spec.CgroupProcs, want) || spec.RlimitData != 7<<20 {
		t.Errorf("spec = %+v, want cgroup.procs %q (each once) and the rlimit", spec, want)
	}
	for file, content := range map[string]string{
		filepath.Join(v1, "n.1", "memory.limit_in_bytes"): "536870912",
		filepath.Join(v2, "n.1", "cpu.max"):               "50000 100000",
		filepath.Join(v2, "n.1", "io.max"):                "8:0 rbps=10000000 wbps=10000000",
	} {
		if got, err := os.ReadFile(file); err != nil || string(got) != content {
			t.Errorf("%s = %q (%v), want %q", file, got, err, content)
		}
	}
	// Again, for the same worker: its cgroups exist already.
	if _, err := p.prepare("n.1"); err != nil {
		t.Errorf("prepare again: %v", err)
	}

	// Under systemd-run, a scope per run of the worker with the
	// properties applied.
	p.systemd = []string{"/usr/bin/systemd-run", "--scope", "--quiet", "--collect"}
	p.devPath = "/dev/sda"
	p.bases = nil
	p.viaSD = map[string]bool{ResRAM: true, ResCPU: true, ResDiskIO: true}
	got := strings.Join(scopePrefix(p.scope(), "n/2 x"), " ")
	if !strings.HasPrefix(got, "/usr/bin/systemd-run --scope --quiet --collect -p MemoryMax=536870912 -p CPUQuota=50% -p IOReadBandwidthMax=/dev/sda 10000000 -p IOWriteBandwidthMax=/dev/sda 10000000 --unit pampa-n_2_x-") ||
		!strings.HasSuffix(got, " --") {
		t.Errorf("systemd prefix = %q", got)
	}
	for res, want := range map[string]string{
		ResRAM: "MemoryMax=536870912", ResCPU: "CPUQuota=50%",
		ResDiskIO: "IOReadBandwidthMax=/dev/sda 10000000, IOWriteBandwidthMax=/dev/sda 10000000", ResNetIO: "",
	} {
		if got := systemdProperty(res, l, "/dev/sda"); got != want {
			t.Errorf("systemdProperty(%s) = %q, want %q", res, got, want)
		}
	}
}

func TestNodesPlanLimitsWithoutCgroups(t *testing.T) {
	t.Parallel()
	if p := planLimits(Limits{}, t.TempDir(), nil); len(p.reports) != 0 || p.systemd != nil || len(p.env) != 0 {
		t.Errorf("no limits: %+v", p)
	}
	p := planLimits(Limits{NetIOMbps: 5}, t.TempDir(), nil)
	if len(p.reports) != 1 || p.reports[0].Applied || p.reports[0].Why != netIOWhy || p.reports[0].Want != "5 Mbit/s" {
		t.Errorf("network limit: %+v", p.reports)
	}
	if len(p.env) != 0 || p.rlimit != 0 || len(p.bases) != 0 {
		t.Errorf("a network limit changed the plan: %+v", p)
	}
	// On a file system with no block device, disk I/O cannot be throttled.
	p = planLimits(Limits{DiskIOMbps: 5}, "/proc", nil)
	if len(p.reports) != 1 || p.reports[0].Applied || !strings.Contains(p.reports[0].Why, "no block device") {
		t.Errorf("disk limit on /proc: %+v", p.reports)
	}
}

func TestNodesDiskOf(t *testing.T) {
	t.Parallel()
	if _, _, why := diskOf("/proc"); !strings.Contains(why, "/proc is on a file system with no block device") {
		t.Errorf("/proc: %q", why)
	}
	if _, _, why := diskOf("/nonexistent/dir"); why == "" {
		t.Error("a missing directory has a disk")
	}
	dir := t.TempDir()
	dev, devPath, why := diskOf(dir)
	if why != "" {
		// A machine whose temporary directory is on tmpfs or overlay.
		if !strings.Contains(why, dir) {
			t.Errorf("why = %q, want it to name %s", why, dir)
		}
		return
	}
	// The kernel's own view: /sys/dev/block/<dev> is the whole disk.
	target, err := os.Readlink("/sys/dev/block/" + dev)
	if err != nil {
		t.Fatalf("diskOf(%s) = %s, which /sys/dev/block does not know: %v", dir, dev, err)
	}
	if _, err := os.Stat("/sys/dev/block/" + dev + "/partition"); err == nil {
		t.Errorf("diskOf(%s) = %s, a partition, not its disk", dir, dev)
	}
	if devPath != "/dev/"+filepath.Base(target) {
		t.Errorf("devPath = %s, want /dev/%s", devPath, filepath.Base(target))
	}
}

// TestNodesVerifyReadsLimitsBack starts a worker through the agent's exec
// step, with an RLIMIT_DATA, and checks what verify reads back from it.
func TestNodesVerifyReadsLimitsBack(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const rlimit = 3 << 30
	dir := t.TempDir()
	spec, _ := json.Marshal(execSpec{RlimitData: rlimit, CgroupProcs: []string{filepath.Join(dir, "missing", "cgroup.procs")}})
	cmd := exec.Command(exe, "nodes", "agent", "exec", string(spec), "--", exe, "worker", "--id", "v.1", "--log-dir", dir)
	cmd.Env = append(os.Environ(), envTestProgram+"=1")
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	pid := cmd.Process.Pid
	nodestest.WaitFor(t, 20*time.Second, "the exec step to become the worker", func() bool { return execDone(pid) })
	// The worker kept the agent's pid, and the cgroup it could not join
	// was said so, without stopping it.
	if data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); !cmdlineHasID(data, "v.1") {
		t.Fatalf("pid %d runs %q", pid, data)
	}
	nodestest.WaitFor(t, 20*time.Second, "the cgroup warning", func() bool {
		return strings.Contains(out.String(), "pampa: cannot join cgroup "+filepath.Join(dir, "missing"))
	})

	ram := LimitReport{Resource: ResRAM, Want: "3072 MiB", Applied: true, How: "RLIMIT_DATA 3072 MiB"}
	p := &limitPlan{limits: Limits{RAMMB: 3072}, reports: []LimitReport{ram}, rlimit: rlimit}
	got := p.verify(pid, "v.1")
	if !got[0].Applied || !strings.Contains(got[0].How, "read back: /proc/"+strconv.Itoa(pid)+"/limits Max data size = 3221225472") {
		t.Errorf("verify = %+v", got)
	}
	if p.reports[0].How != ram.How {
		t.Error("verify changed the plan's own reports")
	}
	// A limit not in force is reported so.
	p.rlimit = 2 << 30
	if got := p.verify(pid, "v.1"); got[0].Applied || !strings.Contains(got[0].Why, "shows \"Max data size 3221225472\"") {
		t.Errorf("verify of another rlimit = %+v", got)
	}
	// A cgroup limit where the worker is in no cgroup of ours.
	cpu := LimitReport{Resource: ResCPU, Applied: true, How: "cgroup v1"}
	p = &limitPlan{limits: Limits{CPUPercent: 50}, reports: []LimitReport{cpu, {Resource: ResNetIO, Why: netIOWhy}},
		bases: map[string]cgBase{ResCPU: {dir: filepath.Join(dir, "cg")}}}
	got = p.verify(pid, "v.1")
	if got[0].Applied || got[0].Why == "" || got[1].Applied || got[1].Why != netIOWhy {
		t.Errorf("verify of a cgroup limit the worker is not under = %+v", got)
	}
	// A gone process holds no limit.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	done <- nil
	p = &limitPlan{limits: Limits{RAMMB: 3072}, reports: []LimitReport{ram}, rlimit: rlimit}
	if got := p.verify(pid, "v.1"); got[0].Applied {
		t.Errorf("verify of a dead process = %+v", got)
	}
	if !execDone(pid) {
		t.Error("execDone of a dead process should let the caller see it exit")
	}
}

// TestNodesSystemdPlanLimits: under systemd, the limits it can apply go in
// the unit, not in a scope or cgroup files; the network's never.
func TestNodesSystemdPlanLimits(t *testing.T) {
	t.Parallel()
	m := &systemdManager{User: true, Name: "alice", Controllers: []string{"cpu", "io", "memory"}}
	p := planLimits(Limits{RAMMB: 512, CPUPercent: 80, NetIOMbps: 10, DiskIOMbps: 8}, "/proc", m)
	want := map[string]string{ResRAM: "systemd unit, MemoryMax=536870912", ResCPU: "systemd unit, CPUQuota=80%"}
	for _, r := range p.reports {
		switch r.Resource {
		case ResRAM, ResCPU:
			if !r.Applied || !strings.HasPrefix(r.How, want[r.Resource]) {
				t.Errorf("%s: %+v, want applied as %q", r.Resource, r, want[r.Resource])
			}
		case ResNetIO:
			if r.Applied || r.Why != netIOWhy || !strings.Contains(netIOWhy, "systemd") {
				t.Errorf("net_io: %+v", r)
			}
		case ResDiskIO: // /proc has no block device
			if r.Applied || !strings.Contains(r.Why, "no block device") {
				t.Errorf("disk_io: %+v", r)
			}
		}
	}
	if !strings.Contains(p.reports[0].How, "GOMEMLIMIT 460MiB") || !slices.Contains(p.env, "GOMEMLIMIT=460MiB") {
		t.Errorf("ram: %+v, env %q", p.reports[0], p.env)
	}
	if got := systemdProperties(p); !slices.Equal(got, []string{"MemoryMax=536870912", "CPUQuota=80%"}) {
		t.Errorf("unit properties = %q", got)
	}
	if p.scope() != nil || p.rlimit != 0 || len(p.bases) != 0 {
		t.Errorf("under systemd, no scope, rlimit or cgroup files: %+v", p)
	}
}
