// Package nodes operates a cluster's machines over SSH: it deploys the
// Pampa program to them, starts and stops their workers, and reports their
// state and resource use. The `pampa nodes` commands are built on it.
//
// # Connecting
//
// [Dial] verifies the node's host key against a known_hosts file (a host
// not listed is refused unless first use is explicitly trusted; a changed
// key is always refused), then authenticates with the node's key file
// (decrypted with a passphrase if needed), the keys of a running ssh-agent,
// and the password, in that order. Connecting, the handshake included, is
// bounded by a timeout, and so is every remote command and file transfer.
// Secrets are [Secret] values, which print as "REDACTED"; errors say where
// a secret came from ("password from $NODE1_PASSWORD"), never what it is.
//
// Remote commands are argument vectors, each argument quoted for the
// remote shell by [Command]; nothing is pasted into a shell string. Files
// are read and written over SFTP.
//
// # The node directory
//
// Everything lives under one directory per node (remote_dir, default
// ~/pampa of the SSH user):
//
//	~/pampa/
//	├── releases/
//	│   ├── v1.4.0-3f2a9c1b7d10/     one deploy: program, pampa.yaml, env (0600), RELEASE.json,
//	│   │                            and the files the config lists (odd.py, lib/...)
//	│   ├── v1.5.0-8e77d0c2a415/
//	│   └── .incoming-5c1e0a/        an upload in progress (or interrupted)
//	├── current -> releases/v1.5.0-8e77d0c2a415
//	├── run/
//	│   ├── n1.1.pid                 the worker's pid
//	│   ├── n1.1.json                pid, start time, release, limits
//	│   ├── n1.1.super.json          its supervisor: kind, state, restarts, last exit, gave up
//	│   ├── n1.1.lock                held while the worker is being started
//	│   ├── n1.0.pid, .json, ...     the node dispatcher's, when it serves the node instead
//	│   └── n1.lock                  held through each start on the node
//	└── logs/
//	    ├── worker.n1.1.log          the worker's log, rotated by the worker
//	    ├── worker.n1.1.out          its standard output and error
//	    └── node.n1.log, .out        the node dispatcher's, its workers' lines included
//
// # Deploying
//
//	upload to releases/.incoming-R ──▶ fsync ──▶ rename to releases/<id> ──▶ symlink current.incoming-R ──▶ rename over current
//
// Release files ([PlanFiles]) are found and digested on this machine
// before the upload, and checked again as they are sent. A release is
// named after the program's version and a digest of what it holds, so a deploy of the same files changes nothing. Each step before
// the last leaves `current` as it was: a half-finished upload never
// replaces a working release. Running workers keep the release they were
// started from until they are restarted. The newest releases are kept
// (three by default) for a quick way back.
//
// # Starting and stopping
//
// Start runs the agent: the deployed program itself, as
// `<program> nodes agent serve`, with the release's environment file
// exported by a fixed launcher script. It reads a JSON request and, for
// each worker not already running (or supervised), under the worker's
// lock, hands the worker to a supervisor:
//
//	agent ──fork, setsid──▶ <program> nodes agent supervise --id n1.1 SPEC     (Pampa's own)
//	                             └─fork──▶ <program> nodes agent exec SPEC -- <program> worker --id n1.1 ...
//	                                            │ joins the worker's cgroups, sets rlimits
//	                                            └─exec──▶ <program> worker --id n1.1 ...   (same pid)
//
//	agent ──▶ ~/.config/systemd/user/pampa-n1.1-<dir digest>.service, enable, start      (systemd)
//	              ExecStart: launcher ─▶ nodes agent exec SPEC -- worker ...  (which writes the pid file)
//
// Asked for the node dispatcher (StartOptions.NodeDispatcher), the agent
// starts one process instead, `<program> node --node n1 --workers N`, as
// id n1.0, supervised and limited the same way (each limit times N), with
// its files under run/n1.0.* and its log in logs/node.n1.log. A node is
// served by its node dispatcher or by its workers' own processes, never
// both: under run/n1.lock, held through each start on the node, the agent
// refuses either while the other runs (or its supervisor would start it
// again).
//
// systemd supervises where the node's manager outlives the SSH session
// (root, or a user with lingering); elsewhere Pampa's own supervisor does,
// one process per worker, in a session of its own so that it outlives the
// SSH session, with /dev/null for input and the worker's .out file for
// output. Either restarts a worker that exits with a non-zero status or
// is killed, after a delay doubling from RestartPolicy.Delay, and gives up
// after RestartPolicy.Limit restarts within its Window (supervise.go).
// The pid file records the worker's start time (field 22 of
// /proc/<pid>/stat) and is rewritten at each restart. A worker that exits
// within the settle time is reported with the end of its output, and not
// restarted.
//
// A worker counts as running only when its pid is alive, not a zombie,
// started at the recorded time and has "--id <id>" among its arguments
// (a node dispatcher, n1.0: "--node n1"):
// a reused pid, or another worker's (n1.1 versus n1.10), never passes;
// Pampa's own supervisor is checked likewise. Stop stops the supervisors
// first, so that none starts its worker again: SIGTERM to Pampa's own, or
// `systemctl disable --now` of the units (which stops their workers).
// Then it sends SIGTERM to each remaining worker's pid, waits for the
// worker's grace period (plus 10s), then sends SIGKILL. Nothing is ever
// matched by pattern.
//
// # Limits
//
// A node's per-worker limits are applied, best first, with the worker's
// systemd unit (when systemd supervises) or a systemd-run scope, with
// cgroup files in a cgroup the user may write (v1 or v2), or, for RAM
// only, with RLIMIT_DATA. Each limit is reported applied only once
// it has been read back from the running worker; otherwise start says why
// it is not. See limits_linux.go.
//
// # Status
//
// Status reads, over SFTP, the current release, each worker's pid file,
// supervisor record and /proc entries, and /proc/stat (sampled twice),
// /proc/meminfo and the node directory's file system for CPU, RAM and disk
// use. It needs neither a deployed program nor a shell, but for workers
// systemd supervises: it asks `systemctl show` about their units.
package nodes
