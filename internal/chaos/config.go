package chaos

import (
	"errors"
	"fmt"
	"time"
)

// Config sizes a scenario. Zero values take the defaults of [Full].
type Config struct {
	// Tasks is how many rows the task table holds. Default 50,000.
	Tasks int
	// Dispatchers is how many dispatcher processes run. Default 2; at least
	// 2 when LeaderKills > 0, so that a standby can take over.
	Dispatchers int
	// Workers is how many worker processes run. Default 6.
	Workers int
	// Concurrency is how many tasks each worker runs at once. Default 2.
	Concurrency int
	// TaskMin and TaskMax bound the processing time of one task, drawn
	// uniformly at random. Default 2ms and 6ms.
	TaskMin, TaskMax time.Duration
	// QueueSize is the job's queue_size. Default 20.
	QueueSize int
	// MaxTryTimes is the job's max_try_times. Default 10: every kill,
	// stop and database restart may cost a task a try, and the scenario
	// checks that nothing is lost, not that tries run out.
	MaxTryTimes int

	// DispatcherDelay is the dispatchers' --delay. Default 100ms.
	DispatcherDelay time.Duration
	// Heartbeat is the workers' --heartbeat; a worker stops taking tasks
	// after three missed heartbeats. Default 1s.
	Heartbeat time.Duration
	// WorkerTTL is the dispatchers' --worker-ttl. Default 5s: longer than
	// the three heartbeats after which a worker fences itself, so that a
	// worker cut off from the database stops before its tasks are handed on.
	WorkerTTL time.Duration
	// LeaseTTL is the dispatchers' --lease-ttl. Default 4s.
	LeaseTTL time.Duration

	// WorkerKillEvery is the mean time between two worker SIGKILLs; each
	// gap is drawn from [0.5, 1.5] × this. Default 4s.
	WorkerKillEvery time.Duration
	// WorkerKills caps the worker SIGKILLs. Default 0: no cap, kills go on
	// until the tasks are done. Negative: none.
	WorkerKills int
	// LeaderKills is how many times the leading dispatcher is SIGKILLed.
	// Default 2; negative: none.
	LeaderKills int
	// PostgresRestarts is how many times PostgreSQL is restarted. Default
	// 1; negative: none.
	PostgresRestarts int
	// Stops is how many times a worker is SIGSTOPped and SIGCONTed.
	// Default 1; negative: none.
	Stops int
	// StopFor is how long a SIGSTOPped worker stays stopped. Default
	// WorkerTTL + 3s: past its heartbeat timeout, so it is declared dead.
	StopFor time.Duration

	// FirstAt and LastAt are the completed shares of the tasks (0..1) at
	// which the first and the last major disruption (leader kill,
	// PostgreSQL restart, stop) happen; the others are spread evenly in
	// between. Defaults 0.15 and 0.75.
	FirstAt, LastAt float64

	// Timeout bounds the whole run, start-up and checks included. Default
	// 4m40s. Tasks not done by then count as lost.
	Timeout time.Duration
	// RecoveryBound is how long a recovery may take before it counts as a
	// problem. Default 60s.
	RecoveryBound time.Duration

	// Dir is where the run keeps its cluster, config and process logs.
	// Default "": a new directory under the system's temporary directory,
	// removed after a clean run and kept (cluster stopped) after a failed
	// one.
	Dir string
	// Keep keeps Dir after a clean run too.
	Keep bool
	// Executable is the program started as dispatchers and workers; it
	// must call [ChildMain] when [IsChild]. Default: the running program.
	Executable string
	// Seed seeds the choice of victims and gaps. Default 0: random.
	Seed uint64

	// Nodes, when set, runs the workers under node dispatchers: that many
	// node processes (`pampa node`, nodes chaos1 … chaosN), NodeWorkers
	// workers each, instead of Workers worker processes. Kills and stops
	// then hit node dispatchers with their workers.
	Nodes int
	// NodeWorkers is how many workers each node dispatcher runs. Default 3.
	NodeWorkers int
}

// WithNodes is c with its workers run under n node dispatchers of
// perNode workers each (CHAOS_NODES=1).
func (c Config) WithNodes(n, perNode int) Config {
	c.Nodes, c.NodeWorkers = n, perNode
	return c
}

// Full is the scenario of `make chaos`: 2 dispatchers and 6 workers over
// 50,000 tasks of a few milliseconds, a worker killed every few seconds,
// the leader killed twice, PostgreSQL restarted once, a worker stopped
// past its heartbeat timeout.
func Full() Config {
	return Config{}.withDefaults()
}

