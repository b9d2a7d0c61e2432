package nodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// Usage is a node's resource use, as the original's `usage` reported it.
type Usage struct {
	CPUs       int     `json:"cpus"`
	CPUPercent float64 `json:"cpu_percent"` // busy share of all CPUs over the sample
	Load1      float64 `json:"load1"`
	RAMUsed    uint64  `json:"ram_used_bytes"` // total minus available
	RAMTotal   uint64  `json:"ram_total_bytes"`
	DiskPath   string  `json:"disk_path"` // the file system measured: the node directory's (or home's)
	DiskUsed   uint64  `json:"disk_used_bytes"`
	DiskTotal  uint64  `json:"disk_total_bytes"`
	DiskFree   uint64  `json:"disk_free_bytes"` // available to the SSH user
}

// NodeState is what status found on a node.
type NodeState struct {
	Dir     string        `json:"dir"`
	Release *Release      `json:"release,omitempty"`
	Usage   *Usage        `json:"usage,omitempty"`
	Workers []WorkerState `json:"workers"`
	Errors  []string      `json:"errors,omitempty"` // parts that could not be read
}

// WorkerState is a worker's process on the node.
type WorkerState struct {
	ID string `json:"id"`
	ProcessState
	// Extra is set for a pid file of a worker the node no longer defines
	// (max_workers was lowered): stop it with `nodes stop --worker`.
	Extra bool `json:"extra,omitempty"`
	// Supervisor is the worker's supervisor; nil when it never had one.
	Supervisor *SupervisorState `json:"supervisor,omitempty"`
}

// State reads the node's release, worker processes and usage. CPU use is
// measured over sample (default 500ms).
func (c *Conn) State(ctx context.Context, sample time.Duration) (*NodeState, error) {
	if sample <= 0 {
		sample = 500 * time.Millisecond
	}
	var st NodeState
	err := c.bounded(ctx, "status", func(ctx context.Context) error {
		sc, err := c.SFTP()
		if err != nil {
			return err
		}
		dir, home, err := c.Dir()
		if err != nil {
			return err
		}
		st.Dir = dir
		read := sftpRead(sc)
		cpu0, cpuErr := read("/proc/stat")

		if rel, err := currentRelease(sc, dir); err == nil {
			st.Release = rel
		} else if !isNotExist(err) {
			st.Errors = append(st.Errors, "release: "+err.Error())
		}
		defined := map[string]bool{c.t.NodeDispatcherID(): true}
		for _, id := range c.t.WorkerIDs() {
			defined[id] = true
		}
		var sups []*SupervisorState
		for _, id := range c.allWorkerIDs(dir) {
			sup := supervisorState(read, dir, id)
			st.Workers = append(st.Workers, WorkerState{ID: id, ProcessState: processState(read, dir, id), Extra: !defined[id], Supervisor: sup})
			sups = append(sups, sup)
		}
		if _, err := c.askUnits(ctx, sups); err != nil {
			st.Errors = append(st.Errors, "supervisors: "+err.Error())
		}

		u, err := usage(ctx, sc, read, cpu0, cpuErr, sample, dir, home)
		if err != nil {
			st.Errors = append(st.Errors, "usage: "+err.Error())
		}
		st.Usage = u
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// usage measures CPU over the time since cpu0 was read (at least sample),
// and reads memory and disk figures.
func usage(ctx context.Context, sc *sftp.Client, read readFunc, cpu0 []byte, cpuErr error, sample time.Duration, dir, home string) (*Usage, error) {
	u := &Usage{}
	var errs []error
	begin := time.Now()

	// Disk: the node directory's file system, or home's before a deploy.
	u.DiskPath = dir
	vfs, err := sc.StatVFS(dir)
	if err != nil {
		u.DiskPath = home
		vfs, err = sc.StatVFS(home)
	}
	if err == nil {
		u.DiskTotal = vfs.Blocks * vfs.Frsize
		u.DiskUsed = (vfs.Blocks - vfs.Bfree) * vfs.Frsize
		u.DiskFree = vfs.Bavail * vfs.Frsize
	} else {
		errs = append(errs, fmt.Errorf("disk: %w", err))
	}
	if data, err := read("/proc/meminfo"); err == nil {
		total, avail := meminfo(data, "MemTotal"), meminfo(data, "MemAvailable")
		u.RAMTotal, u.RAMUsed = total, total-min(total, avail)
	} else {
		errs = append(errs, fmt.Errorf("memory: %w", err))
	}
	if data, err := read("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			u.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}

	if cpuErr != nil {
		errs = append(errs, fmt.Errorf("cpu: %w", cpuErr))
		return u, errors.Join(errs...)
	}
	select {
	case <-time.After(sample - time.Since(begin)):
	case <-ctx.Done():
		return u, ctx.Err()
	}
	cpu1, err := read("/proc/stat")
	if err != nil {
		errs = append(errs, fmt.Errorf("cpu: %w", err))
		return u, errors.Join(errs...)
	}
	busy0, total0, n := cpuTimes(cpu0)
	busy1, total1, _ := cpuTimes(cpu1)
	u.CPUs = n
	if total1 > total0 {
		u.CPUPercent = float64(busy1-busy0) / float64(total1-total0) * 100
	}
	return u, errors.Join(errs...)
}

// cpuTimes sums the "cpu" line of /proc/stat: busy and total jiffies, and
// counts the cpuN lines.
func cpuTimes(data []byte) (busy, total uint64, cpus int) {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// already in user and nice).
		for i, v := range f[1:] {
			if i >= 8 {
				break
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			total += n
			if i != 3 && i != 4 {
				busy += n
			}
		}
	}
	return busy, total, cpus
}

// meminfo reads one /proc/meminfo field, in bytes.
func meminfo(data []byte, key string) uint64 {
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n
	}
	return 0
}

// Processes checks the workers' processes (default: all of the node's),
// without the rest of State.
func (c *Conn) Processes(ctx context.Context, ids []string) (map[string]ProcessState, error) {
	out := map[string]ProcessState{}
	err := c.bounded(ctx, "check the workers' processes", func(context.Context) error {
		sc, err := c.SFTP()
		if err != nil {
			return err
		}
		dir, _, err := c.Dir()
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			ids = c.t.WorkerIDs()
		}
		for _, id := range ids {
			out[id] = processState(sftpRead(sc), dir, id)
		}
		return nil
	})
	return out, err
}

// askUnits fills the states of systemd-supervised workers (others in sts
// are left alone) from their manager, one systemctl command per manager,
// and returns the units' states by unit.
func (c *Conn) askUnits(ctx context.Context, sts []*SupervisorState) (map[string]unitState, error) {
	all := map[string]unitState{}
	var errs []error
	for _, group := range byManager(sts) {
		out, err := c.Output(ctx, showCommand(group[0].Systemctl, unitsOf(group)), nil)
		if err != nil {
			for _, st := range group {
				st.Why = "systemctl show: " + err.Error()
			}
			errs = append(errs, fmt.Errorf("systemctl show: %w", err))
			continue
		}
		for unit, u := range applyShow(out, group) {
			all[unit] = u
		}
	}
	return all, errors.Join(errs...)
}
