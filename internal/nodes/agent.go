package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// The agent is the node-side half of `start`: the deployed program itself,
// run over SSH as `<program> nodes agent serve`, reading one JSON request
// on its standard input and writing one JSON response. Running the
// program that was deployed, rather than a shell script, keeps pid files,
// detaching and resource limits in tested Go code, and needs nothing on the
// node but the program.

// agentProtocol is the version of the request and response formats. 2:
// workers are supervised; 3: a node dispatcher may be asked for
// (NodeWorkers). A request asks for the lowest version that has what it
// needs, so a node still running an older release starts its workers as
// before.
const (
	agentProtocol    = 3
	minAgentProtocol = 2
)

// startRequest asks the agent to start workers.
type startRequest struct {
	Protocol int    `json:"protocol"`
	Op       string `json:"op"` // "start"
	Dir      string `json:"dir"`
	Release  string `json:"release"`
	// Node is the node's name (protocol 3; before, read from Workers).
	Node string `json:"node,omitempty"`
	// Workers are the ids to start.
	Workers []string `json:"workers"`
	// NodeWorkers, when set, asks for the node dispatcher instead
	// (protocol 3): Workers is then <node>.0 alone, run as `node --node
	// NODE --workers NodeWorkers`, and refused while a worker of the node
	// runs as a process of its own.
	NodeWorkers int `json:"node_workers,omitempty"`
	// WorkerArgs follow `worker --id ID --config FILE --log-dir DIR --grace G`
	// (or `node --node NODE --workers N ...`).
	WorkerArgs []string `json:"worker_args,omitempty"`
	GraceMS    int64    `json:"grace_ms"`
	Limits     Limits   `json:"limits"`
	// StrictLimits refuses to start a worker whose limits cannot all be
	// applied.
	StrictLimits bool `json:"strict_limits,omitempty"`
	// SettleMS is how long a new worker must stay up to count as started.
	SettleMS int64 `json:"settle_ms"`
	// Supervisor is the kind wanted: SupervisorSystemd, SupervisorPampa,
	// or "" for systemd where usable, else Pampa's own.
	Supervisor string        `json:"supervisor,omitempty"`
	Restart    RestartPolicy `json:"restart"`
}

// startResponse is the agent's answer.
type startResponse struct {
	Protocol    int            `json:"protocol"`
	Supervision SupervisorPlan `json:"supervision"`
	Limits      []LimitReport  `json:"limits,omitempty"`
	Workers     []WorkerStart  `json:"workers"`
	Error       string         `json:"error,omitempty"`
}

// WorkerStart is the outcome of starting one worker.
type WorkerStart struct {
	ID string `json:"id"`
	// PID is the worker's process, new or already running.
	PID int `json:"pid,omitempty"`
	// Started is set when this call started it; AlreadyRunning when it
	// was running before (or its supervisor was, waiting to restart it).
	Started        bool `json:"started,omitempty"`
	AlreadyRunning bool `json:"already_running,omitempty"`
	// Supervisor is the kind of its supervisor; Unsupervised is set for a
	// worker found running without one (started by an earlier Pampa, or
	// its supervisor was killed): `nodes restart` supervises it.
	Supervisor   string `json:"supervisor,omitempty"`
	Unsupervised bool   `json:"unsupervised,omitempty"`
	// Warning is something that did not go as it should although the
	// worker runs (its unit could not be enabled for boot, say).
	Warning string `json:"warning,omitempty"`
	// Error says why it is not running.
	Error string `json:"error,omitempty"`
	// Limits are the worker's limits as read back from its process.
	Limits []LimitReport `json:"limits,omitempty"`
}

