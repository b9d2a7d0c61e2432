package pampa

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Node is a machine that runs workers, reached over SSH. Its workers are
// named "<name>.1" .. "<name>.<MaxWorkers>".
type Node struct {
	// Name identifies the node; worker ids start with it.
	Name string `yaml:"name"`
	// Host is the SSH address. :net_remote_ip.
	Host string `yaml:"net_remote_ip"`
	// Port is the SSH port. Default 22. :ssh_port.
	Port int `yaml:"ssh_port"`
	// User is the SSH user. :ssh_username.
	User string `yaml:"ssh_username"`
	// Password authenticates the SSH user. Prefer PasswordEnv: a secret in a
	// config file is a secret in every copy of it. :ssh_password.
	Password string `yaml:"ssh_password"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"ssh_password_env"`
	// KeyFile is a private key file. :ssh_private_key_file.
	KeyFile string `yaml:"ssh_private_key_file"`
	// KeyPassphraseEnv names an environment variable holding the passphrase
	// of an encrypted KeyFile.
	KeyPassphraseEnv string `yaml:"ssh_private_key_passphrase_env"`
	// KnownHostsFile lists the host keys trusted for SSH, in OpenSSH's
	// known_hosts format. Default ~/.ssh/known_hosts. A host whose key is
	// not there, or differs, is refused.
	KnownHostsFile string `yaml:"ssh_known_hosts_file"`
	// AcceptNewHostKey trusts the node's host key on first use and records
	// it in KnownHostsFile (OpenSSH's StrictHostKeyChecking=accept-new). A
	// changed key is still refused. Default false: an explicit opt-in.
	AcceptNewHostKey bool `yaml:"ssh_accept_new_host_key"`
	// RemoteDir is the node's Pampa directory (releases, pid files, logs).
	// Default "pampa"; a relative path is relative to the SSH user's home.
	RemoteDir string `yaml:"remote_dir"`
	// MaxWorkers is how many worker processes the node runs. Required, ≥ 1.
	MaxWorkers int `yaml:"max_workers"`
	// Per-worker limits; 0 means none. :max_ram, :max_cpu, :max_disk_io, :max_net_io.
	MaxRAMMB      int `yaml:"max_ram"`
	MaxCPUPercent int `yaml:"max_cpu"`
	MaxDiskIOMbps int `yaml:"max_disk_io"`
	MaxNetIOMbps  int `yaml:"max_net_io"`
	// Files are files and directories that `pampa nodes deploy` ships to
	// this node in each release, besides the program, the config and the
	// files of the jobs its workers may serve ([Job.Files]). Paths are
	// relative to the config file's directory (the working directory for
	// a cluster defined in Go) and keep that place in the release, beside
	// its pampa.yaml. Default none.
	Files []string `yaml:"files"`
}

// WithDefaults returns a copy of n with defaults filled in.
func (n Node) WithDefaults() Node {
	if n.Port == 0 {
		n.Port = 22
	}
	return n
}

// Validate checks a node after defaults.
func (n *Node) Validate() error {
	bad := func(field string, value any, why string) error {
		return &ConfigError{Node: n.Name, Field: field, Value: fmt.Sprint(value), Reason: why}
	}
	if n.Name == "" {
		return bad("name", "", "a node needs a name")
	}
	if err := checkIdentifier(n.Name, false); err != nil {
		return bad("name", n.Name, err.Error())
	}
	if n.MaxWorkers < 1 {
		return bad("max_workers", n.MaxWorkers, "must be at least 1")
	}
	if n.Port < 1 || n.Port > 65535 {
		return bad("ssh_port", n.Port, "must be between 1 and 65535")
	}
	if strings.ContainsAny(n.RemoteDir, "\x00\n\r") {
		return bad("remote_dir", n.RemoteDir, "must not hold line breaks or NUL bytes")
	}
	for _, l := range []struct {
		field string
		v     int
	}{{"max_ram", n.MaxRAMMB}, {"max_cpu", n.MaxCPUPercent}, {"max_disk_io", n.MaxDiskIOMbps}, {"max_net_io", n.MaxNetIOMbps}} {
		if l.v < 0 {
			return bad(l.field, l.v, "must not be negative (0 means no limit)")
		}
	}
	if f, why := checkFiles(n.Files); why != "" {
		return bad("files", f, why)
	}
	return nil
}

// checkFiles checks the paths of a files list, each one shipped at the
// same place in the release as it has beside the config: it returns the
// first bad one and why, or "" and "".
func checkFiles(files []string) (string, string) {
	for _, f := range files {
		clean := path.Clean(filepath.ToSlash(f))
		switch {
		case f == "":
			return f, "an empty path: name a file or a directory"
		case strings.ContainsAny(f, "\x00\n\r"):
			return f, "must not hold line breaks or NUL bytes"
		case filepath.IsAbs(f) || path.IsAbs(clean):
			return f, "must be relative to the config file's directory, where it is taken from and where it is placed in the release"
		case clean == ".":
			return f, "name the files or directories to ship, not the config file's directory itself"
		case clean == ".." || strings.HasPrefix(clean, "../"):
			return f, "must stay inside the config file's directory: it keeps its place in the release, which has nothing above it"
		}
	}
	return "", ""
}

// WorkerIDs lists the ids of the node's workers, "<name>.1" first.
func (n *Node) WorkerIDs() []string {
	ids := make([]string, n.MaxWorkers)
	for i := range ids {
		ids[i] = WorkerID(n.Name, i+1)
	}
	return ids
}

// WorkerID builds the id of a node's n-th worker.
func WorkerID(node string, n int) string { return node + "." + strconv.Itoa(n) }

// ParseWorkerID splits "<node>.<n>" into its node name and number.
func ParseWorkerID(id string) (node string, n int, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", 0, fmt.Errorf("worker id %q: want <node>.<number>, such as local.1", id)
	}
	n, err = strconv.Atoi(id[i+1:])
	if err != nil || n < 1 || strconv.Itoa(n) != id[i+1:] {
		return "", 0, fmt.Errorf("worker id %q: %q is not a worker number ≥ 1", id, id[i+1:])
	}
	return id[:i], n, nil
}
