package nodes

// Error paths of connecting and running commands, against an in-process
// SSH server whose every answer the test controls.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fakeServer is an in-process SSH server.
type fakeServer struct {
	t        *testing.T
	l        net.Listener
	hostKey  ssh.Signer
	password string
	userKey  ssh.PublicKey // authorized key, if any

	mu    sync.Mutex
	execs []string
	// run handles an exec request; it returns the exit status. Default:
	// exit 0 at once.
	run func(cmd string, ch ssh.Channel) uint32
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, l: l, hostKey: newSigner(t), password: "right-password"}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if string(pw) == s.password {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		},
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if s.userKey != nil && string(k.Marshal()) == string(s.userKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(s.hostKey)
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
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c, cfg) }()
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload)
				cmd := string(req.Payload[4 : 4+n])
				_ = req.Reply(true, nil)
				s.mu.Lock()
				s.execs = append(s.execs, cmd)
				run := s.run
				s.mu.Unlock()
				status := uint32(0)
				if run != nil {
					status = run(cmd, ch)
				}
				if status != noExitStatus {
					_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
				}
				return
			}
		}()
	}
}

// noExitStatus, returned by a fakeServer's run, sends no exit status.
const noExitStatus = ^uint32(0)

func (s *fakeServer) target(t *testing.T, knownHosts string) *Target {
	host, port, _ := net.SplitHostPort(s.l.Addr().String())
	p, _ := strconv.Atoi(port)
	return &Target{Name: "fake", Host: host, Port: p, User: "u", Password: Secret(s.password), PasswordFrom: "$FAKE_PW",
		KnownHostsFile: knownHosts, MaxWorkers: 2}
}

