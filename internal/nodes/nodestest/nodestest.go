// Package nodestest runs real OpenSSH servers on loopback addresses as
// stand-in nodes for tests: each with host keys, a Unix user, a password
// and an authorized key of its own. It needs root (to add users and run
// sshd) and Debian's openssh-server; a test that cannot have them fails,
// saying what to install.
//
// Users are named pampa-t<random> and deleted, with their processes and
// home directories, when the test ends. Users left by a test binary that
// died are deleted by the next one: their comment field records the pid
// of the binary that made them.
package nodestest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Sshd is where Debian's openssh-server installs the server.
const Sshd = "/usr/sbin/sshd"

// Options configure a server.
type Options struct {
	// IP is the loopback address to listen on. Default 127.0.0.2.
	IP string
	// Passphrase encrypts the client key, if set.
	Passphrase string
}

// Server is a running sshd with its user.
type Server struct {
	IP   string
	Port int
	// User and Password log in; KeyFile is the user's private key
	// (encrypted with Options.Passphrase when set).
	User     string
	UID      int
	Password string
	KeyFile  string
	Home     string
	// HostKey is the server's host key.
	HostKey ssh.PublicKey
	// Dir is a directory for the test's own files.
	Dir string

	cmd     *exec.Cmd
	logFile string
}

// Addr is "ip:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.IP, strconv.Itoa(s.Port)) }

// KnownHostsLine is the server's line for a known_hosts file.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.HostKey)
}

// Log returns what sshd has logged.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.logFile)
	return string(data)
}

var usersMu sync.Mutex // useradd and userdel, one at a time

