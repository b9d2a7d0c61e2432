package nodes

import (
	"fmt"
	"strings"
)

// Resource names in limit reports.
const (
	ResRAM    = "ram"
	ResCPU    = "cpu"
	ResDiskIO = "disk_io"
	ResNetIO  = "net_io"
)

// LimitReport says whether one of a node's per-worker limits is in force,
// how, or why not. `start` prints one line per limit; a limit is reported
// applied only once it has been read back from the running worker
// (/proc/<pid>/limits, the cgroup's files).
type LimitReport struct {
	Resource string `json:"resource"`
	Want     string `json:"want"`
	Applied  bool   `json:"applied"`
	// How names the mechanism and the file or setting that holds the
	// limit, when applied.
	How string `json:"how,omitempty"`
	// Why explains a limit that is not applied.
	Why string `json:"why,omitempty"`
}

func (r LimitReport) String() string {
	if r.Applied {
		return fmt.Sprintf("%s %s: applied (%s)", r.Resource, r.Want, r.How)
	}
	return fmt.Sprintf("%s %s: NOT applied: %s", r.Resource, r.Want, r.Why)
}

// wants lists the limits set, in a fixed order, with their descriptions.
func (l Limits) wants() []LimitReport {
	var out []LimitReport
	if l.RAMMB > 0 {
		out = append(out, LimitReport{Resource: ResRAM, Want: fmt.Sprintf("%d MiB", l.RAMMB)})
	}
	if l.CPUPercent > 0 {
		out = append(out, LimitReport{Resource: ResCPU, Want: fmt.Sprintf("%d%% of a CPU", l.CPUPercent)})
	}
	if l.DiskIOMbps > 0 {
		out = append(out, LimitReport{Resource: ResDiskIO, Want: fmt.Sprintf("%d Mbit/s read and write", l.DiskIOMbps)})
	}
	if l.NetIOMbps > 0 {
		out = append(out, LimitReport{Resource: ResNetIO, Want: fmt.Sprintf("%d Mbit/s", l.NetIOMbps)})
	}
	return out
}

// netIOWhy is why a network limit is never applied.
const netIOWhy = "Linux has no per-process network bandwidth limit, and neither has systemd: cgroup v2 has no network controller, " +
	"and systemd's IP settings (IPAccounting=, IPAddressDeny=, IPIngressFilterPath=) count or filter a unit's packets without slowing them; " +
	"it takes traffic-control (tc) classes that root sets up for the worker's cgroup, which Pampa does not do; shape the node's traffic with tc, " +
	"or its cloud provider's settings, instead"

// unapplied lists the limits in rs that are not applied, for messages.
func unapplied(rs []LimitReport) string {
	var parts []string
	for _, r := range rs {
		if !r.Applied {
			parts = append(parts, r.Resource+" ("+r.Why+")")
		}
	}
	return strings.Join(parts, "; ")
}

// goMemLimit is the GOMEMLIMIT given to a worker with a RAM limit of mb
// MiB: the Go runtime collects garbage harder as the heap nears it, so the
// worker slows down before the hard limit kills it.
func goMemLimit(mb int) string { return fmt.Sprintf("%dMiB", mb*9/10) }

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
