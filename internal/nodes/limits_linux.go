//go:build linux

package nodes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How limits are put in force on a node, best first:
//
//  1. systemd: when it supervises the worker, the worker's unit holds
//     MemoryMax, CPUQuota and IO{Read,Write}BandwidthMax, for each
//     controller the manager may use (cgroup v2); otherwise, under Pampa's
//     own supervisor, systemd-run --scope (as root, or --user when the
//     user's systemd manager lingers): a transient scope per run of the
//     worker with the same properties.
//  2. cgroup files in a cgroup this user may write: "pampa" under the
//     cgroup the agent runs in (root, containers), or "pampa-<user>" at
//     the top of the hierarchy (what an administrator creates and chowns to
//     the user to delegate it). v1 and v2 hierarchies both work.
//  3. For RAM only, RLIMIT_DATA, set before the worker's program starts.
//     (RLIMIT_AS would kill any Go program under about 1 GiB at birth: the
//     runtime reserves that much address space up front.)
//
// Network bandwidth is never limited (see netIOWhy). Whatever is applied
// is read back from the running worker before it is reported applied.

// limitPlan is how a node will apply the limits to each worker.
type limitPlan struct {
	limits  Limits
	reports []LimitReport   // per limit: Applied means "will be tried", How says how
	systemd []string        // systemd-run arguments of a scope, nil when unused
	unit    bool            // systemd supervises: limits in systemdRes go in the unit
	viaSD   map[string]bool // the resources systemd limits (scope or unit)
	env     []string        // extra environment for workers
	bases   map[string]cgBase
	rlimit  uint64 // RLIMIT_DATA, 0 for none
	dev     string // MAJ:MIN of the disk holding the node directory
	devPath string // /dev/<disk>, for systemd
}

// cgBase is a writable cgroup under which each worker gets its own.
type cgBase struct {
	v2  bool
	dir string
}

// execSpec is what the exec step does before becoming the worker.
type execSpec struct {
	CgroupProcs []string `json:"cgroup_procs,omitempty"`
	RlimitData  uint64   `json:"rlimit_data,omitempty"`
	// Record, when set, is written as the worker's pid file with this
	// process's pid: under systemd, which starts the worker again by
	// itself, the exec step keeps the pid file true.
	Record *WorkerProcess `json:"record,omitempty"`
	Dir    string         `json:"dir,omitempty"`
}

// planLimits plans how the node applies the limits to each worker; sd is
// the systemd manager that supervises the workers, nil under Pampa's own
// supervisor.
func planLimits(l Limits, dir string, sd *systemdManager) *limitPlan {
	p := &limitPlan{limits: l, bases: map[string]cgBase{}, viaSD: map[string]bool{}}
	wants := l.wants()
	if len(wants) == 0 {
		return p
	}
	if l.RAMMB > 0 && os.Getenv("GOMEMLIMIT") == "" {
		p.env = append(p.env, "GOMEMLIMIT="+goMemLimit(l.RAMMB))
	}
	var devWhy string
	if l.DiskIOMbps > 0 {
		p.dev, p.devPath, devWhy = diskOf(dir)
	}
	var sdArgs, sdEnv []string
	var scopeWhy string
	if sd == nil {
		sdArgs, sdEnv, scopeWhy = systemdRun()
	}
	host := readHostCgroups()
	for _, r := range wants {
		sdWhy := scopeWhy
		if sd != nil {
			sdWhy = sd.unitWhy(r.Resource)
		}
		switch {
		case r.Resource == ResNetIO:
			r.Why = netIOWhy
		case r.Resource == ResDiskIO && devWhy != "":
			r.Why = devWhy
		case r.Resource == ResDiskIO && sdWhy == "" && p.devPath == "":
			r.Why = "the disk " + p.dev + " has no /dev name for systemd's IOReadBandwidthMax"
		case sdWhy == "" && sd != nil:
			r.Applied, p.viaSD[r.Resource] = true, true
			r.How = "systemd unit, " + systemdProperty(r.Resource, l, p.devPath)
		case sdWhy == "":
			r.Applied, p.viaSD[r.Resource] = true, true
			r.How = "systemd-run scope, " + systemdProperty(r.Resource, l, p.devPath)
		default:
			r = p.withoutSystemd(r, host, sdMeans(sd)+": "+sdWhy)
		}
		if r.Applied && r.Resource == ResRAM && len(p.env) > 0 {
			r.How += "; GOMEMLIMIT " + goMemLimit(l.RAMMB)
		}
		p.reports = append(p.reports, r)
	}
	if sd == nil && len(p.viaSD) > 0 {
		p.systemd = sdArgs
		p.env = append(p.env, sdEnv...)
	}
	return p
}

