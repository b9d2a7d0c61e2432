package nodes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// The node directory (see doc.go for the picture):
//
//	<dir>/releases/<release>/   one deployed program: binary, config, env, RELEASE.json
//	<dir>/current               symlink to releases/<release>, swapped atomically
//	<dir>/run/<worker>.pid      a running worker's pid
//	<dir>/run/<worker>.json     what started it: pid, start time, release, limits
//	<dir>/run/<worker>.super.json  its supervisor: kind, restarts, last exit, whether it gave up
//	<dir>/run/<node>.0.*        the same of a node dispatcher, the one process of all the node's workers
//	<dir>/run/<node>.lock       held through each start on the node
//	<dir>/logs/worker.<id>.log  the worker's own log (rotated by the worker)
//	<dir>/logs/worker.<id>.out  its standard output and error (start-up failures, panics)
//	<dir>/logs/node.<node>.log  a node dispatcher's log (id <node>.0), its workers' lines included
//	<dir>/logs/node.<node>.out  and its standard output and error
const (
	releasesDir  = "releases"
	currentLink  = "current"
	runDir       = "run"
	logsDir      = "logs"
	manifestName = "RELEASE.json"
	envName      = "env"
	configName   = "pampa.yaml"
	incomingPfx  = ".incoming-"
)

func cleanPath(p string) string { return path.Clean(p) }

func pidPath(dir, id string) string  { return path.Join(dir, runDir, id+".pid") }
func metaPath(dir, id string) string { return path.Join(dir, runDir, id+".json") }
func lockPath(dir, id string) string { return path.Join(dir, runDir, id+".lock") }

// nodeLockPath is held through each start on the node (node names hold
// no dot, so it is no worker's lock).
func nodeLockPath(dir, node string) string { return path.Join(dir, runDir, node+".lock") }

// kindOf names what id is, for messages: a worker or a node dispatcher.
func kindOf(id string) string {
	if _, ok := dispatcherNode(id); ok {
		return "node dispatcher"
	}
	return "worker"
}

// superPath is the record of the worker's supervisor.
func superPath(dir, id string) string { return path.Join(dir, runDir, id+superExt) }

const superExt = ".super.json"

// LogPath is the worker's own log file on the node. A node dispatcher's
// (id <node>.0) is node.<node>.log, the name `pampa node` gives its log:
// its workers log there too.
func LogPath(dir, id string) string { return path.Join(dir, logsDir, logBase(id)+".log") }

// OutPath is the file holding the worker's standard output and error.
func OutPath(dir, id string) string { return path.Join(dir, logsDir, logBase(id)+".out") }

func logBase(id string) string {
	if node, ok := dispatcherNode(id); ok {
		return "node." + node
	}
	return "worker." + id
}

// Release describes one deployed program. It is stored in the release's
// RELEASE.json; `current` points at the one new workers start from.
type Release struct {
	ID         string    `json:"id"`
	Version    string    `json:"version"`
	Program    string    `json:"program"` // the binary's file name in the release
	SHA256     string    `json:"sha256"`  // of the binary
	Arch       string    `json:"arch"`    // uname -m of the node it was checked against
	Config     string    `json:"config,omitempty"`
	EnvNames   []string  `json:"env,omitempty"` // names only: values are secrets
	DeployedAt time.Time `json:"deployed_at"`
	DeployedBy string    `json:"deployed_by"`
}

// WorkerProcess is what `start` records about a worker process it started,
// in run/<id>.json next to the pid file.
type WorkerProcess struct {
	ID         string        `json:"id"`
	PID        int           `json:"pid"`
	StartTicks uint64        `json:"start_ticks"` // field 22 of /proc/<pid>/stat: tells a reused pid apart
	Release    string        `json:"release"`
	StartedAt  time.Time     `json:"started_at"`
	GraceMS    int64         `json:"grace_ms"` // the worker's --grace
	Limits     []LimitReport `json:"limits,omitempty"`
	// Members is, for a node dispatcher, how many workers run in its
	// process: <node>.1 .. <node>.Members.
	Members int `json:"members,omitempty"`
}

// procStat is what we read from /proc/<pid>/stat.
type procStat struct {
	State      byte
	StartTicks uint64
}

