package nodes

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a refused host key: unknown to the known_hosts file (and
// first use not allowed), changed, or revoked.
type HostKeyError struct {
	Host      string // as written in known_hosts: "host" or "[host]:port"
	File      string // the known_hosts file
	Presented string // key type and SHA256 fingerprint the host presented
	Unknown   bool   // no entry for the host
	Revoked   bool   // the presented key is marked @revoked
	KnownAt   []string
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key verification failed: %s presented %s, which %s marks as revoked", e.Host, e.Presented, e.File)
	case e.Unknown:
		return fmt.Sprintf("host key verification failed: %s is not in %s (it presented %s). "+
			"Check the key with the host's administrator and add it (ssh-keyscan -p PORT HOST >> %s, then compare fingerprints), "+
			"or set ssh_accept_new_host_key: true on the node to trust it on first use",
			e.Host, e.File, e.Presented, e.File)
	default:
		return fmt.Sprintf("host key verification failed: %s presented %s, but %s holds a different key for it (%s). "+
			"Someone may be intercepting the connection, or the host was reinstalled; "+
			"if the change is legitimate, remove the old entry (ssh-keygen -R '%s' -f %s) and add the new key",
			e.Host, e.Presented, e.File, strings.Join(e.KnownAt, ", "), e.Host, e.File)
	}
}

// knownHostsMu serialises appends to known_hosts files by this process.
var knownHostsMu sync.Mutex

// hostKeyCheck builds the host key callback for t and the host key
// algorithms to ask for: those of the keys known for the host, so that a
// host with several keys presents one the file can vouch for.
func hostKeyCheck(t *Target) (ssh.HostKeyCallback, []string, error) {
	file := t.KnownHostsFile
	if file == "" {
		return nil, nil, errors.New("no known_hosts file: set ssh_known_hosts_file on the node (default ~/.ssh/known_hosts)")
	}
	base, err := loadKnownHosts(file)
	if err != nil {
		return nil, nil, err
	}
	algos := knownAlgorithms(base, t.Addr())
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := base(hostname, remote, key)
		if err == nil {
			return nil
		}
		host := knownhosts.Normalize(hostname)
		presented := key.Type() + " " + ssh.FingerprintSHA256(key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case errors.As(err, &revoked):
			return &HostKeyError{Host: host, File: file, Presented: presented, Revoked: true}
		case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
			if !t.AcceptNewHostKey {
				return &HostKeyError{Host: host, File: file, Presented: presented, Unknown: true}
			}
			if err := appendKnownHost(file, host, key); err != nil {
				return fmt.Errorf("trust %s on first use: %w", host, err)
			}
			return nil
		case errors.As(err, &keyErr):
			var at []string
			for _, k := range keyErr.Want {
				at = append(at, fmt.Sprintf("%s:%d %s", k.Filename, k.Line, k.Key.Type()))
			}
			return &HostKeyError{Host: host, File: file, Presented: presented, KnownAt: at}
		}
		return fmt.Errorf("host key verification failed: %w", err)
	}
	return cb, algos, nil
}

// loadKnownHosts reads a known_hosts file. A missing file holds no key.
func loadKnownHosts(file string) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts file: %w", err)
	}
	return cb, nil
}

// probeKey is a key no host has: checking it lists the keys known for a
// host.
var probeKey, _ = ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())

// knownAlgorithms returns the host key algorithms of the keys known for
// addr, or nil (the library's defaults) when none is known.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	remote, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		remote = &net.TCPAddr{IP: net.IPv4zero}
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(cb(addr, remote, probeKey), &keyErr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, k := range keyErr.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// appendKnownHost records a host's key, creating the file (and its
// directory) if needed.
func appendKnownHost(file, host string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	line := knownhosts.Line([]string{host}, key) + "\n"
	// Start on a line of its own if the file does not end with one.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && !bytes.Equal(last, []byte("\n")) {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return err
	}
	return f.Sync()
}