// Short is a smaller Full, for a run of under a minute (CHAOS_SHORT=1):
// 6,000 tasks of about 12ms, one at a time per worker, and every
// disruption of Full.
func Short() Config {
	// With one task at a time per worker, the pace is set by the tasks
	// more than by the machine, so that the work outlasts the disruptions
	// on a fast machine and still ends in time on a slow one.
	c := Config{
		Tasks:         6000,
		Concurrency:   1,
		TaskMin:       8 * time.Millisecond,
		TaskMax:       16 * time.Millisecond,
		FirstAt:       0.1,
		LastAt:        0.7,
		Timeout:       55 * time.Second,
		RecoveryBound: 30 * time.Second,
	}
	return c.withDefaults()
}

// Small is the scenario of the package's test: a few thousand tasks, one
// disruption of each kind, about half a minute.
func Small() Config {
	c := Config{
		Tasks:           3000,
		Workers:         4,
		Concurrency:     1,
		TaskMin:         15 * time.Millisecond,
		TaskMax:         25 * time.Millisecond,
		WorkerKills:     1,
		WorkerKillEvery: 4 * time.Second,
		LeaderKills:     1,
		FirstAt:         0.1,
		LastAt:          0.6,
		Timeout:         2 * time.Minute,
		RecoveryBound:   30 * time.Second,
	}
	return c.withDefaults()
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Tasks, 50000)
	def(&c.Dispatchers, 2)
	def(&c.Workers, 6)
	def(&c.Concurrency, 2)
	if c.Nodes > 0 {
		def(&c.NodeWorkers, 3)
	}
	defD(&c.TaskMin, 2*time.Millisecond)
	defD(&c.TaskMax, 6*time.Millisecond)
	def(&c.QueueSize, 20)
	def(&c.MaxTryTimes, 10)
	defD(&c.DispatcherDelay, 100*time.Millisecond)
	defD(&c.Heartbeat, time.Second)
	defD(&c.WorkerTTL, 5*time.Second)
	defD(&c.LeaseTTL, 4*time.Second)
	defD(&c.WorkerKillEvery, 4*time.Second)
	def(&c.LeaderKills, 2)
	def(&c.PostgresRestarts, 1)
	def(&c.Stops, 1)
	defD(&c.StopFor, c.WorkerTTL+3*time.Second)
	if c.FirstAt == 0 {
		c.FirstAt = 0.15
	}
	if c.LastAt == 0 {
		c.LastAt = 0.75
	}
	defD(&c.Timeout, 4*time.Minute+40*time.Second)
	defD(&c.RecoveryBound, time.Minute)
	return c
}

// count turns the "0 means default, negative means none" counts into
// plain numbers, after withDefaults.
func count(n int) int { return max(n, 0) }

func (c Config) validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("chaos: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Tasks < 1 {
		bad("Tasks", "%d: must be at least 1", c.Tasks)
	}
	switch {
	case c.Nodes > 0 && c.Nodes < 2:
		bad("Nodes", "%d: must be at least 2 (one may be stopped or killed while the others work)", c.Nodes)
	case c.Nodes > 0 && c.NodeWorkers < 1:
		bad("NodeWorkers", "%d: must be at least 1", c.NodeWorkers)
	case c.Nodes == 0 && c.Workers < 2:
		bad("Workers", "%d: must be at least 2 (one may be stopped or killed while the others work)", c.Workers)
	}
	if c.Dispatchers < 1 || (count(c.LeaderKills) > 0 && c.Dispatchers < 2) {
		bad("Dispatchers", "%d: must be at least 1, and 2 when the leader is killed", c.Dispatchers)
	}
	if c.Concurrency < 1 || c.Concurrency > 16 {
		bad("Concurrency", "%d: must be 1..16", c.Concurrency)
	}
	if c.TaskMin < 0 || c.TaskMax < c.TaskMin {
		bad("TaskMax", "%s: must be at least TaskMin (%s), which must not be negative", c.TaskMax, c.TaskMin)
	}
	if c.MaxTryTimes < 1 {
		bad("MaxTryTimes", "%d: must be at least 1", c.MaxTryTimes)
	}
	if c.WorkerTTL < 2*c.Heartbeat {
		bad("WorkerTTL", "%s: must be at least twice Heartbeat (%s)", c.WorkerTTL, c.Heartbeat)
	}
	if c.StopFor <= c.WorkerTTL {
		bad("StopFor", "%s: must exceed WorkerTTL (%s), or the stopped worker is never declared dead", c.StopFor, c.WorkerTTL)
	}
	if c.FirstAt < 0 || c.LastAt > 1 || c.FirstAt > c.LastAt {
		bad("FirstAt/LastAt", "%g/%g: must satisfy 0 ≤ FirstAt ≤ LastAt ≤ 1", c.FirstAt, c.LastAt)
	}
	if c.Timeout < 10*time.Second {
		bad("Timeout", "%s: must be at least 10s", c.Timeout)
	}
	return errors.Join(errs...)
}
