package cli

// `pampa nodes status`: what each node says, joined with the worker registry.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/nodes"
	"github.com/pampa-go/pampa/internal/store"
)

// nodeStatusJSON is one node in `nodes status --json`.
type nodeStatusJSON struct {
	Name      string              `json:"name"`
	Address   string              `json:"address"`
	User      string              `json:"user"`
	Reachable bool                `json:"reachable"`
	Error     string              `json:"error,omitempty"`
	Dir       string              `json:"dir,omitempty"`
	Release   *nodes.Release      `json:"release,omitempty"`
	Usage     *nodes.Usage        `json:"usage,omitempty"`
	Problems  []string            `json:"problems,omitempty"`
	Limits    nodes.Limits        `json:"limits"`
	Workers   []workerStatusJSON  `json:"workers"`
	procs     []nodes.WorkerState // as read from the node
}

// workerStatusJSON joins a worker's process on its node with its row in
// the registry.
type workerStatusJSON struct {
	ID string `json:"id"`
	// Process is nil when the node could not be reached.
	Process *nodes.ProcessState `json:"process,omitempty"`
	Extra   bool                `json:"extra,omitempty"`
	// Supervisor is nil for a worker never started under one (or when
	// the node could not be reached).
	Supervisor *nodes.SupervisorState `json:"supervisor,omitempty"`
	Registry   *pampa.WorkerStatus    `json:"registry,omitempty"`
	// In is, for a worker run in a node dispatcher's process, that node
	// dispatcher's id (<node>.0); Process is then that process, as the
	// worker has none of its own.
	In string `json:"in,omitempty"`
}

type statusJSON struct {
	Nodes         []*nodeStatusJSON `json:"nodes"`
	RegistryError string            `json:"registry_error,omitempty"`
	dbReached     bool              // the database answered, even if with an error
}

const statusAbout = "For each node: whether it can be reached (and why not), the release it runs, its CPU, RAM and\n" +
	"disk usage, and each worker: its process on the node (pid file checked against /proc), its\n" +
	"supervisor (systemd or pampa, how many times it restarted the worker, how the worker last\n" +
	"ended, and whether it gave up on a crash loop) and its row in the worker registry (state,\n" +
	"pid, uptime, last heartbeat). A node dispatcher `nodes start --node-dispatcher` started is\n" +
	"listed first, as NODE.0; its workers have no process of their own: theirs is \"running in\n" +
	"NODE.0\" (\"in\" in --json), with its pid.\n\n" +
	"Exit status: 0 when the database or at least one node answered, even if others did not (read\n" +
	"\"reachable\" and \"registry_error\" in --json); 1 when nothing could be reached, neither the\n" +
	"database nor any node (the status is printed all the same); 2 on bad usage."

func nodesStatusCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("nodes status", "[NODE...]", statusAbout)
	var nf nodeFlags
	var asJSON bool
	var ttl, sample time.Duration
	nf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON: {\"nodes\": [...], \"registry_error\": \"...\"}")
	fs.DurationVar(&ttl, "worker-ttl", 15*time.Second, "a worker silent this long counts as dead (as the dispatcher's --worker-ttl)")
	fs.DurationVar(&sample, "sample", 500*time.Millisecond, "how long CPU use is measured over")
	names, err := e.parseAll(fs, args)
	if err != nil {
		return err
	}
	c, err := e.load(nf.cluster)
	if err != nil {
		return err
	}
	ts, _, err := chooseNodes(c, names, "")
	if err != nil {
		return err
	}
	out := collectStatus(ctx, c, ts, nf.options(), ttl, sample)
	if asJSON {
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		printStatus(e.stdout, out)
	}
	if out.dbReached {
		return nil
	}
	for _, n := range out.Nodes {
		if n.Reachable {
			return nil
		}
	}
	return fmt.Errorf("nothing could be reached: none of the %d node(s), and not the database (%s)", len(out.Nodes), out.RegistryError)
}

