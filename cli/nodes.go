package cli

// `pampa nodes`: cluster operations over SSH. The work is done by
// internal/nodes; these files turn config nodes into SSH targets (resolving
// secrets from the environment), run an operation on every chosen node at
// once, join what the nodes say with the worker registry, and print it.
// Here: the command, its shared parts, deploy and logs; status in
// nodes_status.go; start, stop and restart in nodes_start.go.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/config"
	"github.com/pampa-go/pampa/internal/nodes"
)

const nodesAbout = `Operate the cluster's nodes over SSH.

  status  [NODE...]                  reachability, workers (process and registry) and usage
  deploy  [NODE...]                  upload the program and config as a new release
  start   [NODE...] [--worker ID]    start the workers that are not running (with
                                     --node-dispatcher: one node dispatcher per node instead)
  stop    [NODE...] [--worker ID]    stop workers gracefully (SIGTERM, then SIGKILL)
  restart [NODE...] [--worker ID]    stop, then start (the current release)
  logs    NODE [--worker ID] [-f]    print the end of a worker's log

With no NODE, every node in the config. Host keys are checked against
ssh_known_hosts_file (default ~/.ssh/known_hosts). Run '%[1]s nodes COMMAND --help'
for a command's flags.`

func nodesCmd(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "agent" {
		// The node-side agent, run over SSH by `nodes start`.
		if code := nodes.AgentMain(ctx, args[1:], os.Stdin, e.rawStdout, e.stderr); code != 0 {
			return fmt.Errorf("agent: exit status %d", code)
		}
		return nil
	}
	subs := map[string]func(context.Context, *env, []string) error{
		"status": nodesStatusCmd, "deploy": nodesDeployCmd, "start": nodesStartCmd,
		"stop": nodesStopCmd, "restart": nodesRestartCmd, "logs": nodesLogsCmd,
	}
	switch {
	case len(args) > 1 && isHelp(args[0]):
		// nodes help COMMAND: as nodes COMMAND --help.
		args = []string{args[1], "--help"}
	case len(args) > 1 && args[1] == "help":
		// nodes COMMAND help, likewise.
		args = append([]string{args[0], "--help"}, args[2:]...)
	}
	if len(args) == 0 || isHelp(args[0]) {
		w := e.stdout
		if len(args) == 0 {
			w = e.stderr
		}
		fmt.Fprintf(w, "Usage: %s nodes COMMAND [flags]\n\n"+nodesAbout+"\n", e.name())
		if len(args) == 0 {
			return usagef("missing command: status, deploy, start, stop, restart or logs")
		}
		return nil
	}
	run, ok := subs[args[0]]
	if !ok {
		return usagef("unknown nodes command %q: want status, deploy, start, stop, restart or logs", args[0])
	}
	return run(ctx, e, args[1:])
}

// nodeFlags are the flags every nodes command has.
type nodeFlags struct {
	cluster        clusterFlags
	connectTimeout time.Duration
	commandTimeout time.Duration
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	f.cluster.register(fs)
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "bound on connecting to a node: TCP, SSH handshake and authentication")
	fs.DurationVar(&f.commandTimeout, "command-timeout", 2*time.Minute, "bound on each remote command and file transfer")
}

