package nodes

// Table tests of the package's pure functions: messages, limit
// descriptions, error classification, ELF checks, known_hosts lookups.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestNodesLimitDescriptions(t *testing.T) {
	t.Parallel()
	l := Limits{RAMMB: 1000, CPUPercent: 150, DiskIOMbps: 80, NetIOMbps: 10}
	var got []string
	for _, r := range l.wants() {
		got = append(got, r.Resource+"="+r.Want)
	}
	want := []string{"ram=1000 MiB", "cpu=150% of a CPU", "disk_io=80 Mbit/s read and write", "net_io=10 Mbit/s"}
	if !slices.Equal(got, want) {
		t.Errorf("wants = %q, want %q", got, want)
	}
	if w := (Limits{CPUPercent: 5}).wants(); len(w) != 1 || w[0].Resource != ResCPU {
		t.Errorf("only cpu set: wants = %+v", w)
	}
	if (Limits{}).Any() || !(Limits{NetIOMbps: 1}).Any() || !(Limits{RAMMB: 1}).Any() {
		t.Error("Limits.Any is wrong")
	}
	if got := goMemLimit(1000); got != "900MiB" {
		t.Errorf("goMemLimit(1000) = %s, want 900MiB", got)
	}

	applied := LimitReport{Resource: ResRAM, Want: "1000 MiB", Applied: true, How: "cgroup v2"}
	refused := LimitReport{Resource: ResNetIO, Want: "10 Mbit/s", Why: "no tc"}
	for r, want := range map[LimitReport]string{
		applied: "ram 1000 MiB: applied (cgroup v2)",
		refused: "net_io 10 Mbit/s: NOT applied: no tc",
	} {
		if got := r.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
	if got := unapplied([]LimitReport{applied, refused, {Resource: ResCPU, Why: "no cgroup"}}); got != "net_io (no tc); cpu (no cgroup)" {
		t.Errorf("unapplied = %q", got)
	}
	if got := unapplied([]LimitReport{applied}); got != "" {
		t.Errorf("unapplied with all applied = %q", got)
	}
}

func TestNodesControllerNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ res, v1, v2 string }{
		{ResRAM, "memory", "memory"},
		{ResCPU, "cpu", "cpu"},
		{ResDiskIO, "blkio", "io"},
		{ResNetIO, "", ""},
	} {
		if got := v1Name(tc.res); got != tc.v1 {
			t.Errorf("v1Name(%s) = %q, want %q", tc.res, got, tc.v1)
		}
		if got := v2Name(tc.res); got != tc.v2 {
			t.Errorf("v2Name(%s) = %q, want %q", tc.res, got, tc.v2)
		}
		if got := (cgMount{v2: true}).key(tc.res); got != "" {
			t.Errorf("v2 key(%s) = %q, want \"\"", tc.res, got)
		}
		if got := (cgMount{}).key(tc.res); got != tc.v1 {
			t.Errorf("v1 key(%s) = %q, want %q", tc.res, got, tc.v1)
		}
	}
	if _, ok := hierarchyFor(nil, ResCPU); ok {
		t.Error("a hierarchy was found among no mounts")
	}
	// A v1 hierarchy without the controller falls back to v2.
	mounts := []cgMount{{point: "/sys/fs/cgroup/pids", controllers: []string{"pids"}}, {v2: true, point: "/sys/fs/cgroup/unified"}}
	if m, ok := hierarchyFor(mounts, ResCPU); !ok || !m.v2 {
		t.Errorf("hierarchyFor without a v1 cpu controller = %+v, want the v2 one", m)
	}
}