// hostCgroups is what the agent sees of the cgroups: the mounted
// hierarchies, its own cgroups, and who it runs as.
type hostCgroups struct {
	mounts []cgMount
	own    map[string]string
	user   string
}

func readHostCgroups() hostCgroups {
	mountData, _ := os.ReadFile("/proc/self/mountinfo")
	ownData, _ := os.ReadFile("/proc/self/cgroup")
	return hostCgroups{mounts: parseMountinfo(mountData), own: parseProcCgroup(ownData), user: currentUser()}
}

// withoutSystemd plans a limit systemd does not apply: cgroup files in a
// cgroup this user may write, else, for RAM, RLIMIT_DATA. sdWhy says why
// not systemd.
func (p *limitPlan) withoutSystemd(r LimitReport, host hostCgroups, sdWhy string) LimitReport {
	base, why := cgroupBase(host.mounts, host.own, r.Resource, host.user)
	switch {
	case why == "":
		p.bases[r.Resource] = base
		r.Applied = true
		v := "v1"
		if base.v2 {
			v = "v2"
		}
		r.How = fmt.Sprintf("cgroup %s, one cgroup per worker under %s", v, base.dir)
	case r.Resource == ResRAM:
		r.Applied = true
		p.rlimit = uint64(p.limits.RAMMB) << 20
		r.How = fmt.Sprintf("RLIMIT_DATA %d MiB, set before the worker starts: no memory cgroup this user may write (see `nodes start --help`)", p.limits.RAMMB)
	default:
		r.Why = fmt.Sprintf("no cgroup to apply it in: %s; cgroup files: %s", sdWhy, why)
	}
	return r
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// systemdRun returns the systemd-run arguments to start a scope, with the
// environment it needs, or why it cannot be used.
func systemdRun() (args, env []string, why string) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil, nil, "not usable (PID 1 is not systemd)"
	}
	bin, err := exec.LookPath("systemd-run")
	if err != nil {
		return nil, nil, "not installed"
	}
	if os.Getuid() == 0 {
		return []string{bin, "--scope", "--quiet", "--collect"}, nil, ""
	}
	name := currentUser()
	if _, err := os.Stat("/var/lib/systemd/linger/" + name); err != nil {
		return nil, nil, fmt.Sprintf("%s's systemd manager stops with the last SSH session, and its workers with it (an administrator can run: loginctl enable-linger %s)", name, name)
	}
	runtime := os.Getenv("XDG_RUNTIME_DIR")
	if runtime == "" {
		runtime = "/run/user/" + strconv.Itoa(os.Getuid())
		env = append(env, "XDG_RUNTIME_DIR="+runtime)
	}
	if _, err := os.Stat(runtime + "/systemd/private"); err != nil {
		return nil, nil, fmt.Sprintf("%s's systemd manager is not running (%s/systemd/private is missing)", name, runtime)
	}
	return []string{bin, "--user", "--scope", "--quiet", "--collect"}, env, ""
}

func systemdProperty(res string, l Limits, devPath string) string {
	switch res {
	case ResRAM:
		return "MemoryMax=" + strconv.FormatInt(int64(l.RAMMB)<<20, 10)
	case ResCPU:
		return "CPUQuota=" + strconv.Itoa(l.CPUPercent) + "%"
	case ResDiskIO:
		bps := strconv.FormatInt(ioBytesPerSec(l.DiskIOMbps), 10)
		return "IOReadBandwidthMax=" + devPath + " " + bps + ", IOWriteBandwidthMax=" + devPath + " " + bps
	}
	return ""
}