func (f *nodeFlags) options() nodes.Options {
	return nodes.Options{ConnectTimeout: f.connectTimeout, CommandTimeout: f.commandTimeout}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// parseAll parses flags that may come before, between and after the
// positional arguments, which it returns.
func (e *env) parseAll(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := e.parse(fs, args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// nodeTarget is a chosen node, or why it cannot be used.
type nodeTarget struct {
	node *pampa.Node
	t    *nodes.Target
	err  error // secrets missing from the environment, say
}

// chooseNodes picks the nodes named (all when none), and the workers: the
// one --worker names, or all of each node's.
func chooseNodes(c *pampa.Cluster, names []string, worker string) ([]nodeTarget, []string, error) {
	if worker != "" {
		node, isDispatcher := dispatcherOf(c, worker)
		if !isDispatcher {
			if err := c.CheckWorkerID(worker); err != nil {
				return nil, nil, usagef("--worker: %v", err)
			}
			node, _, _ = pampa.ParseWorkerID(worker)
		}
		if len(names) == 0 {
			names = []string{node}
		}
		if len(names) != 1 || names[0] != node {
			return nil, nil, usagef("--worker %s belongs to node %s: name only that node, or none", worker, node)
		}
	}
	var chosen []*pampa.Node
	if len(names) == 0 {
		chosen = c.Nodes()
		if len(chosen) == 0 {
			return nil, nil, usagef("the config defines no node")
		}
	}
	seen := map[string]bool{}
	for _, name := range names {
		n := c.Node(name)
		if n == nil {
			var all []string
			for _, n := range c.Nodes() {
				all = append(all, n.Name)
			}
			return nil, nil, usagef("no node named %q in the config (nodes: %s)", name, strings.Join(all, ", "))
		}
		if !seen[name] {
			seen[name] = true
			chosen = append(chosen, n)
		}
	}
	out := make([]nodeTarget, len(chosen))
	for i, n := range chosen {
		t, err := targetOf(n)
		out[i] = nodeTarget{node: n, t: t, err: err}
	}
	var workers []string
	if worker != "" {
		workers = []string{worker}
	}
	return out, workers, nil
}

// dispatcherOf returns the node whose node dispatcher id is, "n1" for
// "n1.0", if the config defines that node.
func dispatcherOf(c *pampa.Cluster, id string) (string, bool) {
	node, ok := strings.CutSuffix(id, ".0")
	return node, ok && c.Node(node) != nil && id == pampa.NodeDispatcherID(node)
}

// targetOf turns a config node into an SSH target, reading its secrets
// from the environment variables it names.
func targetOf(n *pampa.Node) (*nodes.Target, error) {
	t := &nodes.Target{
		Name: n.Name, Host: n.Host, Port: n.Port, User: n.User,
		KeyFile: n.KeyFile, KnownHostsFile: n.KnownHostsFile, AcceptNewHostKey: n.AcceptNewHostKey,
		Dir: n.RemoteDir, MaxWorkers: n.MaxWorkers,
		Limits: nodes.Limits{RAMMB: n.MaxRAMMB, CPUPercent: n.MaxCPUPercent, DiskIOMbps: n.MaxDiskIOMbps, NetIOMbps: n.MaxNetIOMbps},
	}
	home, _ := os.UserHomeDir()
	expand := func(p string) string {
		if p, err := expandHome(p, func() (string, error) { return home, nil }); err == nil {
			return p
		}
		return p
	}
	if t.KeyFile != "" {
		t.KeyFile = expand(t.KeyFile)
	}
	if t.KnownHostsFile == "" {
		t.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	} else {
		t.KnownHostsFile = expand(t.KnownHostsFile)
	}
	secret := func(field, name string) (nodes.Secret, error) {
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", &nodes.NodeError{Node: n.Name, Stage: "credentials", Err: fmt.Errorf("%s names the environment variable %s, which is not set", field, name)}
		}
		return nodes.Secret(v), nil
	}
	var err error
	switch {
	case n.PasswordEnv != "":
		t.PasswordFrom = "$" + n.PasswordEnv
		if t.Password, err = secret("ssh_password_env", n.PasswordEnv); err != nil {
			return nil, err
		}
	case n.Password != "":
		t.Password, t.PasswordFrom = nodes.Secret(n.Password), "ssh_password in the config"
	}
	if n.KeyPassphraseEnv != "" {
		t.KeyPassphraseFrom = "$" + n.KeyPassphraseEnv
		if t.KeyPassphrase, err = secret("ssh_private_key_passphrase_env", n.KeyPassphraseEnv); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// onEach connects to every node at once and runs fn on each connection.
// It returns, in node order, each node's error: from connecting or from fn.
func onEach(ctx context.Context, ts []nodeTarget, opts nodes.Options, fn func(ctx context.Context, i int, c *nodes.Conn) error) []error {
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, nt := range ts {
		if nt.err != nil {
			errs[i] = nt.err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := nodes.Dial(ctx, nt.t, opts)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			if err := fn(ctx, i, c); err != nil {
				errs[i] = &nodes.NodeError{Node: nt.t.Name, Stage: "", Err: err}
			}
		}()
	}
	wg.Wait()
	return errs
}

// nodeErrText is a node's error without the "node NAME:" prefix, for
// tables that already name the node.
func nodeErrText(err error) string {
	var ne *nodes.NodeError
	if errors.As(err, &ne) {
		if ne.Stage == "" {
			return ne.Err.Error()
		}
		return ne.Stage + ": " + ne.Err.Error()
	}
	return err.Error()
}

// errorLine prints a node's error as "node: message".
func errorLine(w io.Writer, node string, err error) {
	fmt.Fprintf(w, "%s: error: %s\n", node, nodeErrText(err))
}

// failures counts non-nil errors and makes the command's error.
func failures(errs []error, what string) error {
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%s failed on %d of %d nodes", what, n, len(errs))
}

func nodesDeployCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes deploy", "[NODE...]", "Upload the program, the config file and the files it lists (the node's files and those of\n"+
		"the jobs its workers may serve, at their paths relative to the config) to each node over\n"+
		"SFTP as a new release, in <remote_dir>/releases/<version>-<digest>, and make it the current\n"+
		"one. Every file is checked here before anything is uploaded. The upload goes to a\n"+
		"temporary directory renamed into place once complete, and `current` is switched by an\n"+
		"atomic rename: an interrupted deploy never replaces a working release. Running workers keep\n"+
		"their release until `nodes restart`.")
	var nf nodeFlags
	var binary string
	var envs stringList
	var keep int
	var asJSON bool
	nf.register(fs)
	fs.StringVar(&binary, "binary", "", "the program to deploy: a Linux executable built with Pampa for the nodes' architecture (default: this program)")
	fs.Var(&envs, "env", "NAME=VALUE, or NAME to copy this machine's value: an environment variable for the node's workers (repeatable); stored on the node with mode 0600 and never printed")
	fs.IntVar(&keep, "keep", 3, "releases to keep on each node, the current one included")
	fs.BoolVar(&asJSON, "json", false, "print JSON, one object per node")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	if keep < 1 {
		return usagef("--keep %d: keep at least the current release (1)", keep)
	}
	c, err := e.load(nf.cluster)
	if err != nil {
		return err
	}
	ts, _, err := chooseNodes(c, names, "")
	if err != nil {
		return err
	}
	spec := nodes.DeploySpec{Binary: binary, Version: e.version(), Keep: keep}
	if spec.Binary == "" {
		if spec.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find this program's file (pass --binary): %w", err)
		}
		// The program's name on the nodes is its name here, not that of a
		// temporary file `go run` made.
		spec.Program = e.name()
	}
	configPath := nf.cluster.config
	if configPath == "" && e.prog.Cluster == nil {
		configPath = "pampa.yaml"
	}
	var stripped int
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("read the config to deploy: %w", err)
		}
		if spec.Config, stripped, err = withoutPasswords(data); err != nil {
			return fmt.Errorf("read the config to deploy: %w", err)
		}
	}
	for _, kv := range envs {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			v, set := os.LookupEnv(name)
			if !set {
				return usagef("--env %s: %s is not set here (give NAME=VALUE, or set it)", name, name)
			}
			value = v
		}
		spec.Env = append(spec.Env, nodes.EnvVar{Name: name, Value: nodes.Secret(value)})
	}
	specs, err := nodeSpecs(c, ts, spec, configPath)
	if err != nil {
		return err
	}
	if stripped > 0 && !asJSON {
		fmt.Fprintf(e.stdout, "the deployed config leaves out %d ssh_password value(s): nodes need no SSH secrets\n", stripped)
	}
	results := make([]*nodes.Deployed, len(ts))
	errs := onEach(ctx, ts, nf.options(), func(ctx context.Context, i int, conn *nodes.Conn) error {
		d, err := conn.Deploy(ctx, specs[i])
		results[i] = d
		return err
	})
	if asJSON {
		if err := e.printDeployJSON(ts, results, errs); err != nil {
			return err
		}
	} else {
		printDeployed(e.stdout, ts, results, errs)
	}
	return failures(errs, "deploy")
}

