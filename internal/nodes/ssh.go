package nodes

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Conn is an SSH connection to one node, with an SFTP session opened on
// first use. It is safe for concurrent use.
type Conn struct {
	t      *Target
	opts   Options
	client *ssh.Client

	sftpOnce sync.Once
	sftp     *sftp.Client
	sftpErr  error

	dirOnce sync.Once
	dir     string // absolute node directory
	home    string
	dirErr  error

	// hookUpload, when set (by tests), is called before each file of a
	// deploy is uploaded.
	hookUpload func(name string)
}

// Dial connects and authenticates to the node, verifying its host key. The
// TCP connection and the whole handshake are bounded by ConnectTimeout.
// Errors are *NodeError values whose Stage says what failed: "connect" (the
// node is unreachable), "host key", "authenticate" or "ssh".
func Dial(ctx context.Context, t *Target, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	fail := func(stage string, err error) (*Conn, error) {
		return nil, &NodeError{Node: t.Name, Stage: stage, Err: err}
	}
	if t.Host == "" {
		return fail("connect", errors.New("no address: set net_remote_ip on the node"))
	}
	if t.User == "" {
		return fail("connect", errors.New("no SSH user: set ssh_username on the node"))
	}
	hostKeys, algos, err := hostKeyCheck(t)
	if err != nil {
		return fail("host key", err)
	}
	auth, tried, closeAgent, err := authMethods(t, opts)
	if err != nil {
		return fail("authenticate", err)
	}
	defer closeAgent()

	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	addr := t.Addr()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("connect", unreachable(addr, opts.ConnectTimeout, err))
	}
	// The handshake has no context of its own: a deadline on the socket
	// bounds it, and closing the socket ends it when ctx does.
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algos,
		Timeout:           opts.ConnectTimeout,
	}
	sconn, chans, reqs, err := ssh.NewClientConn(raw, addr, cfg)
	if closed := !stop(); closed || err != nil {
		raw.Close()
		if closed {
			// The deadline (or the caller) cut the handshake short; the
			// error is only the closed socket.
			err = ctx.Err()
		}
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk):
			return fail("host key", hk)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fail("authenticate", fmt.Errorf("%s refused the credentials tried (%s): check ssh_username and the secret", t.Dest(), strings.Join(tried, ", ")))
		case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
			return fail("ssh", fmt.Errorf("no SSH handshake with %s within %s", addr, opts.ConnectTimeout))
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return fail("ssh", fmt.Errorf("%s closed the connection during the SSH handshake (is it an SSH server? does it allow this client?)", addr))
		}
		return fail("ssh", fmt.Errorf("handshake with %s: %w", addr, err))
	}
	_ = raw.SetDeadline(time.Time{})
	return &Conn{t: t, opts: opts, client: ssh.NewClient(sconn, chans, reqs)}, nil
}

// unreachable explains a failed TCP connection.
func unreachable(addr string, timeout time.Duration, err error) error {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Errorf("unreachable: cannot resolve %q", dnsErr.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("unreachable: %s refused the connection (is sshd running there, on this port?)", addr)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("unreachable: no route to %s", addr)
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("unreachable: no answer from %s within %s", addr, timeout)
	}
	return fmt.Errorf("unreachable: %w", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// authMethods lists the ways to authenticate, public keys first: the key
// file, then the ssh-agent's keys; then the password. tried describes them
// for error messages, without secrets. closeAgent releases the agent
// connection once the handshake is over.
func authMethods(t *Target, opts Options) (methods []ssh.AuthMethod, tried []string, closeAgent func(), err error) {
	closeAgent = func() {}
	var signers []ssh.Signer
	if t.KeyFile != "" {
		s, err := loadKey(t)
		if err != nil {
			return nil, nil, closeAgent, err
		}
		signers = append(signers, s)
		tried = append(tried, "key "+t.KeyFile)
	}
	sock := opts.AgentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" && sock != "-" {
		if c, err := net.DialTimeout("unix", sock, opts.ConnectTimeout); err == nil {
			closeAgent = func() { c.Close() }
			if as, err := agent.NewClient(c).Signers(); err == nil && len(as) > 0 {
				signers = append(signers, as...)
				tried = append(tried, fmt.Sprintf("ssh-agent (%d keys)", len(as)))
			}
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if t.Password != "" {
		pw := string(t.Password)
		methods = append(methods, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
		from := t.PasswordFrom
		if from == "" {
			from = "the config"
		}
		tried = append(tried, "password from "+from)
	}
	if len(methods) == 0 {
		closeAgent()
		return nil, nil, func() {}, errors.New("no credentials: set ssh_password_env (or ssh_password) or ssh_private_key_file on the node, or run an ssh-agent")
	}
	return methods, tried, closeAgent, nil
}

// loadKey reads and, if needed, decrypts the node's private key.
func loadKey(t *Target) (ssh.Signer, error) {
	pem, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return s, nil
	case !errors.As(err, &missing):
		return nil, fmt.Errorf("private key %s: %w", t.KeyFile, err)
	case t.KeyPassphrase == "":
		return nil, fmt.Errorf("private key %s is encrypted: name the environment variable holding its passphrase in ssh_private_key_passphrase_env", t.KeyFile)
	}
	s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(t.KeyPassphrase))
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, fmt.Errorf("private key %s: wrong passphrase (from %s)", t.KeyFile, t.KeyPassphraseFrom)
	}
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", t.KeyFile, err)
	}
	return s, nil
}