// AgentMain runs the node-side agent: args are what follows `nodes agent`.
// It returns the process's exit status.
//
//	serve          read a JSON request on stdin, write the response on stdout
//	supervise --id ID SPEC
//	               run and restart one worker as SPEC (JSON) says; report
//	               its first start on file descriptor 3
//	exited --id ID DIR
//	               record how the worker ended, from the $EXIT_CODE and
//	               $EXIT_STATUS systemd gives its unit's ExecStopPost
//	exec SPEC -- PROGRAM ARGS...
//	               join cgroups and set rlimits as SPEC (JSON) says, then
//	               become PROGRAM (the worker keeps this process's pid)
func AgentMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "nodes agent: want serve, supervise, exited or exec; this command is run over SSH by `nodes start`")
		return 2
	}
	switch args[0] {
	case "serve":
		var req startRequest
		if err := json.NewDecoder(stdin).Decode(&req); err != nil {
			fmt.Fprintf(stderr, "nodes agent: read request: %v\n", err)
			return 2
		}
		if req.Protocol < minAgentProtocol || req.Protocol > agentProtocol || req.Op != "start" {
			fmt.Fprintf(stderr, "nodes agent: unsupported request (protocol %d, op %q); this program speaks protocols %d to %d\n", req.Protocol, req.Op, minAgentProtocol, agentProtocol)
			return 2
		}
		resp := serveStart(ctx, &req)
		resp.Protocol = agentProtocol
		if err := json.NewEncoder(stdout).Encode(resp); err != nil {
			fmt.Fprintf(stderr, "nodes agent: write response: %v\n", err)
			return 1
		}
		return 0
	case "supervise":
		return agentSupervise(ctx, args[1:], stderr)
	case "exited":
		return agentExited(args[1:], stderr)
	case "exec":
		if len(args) < 4 || args[2] != "--" {
			fmt.Fprintln(stderr, "nodes agent exec: want SPEC -- PROGRAM [ARGS...]")
			return 2
		}
		err := execWorker(args[1], args[3:])
		fmt.Fprintf(stderr, "nodes agent exec: %v\n", err)
		return 126
	}
	fmt.Fprintf(stderr, "nodes agent: unknown subcommand %q\n", args[0])
	return 2
}

// agentSupervise runs `nodes agent supervise --id ID SPEC`.
func agentSupervise(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) != 3 || args[0] != "--id" {
		fmt.Fprintln(stderr, "nodes agent supervise: want --id ID SPEC")
		return 2
	}
	var spec superviseSpec
	if err := json.Unmarshal([]byte(args[2]), &spec); err != nil || spec.ID != args[1] || spec.Dir == "" || len(spec.Command) == 0 {
		fmt.Fprintf(stderr, "nodes agent supervise: bad spec for %s (%v)\n", args[1], err)
		return 2
	}
	return supervise(ctx, spec)
}

// agentExited runs `nodes agent exited --id ID DIR`, a unit's ExecStopPost.
func agentExited(args []string, stderr io.Writer) int {
	if len(args) != 3 || args[0] != "--id" {
		fmt.Fprintln(stderr, "nodes agent exited: want --id ID DIR")
		return 2
	}
	if err := recordExit(args[2], args[1], exitFromEnv(os.Getenv("EXIT_CODE"), os.Getenv("EXIT_STATUS"), time.Now())); err != nil {
		fmt.Fprintf(stderr, "nodes agent exited: %v\n", err)
		return 1
	}
	return 0
}

// SupervisorPlan is how a node supervises the workers it starts.
type SupervisorPlan struct {
	Kind string `json:"kind"`
	// Manager describes the systemd manager used ("the systemd user
	// manager of alice"); Boot is set when the workers start again after
	// the node reboots.
	Manager string `json:"manager,omitempty"`
	Boot    bool   `json:"boot"`
	// Why says why systemd is not used, or what its use lacks.
	Why string `json:"why,omitempty"`
	// Notes say what the agent did to make it work (enabled lingering).
	Notes   []string      `json:"notes,omitempty"`
	Restart RestartPolicy `json:"restart"`
}

// superviseSpec is what a supervisor of Pampa's own runs.
type superviseSpec struct {
	Dir      string `json:"dir"`
	ID       string `json:"id"`
	Release  string `json:"release"`
	GraceMS  int64  `json:"grace_ms"`
	SettleMS int64  `json:"settle_ms"`
	// Members is the workers of a node dispatcher, for its record.
	Members int `json:"members,omitempty"`
	// Scope is the systemd-run command and properties of a scope per run,
	// when limits are applied so.
	Scope []string `json:"scope,omitempty"`
	// Command is the exec step and the worker's arguments.
	Command []string      `json:"command"`
	Restart RestartPolicy `json:"restart"`
}

// startReport is what a supervisor tells the agent that started it, on
// its file descriptor 3, once the worker's first run has settled.
type startReport struct {
	PID    int       `json:"pid,omitempty"`
	Exited *ExitInfo `json:"exited,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// launcher is the one shell script Pampa runs on a node. It exports the
// release's environment file (NAME=VALUE lines, checked at deploy time)
// and runs its arguments. Its inputs arrive as quoted positional
// arguments; nothing is pasted into it.
const launcher = `set -e; f=$1; shift; if [ -f "$f" ]; then while IFS= read -r l || [ -n "$l" ]; do case $l in ''|'#'*) ;; *) export "$l" ;; esac; done < "$f"; fi; exec "$@"`

// agentCommand is the remote command that runs the agent of a release.
func agentCommand(relDir, program string, sub ...string) []string {
	return append([]string{"sh", "-c", launcher, "pampa-launcher", relDir + "/" + envName, relDir + "/" + program, "nodes", "agent"}, sub...)
}

// tailFile returns the last lines of a file's content, for messages.
func tailLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