// collectStatus asks every node for its state while it reads the
// registry, and joins the two.
func collectStatus(ctx context.Context, c *pampa.Cluster, ts []nodeTarget, opts nodes.Options, ttl, sample time.Duration) *statusJSON {
	out := &statusJSON{Nodes: make([]*nodeStatusJSON, len(ts))}
	for i, nt := range ts {
		n := nt.node
		out.Nodes[i] = &nodeStatusJSON{Name: n.Name, User: n.User, Address: fmt.Sprintf("%s:%d", n.Host, n.Port),
			Limits: nodes.Limits{RAMMB: n.MaxRAMMB, CPUPercent: n.MaxCPUPercent, DiskIOMbps: n.MaxDiskIOMbps, NetIOMbps: n.MaxNetIOMbps}}
	}
	var reg map[string]pampa.WorkerStatus
	var regErr error
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		reg, regErr = readRegistry(ctx, c, ttl)
	}()
	errs := onEach(ctx, ts, opts, func(ctx context.Context, i int, conn *nodes.Conn) error {
		st, err := conn.State(ctx, sample)
		if err != nil {
			return err
		}
		ns := out.Nodes[i]
		ns.Dir, ns.Release, ns.Usage, ns.Problems, ns.procs = st.Dir, st.Release, st.Usage, st.Errors, st.Workers
		return nil
	})
	<-regDone
	if regErr != nil {
		out.RegistryError = errorText(regErr)
	}
	out.dbReached = !errors.As(regErr, new(unreachableError))
	for i, ns := range out.Nodes {
		ns.Reachable = errs[i] == nil
		if errs[i] != nil {
			ns.Error = nodeErrText(errs[i])
		}
		ns.joinWorkers(ts[i].node.WorkerIDs(), reg)
	}
	return out
}

// joinWorkers lists the node's node dispatcher, if it was started on the
// node, then its workers, those of the config and any extra the node
// runs, each with its process and its registry row. The workers a node
// dispatcher runs get its process.
func (ns *nodeStatusJSON) joinWorkers(ids []string, reg map[string]pampa.WorkerStatus) {
	procs := map[string]nodes.WorkerState{}
	for _, p := range ns.procs {
		procs[p.ID] = p
		if p.Extra {
			ids = append(ids, p.ID)
		}
	}
	nd := pampa.NodeDispatcherID(ns.Name)
	ndProc, hasND := procs[nd]
	members := 0
	if hasND {
		ids = append([]string{nd}, ids...)
		if ndProc.Record != nil {
			members = ndProc.Record.Members
		}
	}
	for _, id := range ids {
		w := workerStatusJSON{ID: id}
		if p, ok := procs[id]; ok {
			ps := p.ProcessState
			w.Process, w.Extra, w.Supervisor = &ps, p.Extra, p.Supervisor
		}
		if _, k, err := pampa.ParseWorkerID(id); err == nil && k <= members && (w.Process == nil || !w.Process.Running) {
			ps := nodes.ProcessState{Running: ndProc.Running, PID: ndProc.PID}
			if !ps.Running {
				ps.Why = "its node dispatcher " + nd + " " + ndProc.Why
			}
			w.Process, w.Supervisor, w.In = &ps, nil, nd
		}
		if r, ok := reg[id]; ok {
			w.Registry = &r
			if w.In == "" {
				w.In = r.Via
			}
		}
		ns.Workers = append(ns.Workers, w)
	}
}

// unreachableError says the database could not be reached at all, as
// opposed to reached but unable to answer (no registry table yet, say).
type unreachableError struct{ error }

func (e unreachableError) Unwrap() error { return e.error }

