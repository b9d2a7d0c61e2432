package nodes

import (
	"bufio"
	"bytes"
	"path"
	"strconv"
	"strings"
)

// Parsing of the kernel's cgroup and mount tables, kept free of system
// calls so that tests can feed it any machine's files.

// cgMount is a mounted cgroup hierarchy.
type cgMount struct {
	v2          bool
	point       string   // where it is mounted
	root        string   // the hierarchy path mounted there ("/" unless in a container)
	controllers []string // v1: the controllers bound to this hierarchy
}

// parseMountinfo returns the cgroup mounts listed in /proc/self/mountinfo.
func parseMountinfo(data []byte) []cgMount {
	var out []cgMount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := cgMount{point: unescapeMount(f[4]), root: unescapeMount(f[3])}
		switch g[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				switch {
				case o == "rw" || o == "ro" || strings.Contains(o, "="):
				default:
					m.controllers = append(m.controllers, o)
				}
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procCgroups maps a process's hierarchies to its cgroup path in each,
// from /proc/<pid>/cgroup: the key is "" for cgroup v2, else each v1
// controller name.
func parseProcCgroup(data []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "" {
				out[c] = parts[2]
			}
		}
	}
	return out
}

// v1Name is the cgroup v1 controller for a resource.
func v1Name(res string) string {
	switch res {
	case ResRAM:
		return "memory"
	case ResCPU:
		return "cpu"
	case ResDiskIO:
		return "blkio"
	}
	return ""
}

// v2Name is the cgroup v2 controller for a resource.
func v2Name(res string) string {
	switch res {
	case ResRAM:
		return "memory"
	case ResCPU:
		return "cpu"
	case ResDiskIO:
		return "io"
	}
	return ""
}

// hierarchyFor finds the mounted hierarchy that controls res, preferring
// a v1 hierarchy bound to its controller (on hybrid machines v2 then has
// no such controller), else the v2 one.
func hierarchyFor(mounts []cgMount, res string) (cgMount, bool) {
	for _, m := range mounts {
		if m.v2 {
			continue
		}
		for _, c := range m.controllers {
			if c == v1Name(res) {
				return m, true
			}
		}
	}
	for _, m := range mounts {
		if m.v2 {
			return m, true
		}
	}
	return cgMount{}, false
}

// dirOf maps a cgroup path (as /proc/<pid>/cgroup shows it) to its
// directory in the mounted hierarchy.
func (m cgMount) dirOf(cgPath string) string {
	rel := cgPath
	if m.root != "/" && strings.HasPrefix(cgPath, m.root) {
		rel = strings.TrimPrefix(cgPath, m.root)
	}
	return path.Join(m.point, rel)
}

// key is the /proc/<pid>/cgroup key of the hierarchy for res.
func (m cgMount) key(res string) string {
	if m.v2 {
		return ""
	}
	return v1Name(res)
}

// limitFiles are the files that hold a resource's limit in a cgroup, with
// the content that means the wanted limit. For v1 blkio and v2 io, the
// device line is matched rather than the whole file.
func limitFiles(v2 bool, res string, l Limits, dev string) []limitFile {
	switch {
	case res == ResRAM && v2:
		return []limitFile{{"memory.max", strconv.FormatInt(int64(l.RAMMB)<<20, 10)}}
	case res == ResRAM:
		return []limitFile{{"memory.limit_in_bytes", strconv.FormatInt(int64(l.RAMMB)<<20, 10)}}
	case res == ResCPU && v2:
		return []limitFile{{"cpu.max", strconv.Itoa(l.CPUPercent*1000) + " 100000"}}
	case res == ResCPU:
		return []limitFile{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", strconv.Itoa(l.CPUPercent * 1000)}}
	case res == ResDiskIO && v2:
		bps := strconv.FormatInt(ioBytesPerSec(l.DiskIOMbps), 10)
		return []limitFile{{"io.max", dev + " rbps=" + bps + " wbps=" + bps}}
	case res == ResDiskIO:
		bps := strconv.FormatInt(ioBytesPerSec(l.DiskIOMbps), 10)
		return []limitFile{{"blkio.throttle.read_bps_device", dev + " " + bps}, {"blkio.throttle.write_bps_device", dev + " " + bps}}
	}
	return nil
}

// limitFile is a cgroup file and the value that sets a limit in it.
type limitFile struct{ name, value string }

// holds reports whether a cgroup file's content shows the limit: the
// value alone for single-value files; for device files, the device's line
// with the same settings (v2 io.max adds riops=max wiops=max).
func (f limitFile) holds(content string) bool {
	content = strings.TrimSpace(content)
	want := strings.Fields(f.value)
	if len(want) == 0 {
		return false
	}
	if !strings.Contains(want[0], ":") {
		return content == f.value
	}
	for _, line := range strings.Split(content, "\n") {
		got := strings.Fields(line)
		if len(got) == 0 || got[0] != want[0] {
			continue
		}
		have := map[string]bool{}
		for _, g := range got[1:] {
			have[g] = true
		}
		for _, w := range want[1:] {
			if !have[w] {
				return false
			}
		}
		return true
	}
	return false
}

func ioBytesPerSec(mbps int) int64 { return int64(mbps) * 1_000_000 / 8 }

// parseLimits reads the soft limit of one row of /proc/<pid>/limits, such
// as "Max data size"; ok is false for "unlimited" or a missing row.
func parseLimits(data []byte, row string) (soft uint64, ok bool) {
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, row) {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, row))
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}