// systemdProperties are the properties of the limits systemd applies.
func systemdProperties(p *limitPlan) []string {
	var out []string
	for _, r := range p.reports {
		if !r.Applied || !p.viaSD[r.Resource] {
			continue
		}
		switch r.Resource {
		case ResRAM, ResCPU:
			out = append(out, systemdProperty(r.Resource, p.limits, p.devPath))
		case ResDiskIO:
			bps := strconv.FormatInt(ioBytesPerSec(p.limits.DiskIOMbps), 10)
			out = append(out, "IOReadBandwidthMax="+p.devPath+" "+bps, "IOWriteBandwidthMax="+p.devPath+" "+bps)
		}
	}
	return out
}

// scope is the systemd-run command and properties of a scope for each run
// of a worker, nil when limits are not applied so.
func (p *limitPlan) scope() []string {
	if p.systemd == nil {
		return nil
	}
	out := append([]string{}, p.systemd...)
	for _, prop := range systemdProperties(p) {
		out = append(out, "-p", prop)
	}
	return out
}

// scopePrefix runs a command in a new scope of its own, named after the
// worker and the time (a stopped scope's name may linger a moment).
func scopePrefix(scope []string, id string) []string {
	unit := "pampa-" + strings.NewReplacer("/", "_", " ", "_").Replace(id) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return append(append([]string{}, scope...), "--unit", unit, "--")
}

// cgroupBase finds a cgroup this user may create workers' cgroups in, for
// res, or says why there is none.
func cgroupBase(mounts []cgMount, own map[string]string, res, userName string) (cgBase, string) {
	m, ok := hierarchyFor(mounts, res)
	if !ok {
		return cgBase{}, "no cgroup hierarchy is mounted"
	}
	ownPath, ok := own[m.key(res)]
	if !ok {
		ownPath = "/"
	}
	kind := "cgroup v1 " + v1Name(res)
	if m.v2 {
		kind = "cgroup v2"
	}
	delegated := path.Join(m.point, "pampa-"+userName)
	var whys []string
	for _, dir := range []string{path.Join(m.dirOf(ownPath), "pampa"), delegated} {
		why := usableBase(m, dir, res)
		if why == "" {
			return cgBase{v2: m.v2, dir: dir}, ""
		}
		whys = append(whys, why)
	}
	return cgBase{}, fmt.Sprintf("%s (%s); to delegate one, an administrator can run: mkdir %s && chown %s %s",
		strings.Join(whys, "; "), kind, delegated, userName, delegated)
}

// usableBase checks, creating it if needed, that dir is a cgroup this user
// can make children in, with res's controller available to them.
func usableBase(m cgMount, dir, res string) string {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Sprintf("cannot create %s: %v", dir, errors.Unwrap(err))
		}
	} else if err != nil {
		return err.Error()
	}
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Sprintf("%s is not writable", dir)
	}
	if !m.v2 {
		return ""
	}
	ctl := v2Name(res)
	avail, err := os.ReadFile(path.Join(dir, "cgroup.controllers"))
	if err != nil || !hasWord(string(avail), ctl) {
		return fmt.Sprintf("the %s controller is not enabled for %s (its parent's cgroup.subtree_control lacks it)", ctl, dir)
	}
	sub, _ := os.ReadFile(path.Join(dir, "cgroup.subtree_control"))
	if hasWord(string(sub), ctl) {
		return ""
	}
	if err := os.WriteFile(path.Join(dir, "cgroup.subtree_control"), []byte("+"+ctl), 0); err != nil {
		return fmt.Sprintf("cannot enable %s for the children of %s: %v", ctl, dir, errors.Unwrap(err))
	}
	return ""
}

// diskOf finds the whole disk holding dir: its MAJ:MIN and /dev path.
func diskOf(dir string) (dev, devPath, why string) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return "", "", err.Error()
	}
	major := (st.Dev>>8)&0xfff | (st.Dev>>32)&^uint64(0xfff)
	minor := st.Dev&0xff | (st.Dev>>12)&^uint64(0xff)
	if major == 0 {
		return "", "", fmt.Sprintf("%s is on a file system with no block device (tmpfs, overlay, network), so its I/O cannot be throttled", dir)
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	if _, err := os.Stat(sys + "/partition"); err == nil {
		// Throttling applies to whole disks: use the partition's parent.
		if d, err := os.ReadFile(sys + "/../dev"); err == nil {
			dev = strings.TrimSpace(string(d))
		}
	}
	if dev == "" {
		dev = fmt.Sprintf("%d:%d", major, minor)
	}
	if target, err := os.Readlink("/sys/dev/block/" + dev); err == nil {
		devPath = "/dev/" + path.Base(target)
	}
	return dev, devPath, ""
}