// parseProcStat parses /proc/<pid>/stat. The command name, in
// parentheses, may hold spaces and parentheses itself: the fields after
// it start after the last ')'.
func parseProcStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return procStat{State: f[0][0], StartTicks: start}, nil
}

// cmdlineHasID reports whether a NUL-separated command line holds the two
// arguments "--id" and id in a row (or "--id=<id>"): exact arguments, so
// that worker local.1 never matches local.10. A node dispatcher's process,
// `pampa node --node <node>`, has no --id: for id <node>.0, "--node
// <node>" counts as well.
func cmdlineHasID(cmdline []byte, id string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	node, isNode := dispatcherNode(id)
	for i, a := range args {
		if (a == "--id" || a == "-id") && i+1 < len(args) && args[i+1] == id {
			return true
		}
		if a == "--id="+id || a == "-id="+id {
			return true
		}
		if isNode && ((a == "--node" || a == "-node") && i+1 < len(args) && args[i+1] == node || a == "--node="+node || a == "-node="+node) {
			return true
		}
	}
	return false
}

// readFunc reads a whole file: from the local file system on the node
// itself, over SFTP from elsewhere.
type readFunc func(name string) ([]byte, error)

// ProcessState is whether a worker's recorded process is running.
type ProcessState struct {
	Running bool           `json:"running"`
	PID     int            `json:"pid,omitempty"`
	Record  *WorkerProcess `json:"record,omitempty"`
	// Why explains a worker that is not running: never started, stopped,
	// or died (the pid is gone, a zombie, or another program's now).
	Why string `json:"why,omitempty"`
	// Stale is set when a pid file exists but its process is gone.
	Stale bool `json:"stale,omitempty"`
}

// processState checks a worker's pid file against /proc: the pid must be
// alive, not a zombie, started at the recorded time, and be this worker's
// (its command line holds --id <id>).
func processState(read readFunc, dir, id string) ProcessState {
	rec, err := readRecord(read, dir, id)
	if errors.Is(err, fs.ErrNotExist) {
		return ProcessState{Why: "no pid file: not started, or stopped"}
	}
	if err != nil {
		return ProcessState{Why: err.Error(), Stale: true}
	}
	st := ProcessState{PID: rec.PID, Record: rec}
	if why := procCheck(read, rec.PID, rec.StartTicks, id, ""); why != "" {
		st.Why, st.Stale = why, true
		return st
	}
	st.Running = true
	return st
}

// procCheck says why pid is not the process recorded, or "" when it is:
// alive, not a zombie, started at ticks (when known), with "--id <id>"
// (and arg, when set) among its arguments.
func procCheck(read readFunc, pid int, ticks uint64, id, arg string) string {
	proc := "/proc/" + strconv.Itoa(pid)
	statData, err := read(proc + "/stat")
	if err != nil {
		return fmt.Sprintf("died: pid %d is gone", pid)
	}
	ps, err := parseProcStat(statData)
	switch {
	case err != nil:
		return fmt.Sprintf("pid %d: %v", pid, err)
	case ticks != 0 && ps.StartTicks != ticks:
		return fmt.Sprintf("died: pid %d now belongs to another process", pid)
	case ps.State == 'Z' || ps.State == 'X':
		return fmt.Sprintf("died: pid %d has exited", pid)
	}
	cmdline, err := read(proc + "/cmdline")
	if err != nil || !cmdlineHasID(cmdline, id) || (arg != "" && !hasArg(cmdline, arg)) {
		return fmt.Sprintf("died: pid %d now runs another program", pid)
	}
	return ""
}

func hasArg(cmdline []byte, arg string) bool {
	for _, a := range strings.Split(string(cmdline), "\x00") {
		if a == arg {
			return true
		}
	}
	return false
}

// readRecord reads run/<id>.json, falling back to a bare run/<id>.pid.
func readRecord(read readFunc, dir, id string) (*WorkerProcess, error) {
	data, err := read(metaPath(dir, id))
	if err == nil {
		var rec WorkerProcess
		if err := json.Unmarshal(data, &rec); err != nil || rec.PID <= 0 {
			return nil, fmt.Errorf("unreadable %s", metaPath(dir, id))
		}
		return &rec, nil
	}
	data, err = read(pidPath(dir, id))
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("unreadable %s", pidPath(dir, id))
	}
	return &WorkerProcess{ID: id, PID: pid}, nil
}
