package nodes

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestNodesQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"plain", "plain"},
		{"/home/u/pampa/releases/v1-abc/prog", "/home/u/pampa/releases/v1-abc/prog"},
		{"--id", "--id"},
		{"node.1", "node.1"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(rm -rf ~)", "'$(rm -rf ~)'"},
		{"`x`", "'`x`'"},
		{"a;b&&c|d>e<f", "'a;b&&c|d>e<f'"},
		{"~", "'~'"},
		{"#x", "'#x'"},
		{"A=1", "'A=1'"},
		{"*.go", "'*.go'"},
		{"line\nbreak", "'line\nbreak'"},
		{`back\slash`, `'back\slash'`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if _, err := Command("echo", "a\x00b"); err == nil {
		t.Error("Command accepted a NUL byte")
	}
	if _, err := Command(); err == nil {
		t.Error("Command accepted an empty argv")
	}
}

// shellRoundTrip runs args through a real POSIX shell as Command builds
// them and returns what the program received, one argument per line.
func shellRoundTrip(t testing.TB, args []string) []string {
	line, err := Command(append([]string{"printf", `%s\0`}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", line).Output()
	if err != nil {
		t.Fatalf("sh -c %s: %v", line, err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func TestNodesQuoteRoundTripsThroughSh(t *testing.T) {
	args := []string{"", " ", "'", `"`, "''", `\`, "$HOME", "${IFS}", "$(id)", "`id`", "a b\tc\nd", "*", "?", "[a]",
		"~root", "!", "#", "&", ";", "|", "<", ">", "(", ")", "{", "}", "=", "A=B", "-n", "--", "ü é 中", "\x01\x7f"}
	got := shellRoundTrip(t, args)
	if len(got) != len(args) {
		t.Fatalf("got %d arguments, want %d: %q", len(got), len(args), got)
	}
	for i := range args {
		if got[i] != args[i] {
			t.Errorf("argument %d: got %q, want %q", i, got[i], args[i])
		}
	}
}

func FuzzNodesQuote(f *testing.F) {
	for _, s := range []string{"", "a", "a'b", "$(x)", "a\nb", `\'`, "''''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		got := shellRoundTrip(t, []string{s, "end"})
		if len(got) != 2 || got[0] != s || got[1] != "end" {
			t.Fatalf("%q came back as %q", s, got)
		}
	})
}

func TestNodesParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses.
	data := []byte("4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1090 0 0 0 3 1 0 0 20 0 7 0 987654 1000 200 18446744073709551615")
	ps, err := parseProcStat(data)
	if err != nil {
		t.Fatal(err)
	}
	if ps.State != 'S' || ps.StartTicks != 987654 {
		t.Errorf("got %+v, want state S, start 987654", ps)
	}
	if _, err := parseProcStat([]byte("garbage")); err == nil {
		t.Error("accepted garbage")
	}
}

func TestNodesCmdlineHasID(t *testing.T) {
	cmd := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	for _, tc := range []struct {
		cmdline []byte
		id      string
		want    bool
	}{
		{cmd("/p/prog", "worker", "--id", "local.1", "--config", "c"), "local.1", true},
		{cmd("/p/prog", "worker", "--id", "local.10"), "local.1", false},
		{cmd("/p/prog", "worker", "--id", "local.1"), "local.10", false},
		{cmd("/p/prog", "worker", "--id=local.1"), "local.1", true},
		{cmd("/p/prog", "worker", "--name", "local.1"), "local.1", false},
		{cmd("/p/prog", "nodes", "agent", "exec", "{}", "--", "/p/prog", "worker", "--id", "n.2"), "n.2", true},
		{cmd("vim", "local.1"), "local.1", false},
		// A node dispatcher, `node --node n1`, is n1.0, and n1.0 alone.
		{cmd("/p/prog", "node", "--node", "n1", "--workers", "4"), "n1.0", true},
		{cmd("/p/prog", "node", "--node=n1"), "n1.0", true},
		{cmd("/p/prog", "node", "--node", "n1"), "n1.1", false},
		{cmd("/p/prog", "node", "--node", "n10"), "n1.0", false},
		{cmd("/p/prog", "node", "--node", "n1"), "n10.0", false},
		{cmd("/p/prog", "worker", "--node", "n1"), "n1.1", false},
		{cmd("/p/prog", "nodes", "agent", "supervise", "--id", "n1.0", "{}"), "n1.0", true},
	} {
		if got := cmdlineHasID(tc.cmdline, tc.id); got != tc.want {
			t.Errorf("cmdlineHasID(%q, %s) = %v, want %v", tc.cmdline, tc.id, got, tc.want)
		}
	}
}

func TestNodesProcessState(t *testing.T) {
	files := map[string]string{}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, errNotExist(name)
	}
	const dir = "/h/pampa"
	if st := processState(read, dir, "n.1"); st.Running || st.Stale || !strings.Contains(st.Why, "no pid file") {
		t.Errorf("no pid file: %+v", st)
	}
	files[metaPath(dir, "n.1")] = `{"id":"n.1","pid":77,"start_ticks":500}`
	if st := processState(read, dir, "n.1"); st.Running || !st.Stale || !strings.Contains(st.Why, "gone") {
		t.Errorf("dead pid: %+v", st)
	}
	files["/proc/77/stat"] = "77 (prog) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0"
	if st := processState(read, dir, "n.1"); st.Running || !strings.Contains(st.Why, "another process") {
		t.Errorf("reused pid: %+v", st)
	}
	files["/proc/77/stat"] = "77 (prog) Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"
	if st := processState(read, dir, "n.1"); st.Running || !strings.Contains(st.Why, "exited") {
		t.Errorf("zombie: %+v", st)
	}
	files["/proc/77/stat"] = "77 (prog) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"
	files["/proc/77/cmdline"] = "prog\x00worker\x00--id\x00n.10\x00"
	if st := processState(read, dir, "n.1"); st.Running {
		t.Errorf("another worker's process: %+v", st)
	}
	files["/proc/77/cmdline"] = "prog\x00worker\x00--id\x00n.1\x00"
	if st := processState(read, dir, "n.1"); !st.Running || st.PID != 77 {
		t.Errorf("running: %+v", st)
	}
	// A bare pid file (no record) still works, without the start check.
	delete(files, metaPath(dir, "n.1"))
	files[pidPath(dir, "n.1")] = "77\n"
	if st := processState(read, dir, "n.1"); !st.Running {
		t.Errorf("bare pid file: %+v", st)
	}
}

func TestNodesParseMountinfoAndCgroups(t *testing.T) {
	mountinfo := []byte(`21 26 0:20 / /proc rw,relatime - proc proc rw
30 29 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 29 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 29 0:28 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
33 29 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 29 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`)
	mounts := parseMountinfo(mountinfo)
	if len(mounts) != 5 {
		t.Fatalf("got %d cgroup mounts, want 5: %+v", len(mounts), mounts)
	}
	m, ok := hierarchyFor(mounts, ResCPU)
	if !ok || m.v2 || m.point != "/sys/fs/cgroup/cpu" {
		t.Errorf("cpu hierarchy = %+v", m)
	}
	own := parseProcCgroup([]byte("4:memory:/process_api/abc\n1:cpu:/\n0::/\n"))
	if own["memory"] != "/process_api/abc" || own["cpu"] != "/" || own[""] != "/" {
		t.Errorf("own cgroups = %v", own)
	}
	m, _ = hierarchyFor(mounts, ResRAM)
	if got := m.dirOf(own[m.key(ResRAM)]); got != "/sys/fs/cgroup/memory/process_api/abc" {
		t.Errorf("memory dir = %s", got)
	}

	// Pure v2, as on a systemd machine, mounted from a container's subtree.
	v2 := parseMountinfo([]byte(`40 30 0:35 /docker/xyz /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate` + "\n"))
	m, ok = hierarchyFor(v2, ResDiskIO)
	if !ok || !m.v2 {
		t.Fatalf("v2 hierarchy = %+v", m)
	}
	if got := m.dirOf("/docker/xyz/pampa/n.1"); got != "/sys/fs/cgroup/pampa/n.1" {
		t.Errorf("dirOf in a container = %s", got)
	}
	if got := unescapeMount(`/mnt/with\040space`); got != "/mnt/with space" {
		t.Errorf("unescape = %q", got)
	}
}

func TestNodesLimitFiles(t *testing.T) {
	l := Limits{RAMMB: 512, CPUPercent: 50, DiskIOMbps: 80}
	for _, tc := range []struct {
		v2      bool
		res     string
		content map[string]string
		want    bool
	}{
		{false, ResRAM, map[string]string{"memory.limit_in_bytes": "536870912\n"}, true},
		{false, ResRAM, map[string]string{"memory.limit_in_bytes": "9223372036854771712\n"}, false},
		{true, ResRAM, map[string]string{"memory.max": "536870912\n"}, true},
		{false, ResCPU, map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"}, true},
		{false, ResCPU, map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"}, false},
		{true, ResCPU, map[string]string{"cpu.max": "50000 100000\n"}, true},
		{true, ResCPU, map[string]string{"cpu.max": "max 100000\n"}, false},
		{true, ResDiskIO, map[string]string{"io.max": "8:0 rbps=10000000 wbps=10000000 riops=max wiops=max\n"}, true},
		{true, ResDiskIO, map[string]string{"io.max": "8:16 rbps=10000000 wbps=10000000 riops=max wiops=max\n"}, false},
		{false, ResDiskIO, map[string]string{"blkio.throttle.read_bps_device": "8:0 10000000\n", "blkio.throttle.write_bps_device": "8:0 10000000\n"}, true},
	} {
		files := limitFiles(tc.v2, tc.res, l, "8:0")
		ok := len(files) > 0
		for _, f := range files {
			if !f.holds(tc.content[f.name]) {
				ok = false
			}
		}
		if ok != tc.want {
			t.Errorf("v2=%v %s %v: holds = %v, want %v (files %+v)", tc.v2, tc.res, tc.content, ok, tc.want, files)
		}
	}
	limits := []byte("Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax data size             536870912            536870912            bytes\n")
	if n, ok := parseLimits(limits, "Max data size"); !ok || n != 536870912 {
		t.Errorf("Max data size = %d, %v", n, ok)
	}
	if _, ok := parseLimits(limits, "Max cpu time"); ok {
		t.Error("unlimited parsed as a number")
	}
}

func TestNodesUsageParsing(t *testing.T) {
	stat := []byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n")
	busy, total, n := cpuTimes(stat)
	if busy != 150 || total != 1000 || n != 2 {
		t.Errorf("cpuTimes = %d, %d, %d", busy, total, n)
	}
	mem := []byte("MemTotal:       24684000 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n")
	if got := meminfo(mem, "MemTotal"); got != 24684000*1024 {
		t.Errorf("MemTotal = %d", got)
	}
	if got := meminfo(mem, "Nope"); got != 0 {
		t.Errorf("missing key = %d", got)
	}
}

func TestNodesReleaseIDAndEnv(t *testing.T) {
	digest := bytes.Repeat([]byte{0xab}, 32)
	for _, tc := range []struct{ version, want string }{
		{"v1.2.3", "v1.2.3-abababababab"},
		{"dev", "dev-abababababab"},
		{"", "v-abababababab"},
		{"../../etc", "v.._.._etc-abababababab"},
		{"a b/c", "a_b_c-abababababab"},
	} {
		if got := releaseID(tc.version, digest); got != tc.want {
			t.Errorf("releaseID(%q) = %s, want %s", tc.version, got, tc.want)
		}
	}
}

func TestNodesSecretNeverPrints(t *testing.T) {
	tg := Target{Name: "n", Password: "hunter2-secret", KeyPassphrase: "open-sesame"}
	for _, s := range []string{fmtAll(tg), fmtAll(&tg), jsonOf(t, tg)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "sesame") {
			t.Errorf("a secret leaked: %s", s)
		}
	}
}