func TestNodesParseLimitsRows(t *testing.T) {
	t.Parallel()
	data := []byte("Limit                     Soft Limit           Hard Limit           Units\n" +
		"Max data size             1073741824           unlimited            bytes\n" +
		"Max stack size            \n" +
		"Max open files            garbage              1024                 files\n")
	for _, tc := range []struct {
		row  string
		want uint64
		ok   bool
	}{
		{"Max data size", 1 << 30, true},
		{"Max stack size", 0, false},
		{"Max open files", 0, false},
		{"Max processes", 0, false},
	} {
		if got, ok := parseLimits(data, tc.row); got != tc.want || ok != tc.ok {
			t.Errorf("parseLimits(%q) = %d, %v; want %d, %v", tc.row, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNodesParseProcStatMalformed(t *testing.T) {
	t.Parallel()
	for name, data := range map[string]string{
		"NoParenthesis":   "4242 prog S 1 2 3",
		"TooFewFields":    "4242 (prog) S 1 2 3",
		"LongState":       "4242 (prog) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0",
		"StartNotANumber": "4242 (prog) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x500 0 0",
	} {
		if ps, err := parseProcStat([]byte(data)); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%s: parseProcStat = %+v, %v; want a malformed error", name, ps, err)
		}
	}
}

func TestNodesReadRecordErrors(t *testing.T) {
	t.Parallel()
	const dir = "/h/pampa"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // in the error; "" for no error
		pid   int
	}{
		{"BadJSON", map[string]string{metaPath(dir, "n.1"): "{"}, "unreadable " + metaPath(dir, "n.1"), 0},
		{"ZeroPID", map[string]string{metaPath(dir, "n.1"): `{"pid":0}`}, "unreadable " + metaPath(dir, "n.1"), 0},
		{"BadPidFile", map[string]string{pidPath(dir, "n.1"): "seven\n"}, "unreadable " + pidPath(dir, "n.1"), 0},
		{"NegativePidFile", map[string]string{pidPath(dir, "n.1"): "-3\n"}, "unreadable " + pidPath(dir, "n.1"), 0},
		{"PidFile", map[string]string{pidPath(dir, "n.1"): " 31 \n"}, "", 31},
		{"RecordWins", map[string]string{metaPath(dir, "n.1"): `{"pid":12}`, pidPath(dir, "n.1"): "31\n"}, "", 12},
	} {
		read := func(name string) ([]byte, error) {
			if v, ok := tc.files[name]; ok {
				return []byte(v), nil
			}
			return nil, errNotExist(name)
		}
		rec, err := readRecord(read, dir, "n.1")
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: readRecord = %+v, %v; want an error with %q", tc.name, rec, err, tc.want)
		case tc.want == "" && (err != nil || rec.PID != tc.pid):
			t.Errorf("%s: readRecord = %+v, %v; want pid %d", tc.name, rec, err, tc.pid)
		}
		// An unreadable record makes the worker stale, not running.
		if tc.want != "" {
			if st := processState(read, dir, "n.1"); st.Running || !st.Stale || !strings.Contains(st.Why, "unreadable") {
				t.Errorf("%s: processState = %+v", tc.name, st)
			}
		}
	}
	// A /proc stat that cannot be parsed.
	files := map[string]string{pidPath(dir, "n.1"): "5\n", "/proc/5/stat": "junk"}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, errNotExist(name)
	}
	if st := processState(read, dir, "n.1"); st.Running || !st.Stale || !strings.Contains(st.Why, "pid 5: malformed") {
		t.Errorf("malformed stat: %+v", st)
	}
}