// Start runs a new sshd with a new user. Everything is undone when the
// test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if _, err := os.Stat(Sshd); err != nil {
		t.Fatalf("nodestest: %s is missing: install Debian's openssh-server (apt-get install openssh-server); .ci/run does", Sshd)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("nodestest: the node tests must run as root: they add Unix users and run sshd")
	}
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("nodestest: %s is missing (Debian's passwd package)", tool)
		}
	}
	if o.IP == "" {
		o.IP = "127.0.0.2"
	}
	reapOrphans()
	s := &Server{IP: o.IP, Dir: t.TempDir(), Password: randomHex(12)}
	s.logFile = filepath.Join(s.Dir, "sshd.log")

	s.User = "pampa-t" + randomHex(4)
	usersMu.Lock()
	out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh",
		"--comment", "pampa test, pid "+strconv.Itoa(os.Getpid()), s.User).CombinedOutput()
	usersMu.Unlock()
	if err != nil {
		t.Fatalf("nodestest: useradd %s: %v: %s", s.User, err, out)
	}
	t.Cleanup(func() { removeUser(t, s.User) })
	u, err := user.Lookup(s.User)
	if err != nil {
		t.Fatalf("nodestest: %v", err)
	}
	s.Home = u.HomeDir
	s.UID, _ = strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(s.User + ":" + s.Password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("nodestest: chpasswd: %v: %s", err, out)
	}

	// The user's key, authorized in ~/.ssh.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	var block *pem.Block
	if o.Passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(o.Passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.KeyFile = filepath.Join(s.Dir, "id_ed25519")
	if err := os.WriteFile(s.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	sshDir := filepath.Join(s.Home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), ssh.MarshalAuthorizedKey(sshPub), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sshDir, filepath.Join(sshDir, "authorized_keys")} {
		if err := os.Chown(p, s.UID, gid); err != nil {
			t.Fatal(err)
		}
	}

	// The host key.
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostBlock, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(s.Dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyFile, pem.EncodeToMemory(hostBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(hostPriv)
	s.HostKey = signer.PublicKey()

	// Privilege separation needs this directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s.Port = freePort(t, s.IP)
	config := filepath.Join(s.Dir, "sshd_config")
	cfg := fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile none
AllowUsers %s
PermitRootLogin no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
PrintMotd no
LogLevel VERBOSE
`, s.Addr(), hostKeyFile, s.User)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(Sshd, "-D", "-f", config, "-E", s.logFile)
	if out, err := exec.Command(Sshd, "-t", "-f", config).CombinedOutput(); err != nil {
		t.Fatalf("nodestest: sshd -t: %v: %s", err, out)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("nodestest: start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshd log of %s:\n%s", s.Addr(), s.Log())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("nodestest: sshd exited at start:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodestest: sshd does not listen on %s:\n%s", s.Addr(), s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Vanish makes the machine disappear at once, as on a power cut: sshd and
// every process of the user are SIGKILLed. The server cannot be started
// again.
func (s *Server) Vanish() {
	_ = s.cmd.Process.Kill()
	killAll(s.UID)
}

// WriteKnownHosts writes a known_hosts file holding this server's key (and
// the lines given) and returns its path.
func (s *Server) WriteKnownHosts(t testing.TB, extra ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	lines := append([]string{s.KnownHostsLine()}, extra...)
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Processes lists the pids of the user's processes, but for sshd's own
// (those serving the test's open connections).
func (s *Server) Processes() []int {
	var out []int
	for _, pid := range processesOf(s.UID) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(comm)) != "sshd" {
			out = append(out, pid)
		}
	}
	return out
}

// ProcessesLeft waits up to a few seconds for the user's processes (other
// than sshd) to end, and describes those still there: a remote command's
// shell may take a moment to go once its session has closed.
func (s *Server) ProcessesLeft() []string {
	var procs []int
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if procs = s.Processes(); len(procs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	var out []string
	for _, pid := range procs {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		out = append(out, fmt.Sprintf("%d %q", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return out
}

// DelegateCgroups gives the user a cgroup of its own, pampa-<user>, at the
// top of each named cgroup v1 hierarchy (cpu, memory, blkio), as an
// administrator would to let the user limit its workers. It fails the test
// if the machine has no such hierarchy. The cgroups are removed when the
// test ends, after the user's processes.
func (s *Server) DelegateCgroups(t testing.TB, controllers ...string) {
	t.Helper()
	for _, c := range controllers {
		dir := filepath.Join("/sys/fs/cgroup", c, "pampa-"+s.User)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("nodestest: delegate a %s cgroup: %v", c, err)
		}
		// Cleanups run last in, first out: this one before the user is
		// removed, so it kills the user's processes itself (a cgroup with
		// processes in it cannot be removed).
		t.Cleanup(func() {
			killAll(s.UID)
			removeCgroup(dir)
		})
		if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, s.UID, -1)
		}); err != nil {
			t.Fatalf("nodestest: chown %s: %v", dir, err)
		}
	}
}

// removeCgroup removes a cgroup and the ones under it, deepest first.
func removeCgroup(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	for i := 0; i < 50; i++ {
		if err := syscall.Rmdir(dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("nodestest: listen on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// removeUser kills the user's processes, then deletes the user and its
// home.
func removeUser(t testing.TB, name string) {
	u, err := user.Lookup(name)
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(u.Uid)
	killAll(uid)
	usersMu.Lock()
	out, err := exec.Command("userdel", "--remove", name).CombinedOutput()
	usersMu.Unlock()
	if err != nil && t != nil {
		t.Logf("nodestest: userdel %s: %v: %s", name, err, out)
	}
}

// killAll SIGKILLs every process of uid, one pid at a time, until none is
// left (or 5s pass).
func killAll(uid int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesOf(uid)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesOf lists the live (non-zombie) processes whose real uid is uid.
func processesOf(uid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var realUID = -1
		zombie := false
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "Uid:") {
				if f := strings.Fields(line); len(f) > 1 {
					realUID, _ = strconv.Atoi(f[1])
				}
			}
			if strings.HasPrefix(line, "State:") && strings.Contains(line, "Z") {
				zombie = true
			}
		}
		if realUID == uid && !zombie {
			pids = append(pids, pid)
		}
	}
	return pids
}

// reapOrphans deletes the test users whose test binary is gone.
func reapOrphans() {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 5 || !strings.HasPrefix(f[0], "pampa-t") || !strings.HasPrefix(f[4], "pampa test, pid ") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[4], "pampa test, pid "))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue
		}
		removeUser(nil, f[0])
		for _, c := range []string{"cpu", "memory", "blkio"} {
			removeCgroup(filepath.Join("/sys/fs/cgroup", c, "pampa-"+f[0]))
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WaitFor polls cond every 50ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