// prepare makes the worker's cgroups with their limits and returns what
// the exec step must do.
func (p *limitPlan) prepare(id string) (execSpec, error) {
	spec := execSpec{RlimitData: p.rlimit}
	for _, r := range p.reports {
		base, ok := p.bases[r.Resource]
		if !r.Applied || !ok {
			continue
		}
		dir := path.Join(base.dir, id)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return spec, fmt.Errorf("%s limit: create cgroup: %w", r.Resource, err)
		}
		for _, f := range limitFiles(base.v2, r.Resource, p.limits, p.dev) {
			if err := os.WriteFile(path.Join(dir, f.name), []byte(f.value), 0); err != nil {
				return spec, fmt.Errorf("%s limit: write %s: %w", r.Resource, f.name, err)
			}
		}
		procs := path.Join(dir, "cgroup.procs")
		if !contains(spec.CgroupProcs, procs) {
			spec.CgroupProcs = append(spec.CgroupProcs, procs)
		}
	}
	return spec, nil
}

// verify reads each planned limit back from the process pid of worker id
// and returns the reports as they stand: a limit not found in force is
// reported not applied, with what was found.
func (p *limitPlan) verify(pid int, id string) []LimitReport {
	out := make([]LimitReport, len(p.reports))
	copy(out, p.reports)
	proc := "/proc/" + strconv.Itoa(pid)
	limits, _ := os.ReadFile(proc + "/limits")
	cgData, _ := os.ReadFile(proc + "/cgroup")
	cgs := parseProcCgroup(cgData)
	mountData, _ := os.ReadFile("/proc/self/mountinfo")
	mounts := parseMountinfo(mountData)
	for i, r := range out {
		if !r.Applied {
			continue
		}
		if r.Resource == ResRAM && p.rlimit > 0 {
			got, ok := parseLimits(limits, "Max data size")
			if !ok || got != p.rlimit {
				out[i].Applied, out[i].Why = false, fmt.Sprintf("set RLIMIT_DATA, but %s/limits shows %q", proc, "Max data size "+strconv.FormatUint(got, 10))
			} else {
				out[i].How += fmt.Sprintf("; read back: %s/limits Max data size = %d", proc, got)
			}
			continue
		}
		m, ok := hierarchyFor(mounts, r.Resource)
		cgPath, inOne := cgs[m.key(r.Resource)]
		if !ok || !inOne {
			out[i].Applied, out[i].Why = false, "the worker is in no cgroup of the "+v1Name(r.Resource)+" hierarchy"
			continue
		}
		dir := m.dirOf(cgPath)
		if base, ok := p.bases[r.Resource]; ok && dir != path.Join(base.dir, id) {
			// Cgroup files: the worker must be in its own cgroup.
			out[i].Applied = false
			out[i].Why = fmt.Sprintf("the worker is in cgroup %s, not under %s: moving it there failed (see its .out log)", dir, base.dir)
			continue
		}
		for _, f := range limitFiles(m.v2, r.Resource, p.limits, p.dev) {
			data, err := os.ReadFile(path.Join(dir, f.name))
			if err != nil || !f.holds(string(data)) {
				out[i].Applied = false
				out[i].Why = fmt.Sprintf("the worker's cgroup %s does not hold it (%s: %q)", dir, f.name, strings.TrimSpace(string(data)))
				break
			}
		}
		if out[i].Applied {
			files := limitFiles(m.v2, r.Resource, p.limits, p.dev)
			last := files[len(files)-1]
			out[i].How += fmt.Sprintf("; read back: %s = %s", path.Join(dir, last.name), last.value)
		}
	}
	return out
}

// sdMeans names how systemd would have applied a limit, for messages.
func sdMeans(sd *systemdManager) string {
	if sd != nil {
		return "systemd"
	}
	return "systemd-run"
}
