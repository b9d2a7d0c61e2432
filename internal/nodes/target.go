package nodes

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Secret is a password or passphrase. It prints, logs and encodes as
// "REDACTED", so a Target can be shown or logged without leaking it.
type Secret string

// String hides the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalJSON hides the secret from encoding/json.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalText hides the secret from text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Target is one node as this package sees it: where to reach it, how to
// prove who we are, how to recognise it, and what its workers may use. The
// command line builds it from a pampa.Node, resolving secrets held in
// environment variables.
type Target struct {
	// Name is the node's name; worker ids are "<Name>.<n>".
	Name string
	// Host and Port are the SSH address. Port 0 means 22.
	Host string
	Port int
	// User is the SSH user.
	User string
	// Password authenticates User (password and keyboard-interactive).
	Password Secret
	// PasswordFrom says where Password came from ("ssh_password",
	// "$NODE_PASSWORD"), for messages that must not show it.
	PasswordFrom string
	// KeyFile is a private key file; KeyPassphrase decrypts it, if it is
	// encrypted.
	KeyFile       string
	KeyPassphrase Secret
	// KeyPassphraseFrom says where KeyPassphrase came from.
	KeyPassphraseFrom string
	// KnownHostsFile lists the host keys this machine trusts, in OpenSSH's
	// known_hosts format. Required.
	KnownHostsFile string
	// AcceptNewHostKey trusts a host seen for the first time (no entry in
	// KnownHostsFile) and records its key there, like OpenSSH's
	// StrictHostKeyChecking=accept-new. A changed key is refused either way.
	AcceptNewHostKey bool
	// Dir is the node's Pampa directory. A relative path (the default,
	// "pampa") is relative to the SSH user's home directory.
	Dir string
	// MaxWorkers is how many workers the node runs: ids Name.1 ..
	// Name.MaxWorkers.
	MaxWorkers int
	// Limits apply to each worker (to a node dispatcher, each limit times
	// its workers).
	Limits Limits
}

// Addr is host:port.
func (t *Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// Dest is user@host:port, for messages.
func (t *Target) Dest() string { return t.User + "@" + t.Addr() }

// WorkerIDs lists the node's worker ids.
func (t *Target) WorkerIDs() []string {
	ids := make([]string, t.MaxWorkers)
	for i := range ids {
		ids[i] = t.Name + "." + strconv.Itoa(i+1)
	}
	return ids
}

// NodeDispatcherID is the id of the node's node dispatcher, "<Name>.0":
// the one process that runs all the node's workers when `start` is asked
// for a node dispatcher.
func (t *Target) NodeDispatcherID() string { return nodeDispatcherID(t.Name) }

// nodeDispatcherID is the id of node's node dispatcher: "<node>.0".
func nodeDispatcherID(node string) string { return node + ".0" }

// dispatcherNode returns the node of a node dispatcher's id ("n1" for
// "n1.0"), or false for a worker's. Node names hold no dot, so the
// suffix alone tells them apart.
func dispatcherNode(id string) (string, bool) {
	node, ok := strings.CutSuffix(id, ".0")
	return node, ok && node != "" && !strings.Contains(node, ".")
}

// HasWorker reports whether id is one of the node's workers.
func (t *Target) HasWorker(id string) bool {
	for _, w := range t.WorkerIDs() {
		if w == id {
			return true
		}
	}
	return false
}

func (t *Target) dir() string {
	if t.Dir == "" {
		return DefaultDir
	}
	return t.Dir
}

// DefaultDir is the node directory when a node names none, relative to the
// SSH user's home.
const DefaultDir = "pampa"

// Limits cap what each worker of a node may use; 0 means no limit.
type Limits struct {
	// RAMMB is the worker's memory in MiB.
	RAMMB int `json:"ram_mb,omitempty"`
	// CPUPercent is the worker's CPU time in percent of one CPU (200 = two
	// CPUs).
	CPUPercent int `json:"cpu_percent,omitempty"`
	// DiskIOMbps caps the worker's reads and writes on the disk holding the
	// node directory, each, in megabits per second.
	DiskIOMbps int `json:"disk_io_mbps,omitempty"`
	// NetIOMbps caps the worker's network traffic in megabits per second.
	NetIOMbps int `json:"net_io_mbps,omitempty"`
}

// times is the limits of a process that runs n workers: each limit n
// times over, what n worker processes would have had between them.
func (l Limits) times(n int) Limits {
	return Limits{RAMMB: l.RAMMB * n, CPUPercent: l.CPUPercent * n, DiskIOMbps: l.DiskIOMbps * n, NetIOMbps: l.NetIOMbps * n}
}

// Any reports whether some limit is set.
func (l Limits) Any() bool {
	return l.RAMMB > 0 || l.CPUPercent > 0 || l.DiskIOMbps > 0 || l.NetIOMbps > 0
}

// Options tune connections and remote commands. Zero values take the
// defaults given.
type Options struct {
	// ConnectTimeout bounds the TCP connection and the SSH handshake,
	// authentication included. Default 10s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each remote command and file transfer step.
	// Default 2m.
	CommandTimeout time.Duration
	// AgentSocket is the ssh-agent socket to try keys from. Default:
	// $SSH_AUTH_SOCK when set; "-" means no agent.
	AgentSocket string
}

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 2 * time.Minute
	}
	return o
}

// NodeError is a failure on one node. Its message starts with the node's
// name, and never holds a secret.
type NodeError struct {
	Node string
	// Stage is what was being done: "connect", "host key", "authenticate",
	// "deploy", "start", ...
	Stage string
	Err   error
}

func (e *NodeError) Error() string { return fmt.Sprintf("node %s: %s: %v", e.Node, e.Stage, e.Err) }

func (e *NodeError) Unwrap() error { return e.Err }
