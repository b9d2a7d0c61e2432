package nodes

// More error paths against the in-process SSH server: configuration
// mistakes, host keys, odd servers, commands that end strangely, and the
// checks a deploy makes before it uploads anything.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestNodesDialConfigErrors(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	kh := s.knownHosts(t)
	dir := t.TempDir()
	garbageKey := filepath.Join(dir, "garbage")
	os.WriteFile(garbageKey, []byte("not a key\n"), 0o600)
	badHosts := filepath.Join(dir, "bad_known_hosts")
	os.WriteFile(badHosts, []byte("127.0.0.1 ssh-ed25519 !!!\n"), 0o600)
	for _, tc := range []struct {
		name   string
		change func(*Target)
		stage  string
		says   []string
	}{
		{"NoHost", func(tg *Target) { tg.Host = "" }, "connect", []string{"net_remote_ip"}},
		{"NoUser", func(tg *Target) { tg.User = "" }, "connect", []string{"ssh_username"}},
		{"NoKnownHostsFile", func(tg *Target) { tg.KnownHostsFile = "" }, "host key", []string{"ssh_known_hosts_file"}},
		{"MalformedKnownHosts", func(tg *Target) { tg.KnownHostsFile = badHosts }, "host key", []string{"read known_hosts file"}},
		{"MissingKeyFile", func(tg *Target) { tg.KeyFile = filepath.Join(dir, "id_missing") }, "authenticate", []string{"read private key", "id_missing"}},
		{"GarbageKeyFile", func(tg *Target) { tg.KeyFile = garbageKey }, "authenticate", []string{"private key " + garbageKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := s.target(t, kh)
			tc.change(tg)
			_, err := dialTest(t, tg, Options{})
			wantStage(t, err, tc.stage, tc.says...)
			if !strings.HasPrefix(err.Error(), "node fake: "+tc.stage+": ") {
				t.Errorf("the message does not start with the node and stage: %v", err)
			}
		})
	}
}

func TestNodesDialHostKeyFiles(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	host := knownhosts.Normalize(s.l.Addr().String())

	t.Run("Revoked", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "known_hosts")
		line := "@revoked " + knownhosts.Line([]string{host}, s.hostKey.PublicKey())
		os.WriteFile(f, []byte(line+"\n"), 0o600)
		tg := s.target(t, f)
		tg.AcceptNewHostKey = true // never trusts a revoked key
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "host key", "marks as revoked")
		var hk *HostKeyError
		if !errors.As(err, &hk) || !hk.Revoked || hk.Host != host {
			t.Errorf("want a revoked HostKeyError for %s, got %#v", host, err)
		}
	})
	t.Run("AcceptNewAppendsOnALineOfItsOwn", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "known_hosts")
		other := knownhosts.Line([]string{"other.example"}, newSigner(t).PublicKey())
		os.WriteFile(f, []byte(other), 0o600) // no final newline
		tg := s.target(t, f)
		tg.AcceptNewHostKey = true
		if _, err := dialTest(t, tg, Options{}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(lines) != 2 || lines[0] != other || !strings.HasPrefix(lines[1], host+" ") {
			t.Fatalf("known_hosts = %q", data)
		}
		// Both entries parse, and the new one vouches for the host.
		tg.AcceptNewHostKey = false
		if _, err := dialTest(t, tg, Options{}); err != nil {
			t.Errorf("with the recorded key: %v", err)
		}
	})
	t.Run("AcceptNewCannotWrite", func(t *testing.T) {
		// The file's directory cannot be made (not even by root, in
		// /proc): the key cannot be recorded, and the connection is
		// refused rather than trusted unrecorded.
		tg := s.target(t, "/proc/self/pampa-nodes-test/known_hosts")
		tg.AcceptNewHostKey = true
		_, err := dialTest(t, tg, Options{})
		if err == nil || !strings.Contains(err.Error(), "trust "+host+" on first use") {
			t.Errorf("err = %v, want a trust-on-first-use failure", err)
		}
	})
}

func TestNodesDialServerHangsUp(t *testing.T) {
	t.Parallel()
	// Accepts TCP connections and closes them at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := l.Addr().(*net.TCPAddr)
	tg := &Target{Name: "rude", Host: "127.0.0.1", Port: addr.Port, User: "u", Password: "x", KnownHostsFile: "/nonexistent"}
	_, err = dialTest(t, tg, Options{})
	wantStage(t, err, "ssh", "closed the connection during the SSH handshake")
}