func (s *fakeServer) knownHosts(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.l.Addr().String())}, s.hostKey.PublicKey())
	if err := os.WriteFile(f, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func newSigner(t testing.TB) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dialTest(t *testing.T, tg *Target, opts Options) (*Conn, error) {
	t.Helper()
	if opts.AgentSocket == "" {
		opts.AgentSocket = "-"
	}
	c, err := Dial(context.Background(), tg, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func wantStage(t *testing.T, err error, stage string, contains ...string) {
	t.Helper()
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Stage != stage {
		t.Fatalf("error = %v, want a %q NodeError", err, stage)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not mention %q", err, c)
		}
	}
}

func TestNodesDialHostKeys(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)

	t.Run("Known", func(t *testing.T) {
		if _, err := dialTest(t, s.target(t, s.knownHosts(t)), Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Changed", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "known_hosts")
		other := newSigner(t).PublicKey()
		line := knownhosts.Line([]string{knownhosts.Normalize(s.l.Addr().String())}, other)
		os.WriteFile(f, []byte(line+"\n"), 0o600)
		tg := s.target(t, f)
		tg.AcceptNewHostKey = true // never overrides a mismatch
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "host key", "different key", f+":1", ssh.FingerprintSHA256(s.hostKey.PublicKey()))
		var hk *HostKeyError
		if !errors.As(err, &hk) || hk.Unknown {
			t.Errorf("want a mismatch HostKeyError, got %#v", err)
		}
	})
	t.Run("UnknownRefused", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "known_hosts")
		_, err := dialTest(t, s.target(t, f), Options{})
		wantStage(t, err, "host key", "is not in", "ssh_accept_new_host_key")
		if _, statErr := os.Stat(f); statErr == nil {
			t.Error("a refused host was written to known_hosts")
		}
	})
	t.Run("UnknownAcceptedOnFirstUse", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "sub", "known_hosts")
		tg := s.target(t, f)
		tg.AcceptNewHostKey = true
		if _, err := dialTest(t, tg, Options{}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(f)
		if !strings.Contains(string(data), s.hostKey.PublicKey().Type()) || strings.Count(string(data), "\n") != 1 {
			t.Fatalf("known_hosts after first use: %q", data)
		}
		// Recorded: the next connection checks against it, even strict.
		tg.AcceptNewHostKey = false
		if _, err := dialTest(t, tg, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNodesDialAuth(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	kh := s.knownHosts(t)

	t.Run("WrongPassword", func(t *testing.T) {
		tg := s.target(t, kh)
		tg.Password = "wrong-hunter2"
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "authenticate", "u@", "password from $FAKE_PW")
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the password leaked into %q", err)
		}
	})
	t.Run("NoCredentials", func(t *testing.T) {
		tg := s.target(t, kh)
		tg.Password = ""
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "authenticate", "ssh_password_env")
	})

	// Keys: one encrypted with a passphrase.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	s.userKey = signer.PublicKey()
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("open-sesame"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)

	t.Run("KeyWithPassphrase", func(t *testing.T) {
		tg := s.target(t, kh)
		tg.Password, tg.KeyFile, tg.KeyPassphrase = "", keyFile, "open-sesame"
		if _, err := dialTest(t, tg, Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("KeyWrongPassphrase", func(t *testing.T) {
		tg := s.target(t, kh)
		tg.Password, tg.KeyFile, tg.KeyPassphrase, tg.KeyPassphraseFrom = "", keyFile, "not-it-secret", "$PP"
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "authenticate", "wrong passphrase", "$PP")
		if strings.Contains(err.Error(), "not-it-secret") {
			t.Errorf("the passphrase leaked into %q", err)
		}
	})
	t.Run("KeyMissingPassphrase", func(t *testing.T) {
		tg := s.target(t, kh)
		tg.Password, tg.KeyFile = "", keyFile
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "authenticate", "encrypted", "ssh_private_key_passphrase_env")
	})
	t.Run("Agent", func(t *testing.T) {
		keyring := agent.NewKeyring()
		if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(t.TempDir(), "agent.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _ = agent.ServeAgent(keyring, c) }()
			}
		}()
		tg := s.target(t, kh)
		tg.Password = ""
		if _, err := dialTest(t, tg, Options{AgentSocket: sock}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNodesDialTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("Refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		tg := &Target{Name: "gone", Host: "127.0.0.1", Port: addr.Port, User: "u", Password: "x", KnownHostsFile: "/nonexistent"}
		_, err := dialTest(t, tg, Options{})
		wantStage(t, err, "connect", "unreachable", "refused")
	})
	t.Run("SilentServer", func(t *testing.T) {
		// Accepts TCP connections and never speaks.
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		}()
		addr := l.Addr().(*net.TCPAddr)
		tg := &Target{Name: "mute", Host: "127.0.0.1", Port: addr.Port, User: "u", Password: "x", KnownHostsFile: "/nonexistent"}
		start := time.Now()
		_, err := dialTest(t, tg, Options{ConnectTimeout: 300 * time.Millisecond})
		wantStage(t, err, "ssh", "no SSH handshake", "300ms")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("gave up after %s, want about 300ms", d)
		}
	})
}

func TestNodesRunCommands(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, err := dialTest(t, s.target(t, s.knownHosts(t)), Options{CommandTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The command line is built from quoted arguments.
	s.run = func(cmd string, ch ssh.Channel) uint32 { ch.Write([]byte("out")); return 0 }
	out, err := c.Output(ctx, []string{"kill", "-s", "TERM", "12", "$(reboot)", "a'b"}, nil)
	if err != nil || string(out) != "out" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	if got, want := s.execs[len(s.execs)-1], `kill -s TERM 12 '$(reboot)' 'a'\''b'`; got != want {
		t.Errorf("command sent = %s, want %s", got, want)
	}

	// A failing command reports its status and error output.
	s.run = func(cmd string, ch ssh.Channel) uint32 { ch.Stderr().Write([]byte("no such process\n")); return 3 }
	_, err = c.Output(ctx, []string{"kill", "1"}, nil)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 3 || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("err = %v, want exit status 3 with its stderr", err)
	}

	// A command that hangs is cut off by the command timeout.
	release := make(chan struct{})
	defer close(release)
	s.run = func(cmd string, ch ssh.Channel) uint32 { <-release; return 0 }
	start := time.Now()
	_, err = c.Output(ctx, []string{"sleep", "1000"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("hung command: err = %v after %s, want a deadline error after about 300ms", err, time.Since(start))
	}
}