// readRegistry reads the worker registry, if the cluster has a database
// this machine can reach. A SQLite file that does not exist is not created.
func readRegistry(ctx context.Context, c *pampa.Cluster, ttl time.Duration) (map[string]pampa.WorkerStatus, error) {
	db := c.Database.WithDefaults()
	if err := db.Validate(); err != nil {
		return nil, err
	}
	if db.Driver == pampa.DriverSQLite {
		name := strings.TrimPrefix(db.URL, "file:")
		if i := strings.IndexByte(name, '?'); i >= 0 {
			name = name[:i]
		}
		if _, err := os.Stat(name); err != nil {
			return nil, unreachableError{fmt.Errorf("no registry: the SQLite database %s does not exist here", name)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := store.Open(ctx, db.Driver, db.URL)
	if err != nil {
		return nil, unreachableError{fmt.Errorf("registry: %w", err)}
	}
	defer st.Close()
	ws, err := st.Workers(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	out := map[string]pampa.WorkerStatus{}
	for _, w := range ws {
		out[w.ID] = w
	}
	return out, nil
}

func printStatus(w io.Writer, s *statusJSON) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tREACHABLE\tRELEASE\tCPU\tRAM USED/TOTAL\tDISK USED/TOTAL\t")
	for _, n := range s.Nodes {
		if !n.Reachable {
			fmt.Fprintf(tw, "%s\t%s@%s\tNO (below)\t\t\t\t\t\n", n.Name, n.User, n.Address)
			continue
		}
		rel := "(nothing deployed)"
		if n.Release != nil {
			rel = n.Release.ID
		}
		cpu, ram, disk := "?", "?", "?"
		if u := n.Usage; u != nil {
			if u.CPUs > 0 {
				cpu = fmt.Sprintf("%.0f%% of %d", u.CPUPercent, u.CPUs)
			}
			if u.RAMTotal > 0 {
				ram = fmt.Sprintf("%s/%s", gib(u.RAMUsed), gib(u.RAMTotal))
			}
			if u.DiskTotal > 0 {
				disk = fmt.Sprintf("%s/%s", gib(u.DiskUsed), gib(u.DiskTotal))
			}
		}
		fmt.Fprintf(tw, "%s\t%s@%s\tyes\t%s\t%s\t%s\t%s\t\n", n.Name, n.User, n.Address, rel, cpu, ram, disk)
	}
	tw.Flush()
	for _, n := range s.Nodes {
		if !n.Reachable {
			fmt.Fprintf(w, "%s: %s\n", n.Name, n.Error)
		}
		for _, p := range n.Problems {
			fmt.Fprintf(w, "%s: %s\n", n.Name, p)
		}
	}
	if s.RegistryError != "" {
		fmt.Fprintf(w, "worker registry: %s\n", s.RegistryError)
	}
	fmt.Fprintln(w)
	printWorkers(w, s)
}

// printWorkers prints the table of the nodes' workers, then what their
// supervisors have to say.
func printWorkers(w io.Writer, s *statusJSON) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPROCESS\tPID\tUPTIME\tHEARTBEAT\tREGISTRY\tJOB\tSUPERVISOR\tRESTARTS\tLAST EXIT\t")
	var notes []string
	for _, n := range s.Nodes {
		for _, wk := range n.Workers {
			proc, pid, uptime := "unknown (node unreachable)", "-", "-"
			if p := wk.Process; p != nil {
				proc = "running"
				if !p.Running {
					proc = "not running: " + p.Why
				}
				if p.Running && wk.In != "" && wk.In != wk.ID {
					proc = "running in " + wk.In
				}
				if p.Running {
					pid = fmt.Sprint(p.PID)
					if p.Record != nil && !p.Record.StartedAt.IsZero() {
						uptime = shortDuration(time.Since(p.Record.StartedAt))
					}
				}
				if wk.Extra {
					proc += " (not in the config)"
				}
			}
			hb, state, job := "-", "not registered", "-"
			if r := wk.Registry; r != nil {
				state, hb = r.State, shortDuration(r.LastBeat)+" ago"
				if r.Alive {
					state += ", alive"
				} else if r.State == "running" {
					state += ", silent"
				}
				if r.Drained {
					state += ", drained"
				}
				if r.Job != "" {
					job = r.Job
				}
				if pid == "-" && r.Alive {
					pid = fmt.Sprintf("%d (registry, on %s)", r.PID, r.Host)
				}
				if r.Alive || uptime == "-" && r.State == "running" {
					uptime = shortDuration(r.Uptime)
				}
			}
			sup, restarts, exit, note := supervisorColumns(wk.Supervisor)
			if note != "" {
				notes = append(notes, wk.ID+": supervisor: "+note)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", wk.ID, proc, pid, uptime, hb, state, job, sup, restarts, exit)
		}
	}
	tw.Flush()
	for _, note := range notes {
		fmt.Fprintln(w, note)
	}
}

// supervisorColumns describes a worker's supervisor for the status table:
// its kind and state, the restarts, the last exit, and a note for below
// the table (why it gave up, or what went wrong with it).
func supervisorColumns(s *nodes.SupervisorState) (sup, restarts, exit, note string) {
	if s == nil {
		return "-", "-", "-", ""
	}
	sup = s.Kind
	switch {
	case s.GaveUp:
		sup += ", GAVE UP"
		note = "gave up: " + s.Reason
	case s.Why != "":
		sup += ", gone"
		note = s.Why
	case s.State != nodes.SuperRunning:
		sup += ", " + s.State
	}
	exit = "-"
	if e := s.LastExit; e != nil {
		exit = e.String()
		if !e.At.IsZero() {
			exit += ", " + shortDuration(time.Since(e.At)) + " ago"
		}
	}
	return sup, fmt.Sprint(s.Restarts), exit, note
}

func gib(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