func TestNodesRunEndings(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	tg := s.target(t, s.knownHosts(t))
	c, err := dialTest(t, tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Target() != tg {
		t.Error("Target() is not the node dialled")
	}
	ctx := context.Background()

	// Standard input reaches the command.
	s.run = func(_ string, ch ssh.Channel) uint32 {
		data, _ := io.ReadAll(io.LimitReader(ch, 5))
		ch.Write(append([]byte("got "), data...))
		return 0
	}
	if out, err := c.Output(ctx, []string{"cat"}, strings.NewReader("hello")); err != nil || string(out) != "got hello" {
		t.Errorf("Output with stdin = %q, %v", out, err)
	}

	// Killed by a signal.
	s.run = func(_ string, ch ssh.Channel) uint32 {
		ch.Stderr().Write([]byte("segfault\n"))
		ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{"KILL", false, "", ""}))
		return noExitStatus
	}
	var stderr strings.Builder
	err = c.Run(ctx, []string{"prog", "worker"}, nil, nil, &stderr)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != -1 || exit.Signal != "KILL" || exit.Command != "prog" ||
		err.Error() != "prog: killed by signal KILL: segfault" || stderr.String() != "segfault\n" {
		t.Errorf("killed command: %v (%+v), stderr %q", err, exit, stderr.String())
	}

	// Ended with no status at all.
	s.run = func(string, ssh.Channel) uint32 { return noExitStatus }
	err = c.Run(ctx, []string{"prog"}, nil, nil, nil)
	if !errors.As(err, &exit) || exit.Status != -1 || !strings.Contains(exit.Signal, "no exit status") {
		t.Errorf("no exit status: %v", err)
	}

	// A NUL byte never reaches the server.
	before := len(s.execs)
	if err := c.Run(ctx, []string{"echo", "a\x00b"}, nil, nil, nil); !errors.Is(err, errNUL) || len(s.execs) != before {
		t.Errorf("NUL argument: %v, %d commands sent", err, len(s.execs)-before)
	}

	// A server without the SFTP subsystem: the file operations say so.
	_, err = c.SFTP()
	if err == nil || !strings.Contains(err.Error(), "does sshd offer the sftp subsystem") {
		t.Errorf("SFTP = %v", err)
	}
	if _, err := c.State(ctx, 0); err == nil || !strings.Contains(err.Error(), "sftp subsystem") {
		t.Errorf("State without SFTP = %v", err)
	}
	if _, err := c.Processes(ctx, nil); err == nil || !strings.Contains(err.Error(), "sftp subsystem") {
		t.Errorf("Processes without SFTP = %v", err)
	}
	if _, err := c.Stop(ctx, nil, 0); err == nil || !strings.Contains(err.Error(), "sftp subsystem") {
		t.Errorf("Stop without SFTP = %v", err)
	}
	if err := c.Tail(ctx, "/x.log", 3, false, io.Discard); err == nil || !strings.Contains(err.Error(), "sftp subsystem") {
		t.Errorf("Tail without SFTP = %v", err)
	}
	if _, err := c.Start(ctx, StartOptions{}); err == nil || !strings.Contains(err.Error(), "sftp subsystem") {
		t.Errorf("Start without SFTP = %v", err)
	}
	if _, err := c.Start(ctx, StartOptions{Workers: []string{"fake.3"}}); err == nil || !strings.Contains(err.Error(), "worker fake.3 is not one of node fake's (max_workers 2)") {
		t.Errorf("Start of a worker the node does not have = %v", err)
	}
	if _, err := c.Start(ctx, StartOptions{Supervisor: "runit"}); err == nil || !strings.Contains(err.Error(), `supervisor "runit": want systemd or pampa`) {
		t.Errorf("Start with an unknown supervisor = %v", err)
	}
}

func TestNodesDeployChecks(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, err := dialTest(t, s.target(t, s.knownHosts(t)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "run.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	uname := func(out string, status uint32) func(string, ssh.Channel) uint32 {
		return func(cmd string, ch ssh.Channel) uint32 {
			if cmd != "uname -s -m" {
				ch.Stderr().Write([]byte("unexpected command " + cmd))
				return 127
			}
			ch.Write([]byte(out))
			return status
		}
	}
	for _, tc := range []struct {
		name  string
		spec  DeploySpec
		uname func(string, ssh.Channel) uint32
		says  string
	}{
		{"ProgramName", DeploySpec{Binary: exe, Program: "../prog"}, nil, `program name "../prog": want a plain file name`},
		{"EnvName", DeploySpec{Binary: exe, Env: []EnvVar{{"1BAD", "x"}}}, nil, `environment variable name "1BAD"`},
		{"EnvValue", DeploySpec{Binary: exe, Env: []EnvVar{{"DSN", "a\nb"}}}, nil, "environment variable DSN: its value holds a line break"},
		{"NotELF", DeploySpec{Binary: script}, nil, "is not a Linux executable"},
		{"UnameFails", DeploySpec{Binary: exe}, uname("", 1), "check the node's system"},
		{"NotLinux", DeploySpec{Binary: exe}, uname("Darwin arm64\n", 0), `the node runs "Darwin arm64"; Pampa's workers need Linux`},
		{"OtherArch", DeploySpec{Binary: exe}, uname("Linux s390x\n", 0), "but the node is s390x: build it for the node"},
		{"NoSFTP", DeploySpec{Binary: exe, Version: "v1"}, uname("Linux "+unameArch(t)+"\n", 0), "sftp subsystem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.mu.Lock()
			s.run = tc.uname
			before := len(s.execs)
			s.mu.Unlock()
			d, err := c.Deploy(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Deploy = %+v, %v; want an error saying %q", d, err, tc.says)
			}
			s.mu.Lock()
			sent := len(s.execs) - before
			s.mu.Unlock()
			if tc.uname == nil && sent != 0 {
				t.Errorf("a spec refused locally still ran %d remote commands", sent)
			}
			if strings.Contains(err.Error(), "a\nb") {
				t.Errorf("a secret value leaked into %q", err)
			}
		})
	}
}

// unameArch is `uname -m` of this machine, which the test binary is
// built for.
func unameArch(t *testing.T) string {
	t.Helper()
	exe, _ := os.Executable()
	f, machine, err := checkBinary(exe)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return elfArch(machine)[0]
}