// Close closes the SFTP session and the connection.
func (c *Conn) Close() error {
	if c.sftp != nil {
		c.sftp.Close()
	}
	return c.client.Close()
}

// Target returns the node the connection is to.
func (c *Conn) Target() *Target { return c.t }

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Command string // the program, for messages
	Status  int    // -1 when it was killed by a signal
	Signal  string
	Stderr  string // the end of its error output
}

func (e *ExitError) Error() string {
	what := fmt.Sprintf("exit status %d", e.Status)
	if e.Signal != "" {
		what = "killed by signal " + e.Signal
	}
	if e.Stderr != "" {
		return fmt.Sprintf("%s: %s: %s", e.Command, what, e.Stderr)
	}
	return fmt.Sprintf("%s: %s", e.Command, what)
}

// Run runs argv on the node, each argument quoted (see [Command]), until it
// ends or ctx is done, when the remote command is signalled and the session
// closed. stdin, stdout and stderr may be nil.
func (c *Conn) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	line, err := Command(argv...)
	if err != nil {
		return err
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return fmt.Errorf("open SSH session: %w", err)
	}
	defer sess.Close()
	var errTail tailBuffer
	sess.Stdin = stdin
	sess.Stdout = stdout
	if stderr != nil {
		sess.Stderr = io.MultiWriter(stderr, &errTail)
	} else {
		sess.Stderr = &errTail
	}
	if err := sess.Start(line); err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		// Wait returns once the session's output has been copied: only
		// then may the caller read what stdout and stderr received.
		<-done
		return fmt.Errorf("run %s: %w", argv[0], ctx.Err())
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		status := exit.ExitStatus()
		if exit.Signal() != "" {
			status = -1 // the library reports 0 for a command killed by a signal
		}
		return &ExitError{Command: argv[0], Status: status, Signal: exit.Signal(), Stderr: errTail.String()}
	case errors.As(err, &missing):
		return &ExitError{Command: argv[0], Status: -1, Signal: "unknown (no exit status)", Stderr: errTail.String()}
	}
	return fmt.Errorf("run %s: %w", argv[0], err)
}

// Output runs argv with CommandTimeout and returns its standard output.
func (c *Conn) Output(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CommandTimeout)
	defer cancel()
	var out bytes.Buffer
	err := c.Run(ctx, argv, stdin, &out, nil)
	return out.Bytes(), err
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2048

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailMax {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

// SFTP returns the connection's SFTP session.
func (c *Conn) SFTP() (*sftp.Client, error) {
	c.sftpOnce.Do(func() {
		c.sftp, c.sftpErr = sftp.NewClient(c.client, sftp.UseConcurrentWrites(true))
		if c.sftpErr != nil {
			c.sftpErr = fmt.Errorf("open SFTP session (does sshd offer the sftp subsystem?): %w", c.sftpErr)
		}
	})
	return c.sftp, c.sftpErr
}

// Dir returns the node directory as an absolute path, and the SSH user's
// home directory.
func (c *Conn) Dir() (dir, home string, err error) {
	c.dirOnce.Do(func() {
		fs, err := c.SFTP()
		if err != nil {
			c.dirErr = err
			return
		}
		c.home, err = fs.Getwd()
		if err != nil {
			c.dirErr = fmt.Errorf("find the home directory: %w", err)
			return
		}
		d := c.t.dir()
		switch {
		case d == "~":
			d = c.home
		case strings.HasPrefix(d, "~/"):
			d = c.home + d[1:]
		case !strings.HasPrefix(d, "/"):
			d = strings.TrimSuffix(c.home, "/") + "/" + d
		}
		c.dir = cleanPath(d)
	})
	return c.dir, c.home, c.dirErr
}

// watch closes the connection if ctx is done before the returned stop is
// called: SFTP calls take no context, and this is what ends them.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.client.Close() })
}

// bounded runs fn under CommandTimeout, closing the connection if it
// overruns. A timeout is reported as such rather than as the closed
// connection it causes.
func (c *Conn) bounded(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return c.boundedFor(ctx, c.opts.CommandTimeout, what, fn)
}

// boundedFor is bounded with a timeout of its own.
func (c *Conn) boundedFor(ctx context.Context, timeout time.Duration, what string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := c.watch(ctx)
	err := fn(ctx)
	if !stop() && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: timed out after %s", what, timeout)
		}
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return err
}