// nodeSpecs makes each node's deploy spec: spec with the node's release
// files, all of them found and checked before anything is uploaded.
func nodeSpecs(c *pampa.Cluster, ts []nodeTarget, spec nodes.DeploySpec, configPath string) ([]nodes.DeploySpec, error) {
	base := "."
	if configPath != "" {
		base = filepath.Dir(configPath)
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	specs := make([]nodes.DeploySpec, len(ts))
	for i, nt := range ts {
		files, err := nodes.PlanFiles(releaseFiles(c, nt.node, base))
		if err != nil {
			return nil, err
		}
		specs[i] = spec
		specs[i].Files = files
		if err := specs[i].Validate(); err != nil {
			return nil, fmt.Errorf("node %q: %w", nt.node.Name, err)
		}
	}
	return specs, nil
}

// releaseFiles lists the files a node's release ships: the node's own and
// those of every job its workers may serve (filter_worker_id), taken from
// base, the config file's directory, and placed at the same relative path.
func releaseFiles(c *pampa.Cluster, n *pampa.Node, base string) []nodes.File {
	var files []nodes.File
	add := func(from string, paths []string) {
		for _, p := range paths {
			files = append(files, nodes.File{Local: filepath.Join(base, p), Path: filepath.ToSlash(p), From: from})
		}
	}
	add(fmt.Sprintf("node %q: files", n.Name), n.Files)
	for _, j := range c.Jobs() {
		if slices.ContainsFunc(n.WorkerIDs(), j.AcceptsWorker) {
			add(fmt.Sprintf("job %q: files", j.Name), j.Files)
		}
	}
	return files
}

// printDeployJSON prints one object per node.
func (e *env) printDeployJSON(ts []nodeTarget, results []*nodes.Deployed, errs []error) error {
	type res struct {
		Node  string          `json:"node"`
		Error string          `json:"error,omitempty"`
		Done  *nodes.Deployed `json:"deployed,omitempty"`
	}
	var out []res
	for i, nt := range ts {
		r := res{Node: nt.node.Name, Done: results[i]}
		if errs[i] != nil {
			r.Error = nodeErrText(errs[i])
		}
		out = append(out, r)
	}
	return e.printJSON(out)
}

// printDeployed says, per node, which release is current now.
func printDeployed(w io.Writer, ts []nodeTarget, results []*nodes.Deployed, errs []error) {
	for i, nt := range ts {
		name := nt.node.Name
		if errs[i] != nil {
			errorLine(w, name, errs[i])
			continue
		}
		d := results[i]
		switch {
		case d.Unchanged:
			fmt.Fprintf(w, "%s: %s is already the current release in %s\n", name, d.Release.ID, d.Dir)
		default:
			how := "uploaded"
			if d.Reused {
				how = "already on the node"
			}
			prev := d.Previous
			if prev == "" {
				prev = "none"
			}
			fmt.Fprintf(w, "%s: release %s (%s) is now current in %s (was: %s)\n", name, d.Release.ID, how, d.Dir, prev)
		}
		if len(d.Pruned) > 0 {
			fmt.Fprintf(w, "%s: removed old releases %s\n", name, strings.Join(d.Pruned, ", "))
		}
	}
}

// withoutPasswords removes every ssh_password from a config document, so
// that a secret written in the config is not copied to every node (workers
// have no use for it). A document without any is returned unchanged, byte
// for byte; n counts the values removed.
func withoutPasswords(data []byte) (out []byte, n int, err error) {
	return config.StripKey(data, "ssh_password")
}

func nodesLogsCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes logs", "NODE [--worker ID] [-f]", "Print the end of a worker's log on its node (the first worker's unless --worker says, or\n"+
		"the node dispatcher's, NODE.0, while one runs: its workers log there too); with -f, keep\n"+
		"printing what it appends until interrupted.")
	var nf nodeFlags
	var worker string
	var follow, out bool
	var lines int
	nf.register(fs)
	fs.StringVar(&worker, "worker", "", "the worker, such as node1.2, or node1.0 for the node dispatcher (default: NODE.0 while it runs, else NODE.1)")
	fs.BoolVar(&follow, "f", false, "follow: print lines as they are appended")
	fs.IntVar(&lines, "n", 50, "how many lines to print first")
	fs.BoolVar(&out, "out", false, "print the worker's standard output and error (start-up failures, panics) instead of its log")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	c, err := e.load(nf.cluster)
	if err != nil {
		return err
	}
	if len(names) > 1 {
		return usagef("logs takes one node, not %d", len(names))
	}
	if len(names) == 0 && worker == "" {
		return usagef("name a node (or --worker ID)")
	}
	chosen := worker
	if chosen == "" {
		chosen = pampa.WorkerID(names[0], 1)
	}
	ts, _, err := chooseNodes(c, names, chosen)
	if err != nil {
		return err
	}
	nt := ts[0]
	if nt.err != nil {
		return nt.err
	}
	conn, err := nodes.Dial(ctx, nt.t, nf.options())
	if err != nil {
		return err
	}
	defer conn.Close()
	dir, _, err := conn.Dir()
	if err != nil {
		return err
	}
	// A node dispatcher's workers have no log of their own: its log is
	// theirs.
	nd := nt.t.NodeDispatcherID()
	ndRuns := false
	if chosen != nd {
		procs, err := conn.Processes(ctx, []string{nd})
		if err != nil {
			return err
		}
		ndRuns = procs[nd].Running
	}
	if worker == "" && ndRuns {
		chosen = nd
	}
	file := nodes.LogPath(dir, chosen)
	if out {
		file = nodes.OutPath(dir, chosen)
	}
	err = conn.Tail(ctx, file, lines, follow, e.stdout)
	if err != nil && ndRuns && chosen != nd {
		return fmt.Errorf("%w; %s runs in node %s's node dispatcher %s, whose log holds its lines: --worker %s", err, chosen, nt.node.Name, nd, nd)
	}
	return err
}