func TestNodesTargetBasics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		host string
		port int
		want string
	}{
		{"node1.example", 0, "node1.example:22"},
		{"10.0.0.5", 2222, "10.0.0.5:2222"},
		{"::1", 2200, "[::1]:2200"},
	} {
		tg := &Target{Host: tc.host, Port: tc.port, User: "deploy"}
		if got := tg.Addr(); got != tc.want {
			t.Errorf("Addr(%s, %d) = %s, want %s", tc.host, tc.port, got, tc.want)
		}
		if got := tg.Dest(); got != "deploy@"+tc.want {
			t.Errorf("Dest = %s", got)
		}
	}
	tg := &Target{Name: "web", MaxWorkers: 2}
	if ids := tg.WorkerIDs(); !slices.Equal(ids, []string{"web.1", "web.2"}) {
		t.Errorf("WorkerIDs = %v", ids)
	}
	for id, want := range map[string]bool{"web.1": true, "web.2": true, "web.3": false, "web.10": false, "web": false, "other.1": false} {
		if got := tg.HasWorker(id); got != want {
			t.Errorf("HasWorker(%s) = %v, want %v", id, got, want)
		}
	}
	if tg.dir() != DefaultDir {
		t.Errorf("default dir = %q", tg.dir())
	}
	tg.Dir = "/srv/pampa"
	if tg.dir() != "/srv/pampa" {
		t.Errorf("dir = %q", tg.dir())
	}

	if Secret("").String() != "" || Secret("pw").String() != "REDACTED" || Secret("pw").GoString() != `"REDACTED"` {
		t.Error("Secret does not hide itself")
	}
	if b, _ := Secret("pw").MarshalText(); string(b) != "REDACTED" {
		t.Errorf("MarshalText = %q", b)
	}

	o := Options{}.withDefaults()
	if o.ConnectTimeout != 10*time.Second || o.CommandTimeout != 2*time.Minute {
		t.Errorf("defaults = %+v", o)
	}
	if o := (Options{ConnectTimeout: time.Second, CommandTimeout: 3 * time.Second}).withDefaults(); o.ConnectTimeout != time.Second || o.CommandTimeout != 3*time.Second {
		t.Errorf("set options were replaced: %+v", o)
	}

	inner := errors.New("boom")
	ne := &NodeError{Node: "web", Stage: "deploy", Err: inner}
	if ne.Error() != "node web: deploy: boom" || !errors.Is(ne, inner) {
		t.Errorf("NodeError = %q, unwraps to inner: %v", ne, errors.Is(ne, inner))
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestNodesUnreachable(t *testing.T) {
	t.Parallel()
	sysErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"DNS", &net.OpError{Op: "dial", Err: &net.DNSError{Name: "nohost.invalid", Err: "no such host"}}, `cannot resolve "nohost.invalid"`},
		{"Refused", sysErr(syscall.ECONNREFUSED), "10.0.0.9:22 refused the connection"},
		{"NoRouteToHost", sysErr(syscall.EHOSTUNREACH), "no route to 10.0.0.9:22"},
		{"NetworkUnreachable", sysErr(syscall.ENETUNREACH), "no route to 10.0.0.9:22"},
		{"Timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, "no answer from 10.0.0.9:22 within 3s"},
		{"Deadline", context.DeadlineExceeded, "no answer from 10.0.0.9:22 within 3s"},
		{"Other", errors.New("address family not supported"), "unreachable: address family not supported"},
	} {
		got := unreachable("10.0.0.9:22", 3*time.Second, tc.err)
		if !strings.HasPrefix(got.Error(), "unreachable: ") || !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, got, tc.want)
		}
	}
}

func TestNodesExitErrorMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    ExitError
		want string
	}{
		{ExitError{Command: "kill", Status: 1}, "kill: exit status 1"},
		{ExitError{Command: "kill", Status: 1, Stderr: "no such process"}, "kill: exit status 1: no such process"},
		{ExitError{Command: "prog", Status: -1, Signal: "KILL"}, "prog: killed by signal KILL"},
		{ExitError{Command: "prog", Status: -1, Signal: "SEGV", Stderr: "boom"}, "prog: killed by signal SEGV: boom"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
	var b tailBuffer
	b.Write([]byte(strings.Repeat("x", tailMax)))
	b.Write([]byte("the end\n"))
	if s := b.String(); len(s) != tailMax-1 || !strings.HasSuffix(s, "the end") {
		t.Errorf("tail buffer keeps %d bytes ending %q", len(s), s[max(0, len(s)-10):])
	}
}

func TestNodesTailLines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
		{"  only  \n\n", 1, "only"},
		{"x\n  y  \n", 1, "y"},
	} {
		if got := tailLines([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if ms(1500*time.Millisecond) != 1500 {
		t.Error("ms")
	}
}

func TestNodesCtxReaderAndSFTPErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	r := &ctxReader{ctx: ctx, r: strings.NewReader("abc")}
	buf := make([]byte, 2)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %d, %v; want 0, context.Canceled", n, err)
	}

	unsupported := &sftp.StatusError{Code: uint32(sftp.ErrSSHFxOpUnsupported)}
	noFile := &sftp.StatusError{Code: uint32(sftp.ErrSSHFxNoSuchFile)}
	denied := &sftp.StatusError{Code: uint32(sftp.ErrSSHFxPermissionDenied)}
	if !isUnsupported(unsupported) || isUnsupported(denied) || isUnsupported(errors.New("x")) {
		t.Error("isUnsupported is wrong")
	}
	for err, want := range map[error]bool{
		noFile: true, denied: false, os.ErrNotExist: true, errNotExist("f"): true, io.EOF: false,
	} {
		if got := isNotExist(err); got != want {
			t.Errorf("isNotExist(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestNodesELF(t *testing.T) {
	t.Parallel()
	for m, want := range map[elf.Machine]string{
		elf.EM_X86_64: "x86_64", elf.EM_AARCH64: "aarch64", elf.EM_386: "i686", elf.EM_ARM: "armv7l",
		elf.EM_RISCV: "riscv64", elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_LOONGARCH: "loongarch64",
	} {
		if !slices.Contains(elfArch(m), want) {
			t.Errorf("elfArch(%s) = %v, want it to hold %s", m, elfArch(m), want)
		}
	}
	if got := elfArch(elf.EM_SPARC); got != nil {
		t.Errorf("elfArch(SPARC) = %v, want none", got)
	}
	if slices.Contains(elfArch(elf.EM_X86_64), "aarch64") {
		t.Error("x86_64 binaries would be sent to arm64 nodes")
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, machine, err := checkBinary(exe)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && machine != want {
		t.Errorf("the test binary is %s, want %s", machine, want)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	if _, _, err := checkBinary(script); err == nil || !strings.Contains(err.Error(), "GOOS=linux") {
		t.Errorf("a shell script: %v, want a not-a-Linux-executable error", err)
	}
	if _, _, err := checkBinary(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing binary: %v", err)
	}
	// An object file (ET_REL) is ELF, but not a program.
	obj := patchedELF(t, exe, 16, uint16(elf.ET_REL))
	if _, _, err := checkBinary(obj); err == nil || !strings.Contains(err.Error(), "is not an executable") {
		t.Errorf("an object file: %v", err)
	}
}

// patchedELF copies the ELF file exe with the 16-bit field at off set to v
// (16: e_type, 18: e_machine) and returns the copy's path.
func patchedELF(t *testing.T, exe string, off int, v uint16) string {
	t.Helper()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(data[off:], v)
	out := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(out, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNodesKnownAlgorithms(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := ssh.NewPublicKey(&ecKey.PublicKey)
	edPub := newSigner(t).PublicKey()
	lines := []string{
		knownhosts.Line([]string{"[127.0.0.9]:2222"}, rsaPub),
		knownhosts.Line([]string{"127.0.0.8"}, edPub),
		knownhosts.Line([]string{"127.0.0.8"}, ecPub),
		knownhosts.Line([]string{"127.0.0.8"}, edPub), // listed twice: asked once
	}
	f := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	cb, err := loadKnownHosts(f)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string][]string{
		"127.0.0.9:2222": {ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA},
		"127.0.0.8:22":   {ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256},
		"127.0.0.7:22":   nil,
		"not-an-address": nil,
	} {
		if got := knownAlgorithms(cb, addr); !slices.Equal(got, want) {
			t.Errorf("knownAlgorithms(%s) = %v, want %v", addr, got, want)
		}
	}
	// A missing file knows no host; a malformed one is an error.
	cb, err = loadKnownHosts(filepath.Join(t.TempDir(), "none"))
	if err != nil || knownAlgorithms(cb, "127.0.0.8:22") != nil {
		t.Errorf("missing known_hosts: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("127.0.0.8 ssh-ed25519 !!!notbase64\n"), 0o600)
	if _, err := loadKnownHosts(bad); err == nil || !strings.Contains(err.Error(), "read known_hosts file") {
		t.Errorf("malformed known_hosts: %v", err)
	}
}

func TestNodesHostKeyErrorMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    HostKeyError
		want []string
	}{
		{HostKeyError{Host: "[h]:22", File: "/kh", Presented: "ssh-ed25519 SHA256:x", Revoked: true}, []string{"[h]:22 presented ssh-ed25519 SHA256:x", "/kh marks as revoked"}},
		{HostKeyError{Host: "h", File: "/kh", Presented: "P", Unknown: true}, []string{"h is not in /kh", "ssh-keyscan", "ssh_accept_new_host_key"}},
		{HostKeyError{Host: "h", File: "/kh", Presented: "P", KnownAt: []string{"/kh:3 ssh-rsa"}}, []string{"different key", "/kh:3 ssh-rsa", "ssh-keygen -R 'h' -f /kh"}},
	} {
		msg := tc.e.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q does not say %q", msg, w)
			}
		}
	}
}
