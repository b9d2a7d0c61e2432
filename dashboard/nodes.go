package dashboard

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// NodeStatus is what a node said when last asked (see `pampa nodes
// status`).
type NodeStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"` // why it could not be reached
	Release   string `json:"release,omitempty"`
	// CPU, Memory and Disk are the node's usage in percent, -1 unknown.
	CPU     float64            `json:"cpu_percent"`
	Memory  float64            `json:"memory_percent"`
	Disk    float64            `json:"disk_percent"`
	Workers []NodeWorkerStatus `json:"workers"`
}

// NodeWorkerStatus is one of a node's workers: its process on the node
// and its state in the registry.
type NodeWorkerStatus struct {
	ID      string `json:"id"`
	Process string `json:"process"` // running, stopped, or unknown
	State   string `json:"state"`   // in the registry, "" if never registered
	// Supervisor is its supervisor's kind and state ("pampa", "systemd,
	// GAVE UP"...), "" without one; Restarts and LastExit as it counts
	// them, and SupervisorNote why it gave up or cannot be read.
	Supervisor     string `json:"supervisor"`
	Restarts       string `json:"restarts"`
	LastExit       string `json:"last_exit"`
	SupervisorNote string `json:"supervisor_note,omitempty"`
}

// NodesPage is the nodes as last read; reading them costs SSH round
// trips, so it is done on request only (POST /api/nodes/refresh).
type NodesPage struct {
	Available bool         `json:"available"` // the dashboard can read nodes
	Nodes     []NodeStatus `json:"nodes"`
	CheckedAt *time.Time   `json:"checked_at"` // nil: never read
	Error     string       `json:"error,omitempty"`
}

// nodeCache keeps the last reading of the nodes.
type nodeCache struct {
	mu   sync.Mutex
	last NodesPage
}

func (c *nodeCache) page(available bool) NodesPage {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.last
	p.Available = available
	if p.Nodes == nil {
		p.Nodes = []NodeStatus{}
	}
	return p
}

// nodeReadTimeout bounds a reading of every node.
const nodeReadTimeout = 30 * time.Second

func (s *Server) refreshNodes(w http.ResponseWriter, r *http.Request, p principal) {
	if s.opts.NodeStatus == nil {
		s.fail(w, r, http.StatusNotFound, "this dashboard was started without access to the nodes")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), nodeReadTimeout)
	defer cancel()
	nodes, err := s.opts.NodeStatus(ctx)
	now := time.Now().UTC()
	page := NodesPage{Available: true, Nodes: nodes, CheckedAt: &now}
	if err != nil {
		s.log.Warn("dashboard: read the nodes", "error", err)
		page.Error = "the nodes could not all be read (the dashboard's log has the details)"
	}
	s.nodes.mu.Lock()
	s.nodes.last = page
	s.nodes.mu.Unlock()
	if isForm(r) {
		http.Redirect(w, r, "/nodes", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, s.nodes.page(true))
}
