package cli

// `pampa dashboard`: the web dashboard, its JSON API and metrics.

import (
	"context"
	"os"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/dashboard"
	"github.com/pampa-go/pampa/internal/nodes"
)

// The environment variables that hold the dashboard's secrets: never a
// flag, so that they stay out of shell histories and process lists.
const (
	envAdminPassword = "PAMPA_DASHBOARD_ADMIN_PASSWORD"
	envReadPassword  = "PAMPA_DASHBOARD_READ_PASSWORD"
	envAdminToken    = "PAMPA_DASHBOARD_ADMIN_TOKEN"
	envReadToken     = "PAMPA_DASHBOARD_READ_TOKEN"
)

const dashboardAbout = "Serve the web dashboard: jobs, tasks, failed tasks, workers and nodes, with actions (pause,\n" +
	"resume, cancel, retry, discard, drain), the same data as JSON under /api/, /healthz, /readyz and\n" +
	"/metrics (the database gauges; docs/metrics.md).\n\n" +
	"Sign-in: users and bearer tokens come from the environment, never from flags:\n" +
	"  " + envAdminPassword + "  password of the admin user (--admin-user; may act)\n" +
	"  " + envReadPassword + "   password of the read-only user (--read-user)\n" +
	"  " + envAdminToken + "     bearer token with the admin role\n" +
	"  " + envReadToken + "      bearer token with the read-only role\n" +
	"With none set, every visitor is an admin, and the dashboard refuses any address but loopback."

func dashboardCmd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("dashboard", "[--listen ADDR]", dashboardAbout)
	var nf nodeFlags
	var lf logFlags
	var listen, adminUser, readUser string
	var readOnly bool
	var ttl, sample time.Duration
	nf.register(fs)
	lf.register(fs)
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "address to serve on; one that is not loopback needs users or tokens")
	fs.StringVar(&adminUser, "admin-user", "admin", "name of the admin user, whose password is $"+envAdminPassword)
	fs.StringVar(&readUser, "read-user", "viewer", "name of the read-only user, whose password is $"+envReadPassword)
	fs.BoolVar(&readOnly, "read-only", false, "refuse every action, whoever asks")
	fs.DurationVar(&sample, "sample", 5*time.Second, "how often the jobs' counts are sampled for throughput and charts (each sample runs the report's queries)")
	fs.DurationVar(&ttl, "worker-ttl", pampa.DefaultWorkerTTL, "a worker silent this long counts as dead on the Nodes page")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	users, tokens := dashboardCredentials(adminUser, readUser)
	log, closer, err := lf.logger("dashboard", "dashboard.log", e.stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := e.open(ctx, nf.cluster)
	if err != nil {
		return err
	}
	defer client.Close()
	// The dashboard's /metrics: the database gauges (as a dispatcher's
	// --metrics-listen serves them), behind the dashboard's sign-in.
	m := pampa.NewMetrics()
	if err := m.CollectDatabase(client, log); err != nil {
		return err
	}
	srv, err := dashboard.New(dashboard.Options{Client: client, Users: users, Tokens: tokens, ReadOnly: readOnly,
		NodeStatus: e.nodeStatus(client.Cluster(), nf.options(), ttl), Metrics: m.Handler(), SampleEvery: sample, Logger: log, Version: e.version()})
	if err != nil {
		return err
	}
	return srv.Serve(ctx, listen)
}

// dashboardCredentials reads the users and tokens from the environment.
func dashboardCredentials(adminUser, readUser string) ([]dashboard.User, []dashboard.Token) {
	var users []dashboard.User
	var tokens []dashboard.Token
	if p := os.Getenv(envAdminPassword); p != "" {
		users = append(users, dashboard.User{Name: adminUser, Password: p, Role: dashboard.RoleAdmin})
	}
	if p := os.Getenv(envReadPassword); p != "" {
		users = append(users, dashboard.User{Name: readUser, Password: p, Role: dashboard.RoleRead})
	}
	if t := os.Getenv(envAdminToken); t != "" {
		tokens = append(tokens, dashboard.Token{Name: envAdminToken, Token: t, Role: dashboard.RoleAdmin})
	}
	if t := os.Getenv(envReadToken); t != "" {
		tokens = append(tokens, dashboard.Token{Name: envReadToken, Token: t, Role: dashboard.RoleRead})
	}
	return users, tokens
}

// nodeStatus reads every node as `pampa nodes status` does, for the
// dashboard's Nodes page; nil when the cluster has no node.
func (e *env) nodeStatus(c *pampa.Cluster, opts nodes.Options, ttl time.Duration) func(context.Context) ([]dashboard.NodeStatus, error) {
	if len(c.Nodes()) == 0 {
		return nil
	}
	return func(ctx context.Context) ([]dashboard.NodeStatus, error) {
		ts, _, err := chooseNodes(c, nil, "")
		if err != nil {
			return nil, err
		}
		st := collectStatus(ctx, c, ts, opts, ttl, 500*time.Millisecond)
		out := make([]dashboard.NodeStatus, len(st.Nodes))
		for i, n := range st.Nodes {
			out[i] = dashboardNode(n)
		}
		return out, nil
	}
}

func dashboardNode(n *nodeStatusJSON) dashboard.NodeStatus {
	d := dashboard.NodeStatus{Name: n.Name, Address: n.Address, Reachable: n.Reachable, Error: n.Error,
		CPU: -1, Memory: -1, Disk: -1, Workers: []dashboard.NodeWorkerStatus{}}
	if n.Release != nil {
		d.Release = n.Release.Version + " (" + n.Release.ID + ")"
	}
	if u := n.Usage; u != nil {
		d.CPU = u.CPUPercent
		if u.RAMTotal > 0 {
			d.Memory = 100 * float64(u.RAMUsed) / float64(u.RAMTotal)
		}
		if u.DiskTotal > 0 {
			d.Disk = 100 * float64(u.DiskUsed) / float64(u.DiskTotal)
		}
	}
	for _, w := range n.Workers {
		ws := dashboard.NodeWorkerStatus{ID: w.ID, Process: "unknown"}
		if w.Process != nil {
			ws.Process = map[bool]string{true: "running", false: "stopped"}[w.Process.Running]
		}
		if w.Registry != nil {
			ws.State = w.Registry.State
		}
		if w.Supervisor != nil {
			ws.Supervisor, ws.Restarts, ws.LastExit, ws.SupervisorNote = supervisorColumns(w.Supervisor)
		}
		d.Workers = append(d.Workers, ws)
	}
	return d
}
