package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/proc"
)

// Worker states in the registry.
const (
	StateRunning  = "running"  // heartbeating, may take tasks
	StateStopping = "stopping" // finishing in-flight tasks, takes no new ones
	StateStopped  = "stopped"  // left gracefully
	StateDead     = "dead"     // its heartbeat lapsed; its tasks were handed on
)

// ErrWorkerRunning is returned when a worker registers under an id that a
// live process already holds.
var ErrWorkerRunning = errors.New("a live worker already holds this id")

// WorkerInfo is one row of the worker registry: the one type for it, in
// the engine, the public API (pampa.WorkerStatus) and the CLI's JSON.
type WorkerInfo struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Instance is random per process start; it fences a replaced process.
	Instance string `json:"-"`
	// ProcToken tells the process apart beyond its pid (proc.Token); ""
	// when unknown.
	ProcToken string   `json:"-"`
	Jobs      []string `json:"jobs"` // jobs this worker's program can run
	Job       string   `json:"job"`  // assigned job, "" for none
	State     string   `json:"state"`
	// Alive: running, and its heartbeat younger than the TTL: it may get
	// tasks, unless drained.
	Alive bool `json:"alive"`
	// Fresh: running or stopping, heartbeat younger than the TTL: its
	// tasks are not orphans.
	Fresh bool `json:"-"`
	// Drained: an operator drained it (SetDrained): it gets no new
	// reservations, and finishes what it runs. It outlives restarts.
	Drained bool `json:"drained"`
	// Slots is how many tries the worker runs at once (its concurrency);
	// 0 when a worker of an older version registered it. The dispatcher
	// hands a limited job's tasks only to free slots.
	Slots int `json:"slots"`
	// Via is, for a worker run by a node dispatcher, that dispatcher's
	// id: the central dispatcher reserves rows for the node dispatcher,
	// never for the worker itself, and the node dispatcher heartbeats for
	// it. "" for a worker that claims for itself.
	Via string `json:"via,omitempty"`
	// Members is, for a node dispatcher's entry, how many workers it runs
	// (its Slots are theirs added up); 0 for a worker.
	Members  int           `json:"members,omitempty"`
	LastBeat time.Duration `json:"last_heartbeat_ns"` // age of the last heartbeat
	Uptime   time.Duration `json:"uptime_ns"`         // since the process registered
}

// Settled reports that the worker has beaten its heartbeat since it
// registered: it is past its start-up, whose recovery of its own rows
// hands on whatever is started under its id.
func (w WorkerInfo) Settled() bool { return w.Uptime > w.LastBeat }

// RegisterWorker records a worker process. It takes over the id when the
// previous holder stopped, died or let its heartbeat lapse past ttl; the
// job assignment is kept. It also takes it over at once when the holder
// ran on this same host and its process has ended (a restart after a
// kill or a crash), judged by pid and process token. Otherwise it returns
// ErrWorkerRunning.
func (s *Store) RegisterWorker(ctx context.Context, w WorkerInfo, ttl time.Duration) error {
	d := s.Dialect
	now := d.Now()
	for range 3 {
		n, err := s.Exec(ctx, `INSERT INTO pampa_workers (id, node, host, pid, version, instance, jobs, proc_token, slots, via, members, started_at, heartbeat_at, job, state)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, `+now+`, `+now+`, NULL, 'running')
		ON CONFLICT (id) DO UPDATE SET node = excluded.node, host = excluded.host, pid = excluded.pid,
			version = excluded.version, instance = excluded.instance, jobs = excluded.jobs, proc_token = excluded.proc_token, slots = excluded.slots,
			via = excluded.via, members = excluded.members,
			started_at = `+now+`, heartbeat_at = `+now+`, state = 'running'
		WHERE pampa_workers.state NOT IN ('running', 'stopping') OR pampa_workers.heartbeat_at < `+d.Ago(),
			w.ID, w.Node, w.Host, w.PID, w.Version, w.Instance, strings.Join(w.Jobs, ","), w.ProcToken, w.Slots, nullable(w.Via), w.Members, d.AgoArg(ttl))
		if err != nil {
			return fmt.Errorf("register worker %s: %w", w.ID, err)
		}
		if n == 1 {
			return nil
		}
		cur, err := s.Worker(ctx, w.ID, ttl)
		if errors.Is(err, sql.ErrNoRows) {
			continue // deleted meanwhile: insert again
		}
		if err != nil {
			return fmt.Errorf("register worker %s: %w", w.ID, ErrWorkerRunning)
		}
		if !holderGone(cur, w) {
			return fmt.Errorf("register worker %s: %w (pid %d on %q, heartbeat %.1fs ago)", w.ID, ErrWorkerRunning, cur.PID, cur.Host, cur.LastBeat.Seconds())
		}
		// Only the holder this process judged dead is replaced: of two
		// processes racing to take over, one wins and the other finds
		// the winner alive next time round.
		n, err = s.Exec(ctx, `UPDATE pampa_workers SET node = ?, host = ?, pid = ?, version = ?, instance = ?, jobs = ?, proc_token = ?, slots = ?,
			via = ?, members = ?, started_at = `+now+`, heartbeat_at = `+now+`, state = 'running'
		WHERE id = ? AND instance = ?`,
			w.Node, w.Host, w.PID, w.Version, w.Instance, strings.Join(w.Jobs, ","), w.ProcToken, w.Slots, nullable(w.Via), w.Members, w.ID, cur.Instance)
		if err != nil {
			return fmt.Errorf("register worker %s: take over from ended pid %d: %w", w.ID, cur.PID, err)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("register worker %s: %w (its registration kept changing)", w.ID, ErrWorkerRunning)
}

// nullable is s, or NULL for "".
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// holderGone reports whether the registered holder cur surely ended: it
// ran on the host of w, the registering process, and its process is gone
// (or its pid now belongs to another process). A holder on another host,
// or one whose end cannot be told from here, keeps the id until its
// heartbeat lapses.
func holderGone(cur, w WorkerInfo) bool {
	if cur.Host == "" || cur.Host != w.Host || cur.Instance == w.Instance {
		return false
	}
	if cur.PID == w.PID && cur.ProcToken == w.ProcToken {
		return false // this very process holds the id already
	}
	return proc.Gone(cur.PID, cur.ProcToken)
}

// Heartbeat refreshes a worker's heartbeat and returns its assigned job.
// ok is false when the registry no longer knows this process as the
// worker: it was declared dead, or another process took the id.
func (s *Store) Heartbeat(ctx context.Context, id, instance string) (job string, ok bool, err error) {
	err = s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var j sql.NullString
		err := tx.QueryRowContext(ctx, s.q(`UPDATE pampa_workers SET heartbeat_at = `+s.Dialect.Now()+`
			WHERE id = ? AND instance = ? AND state IN ('running', 'stopping') RETURNING job`), id, instance).Scan(&j)
		if errors.Is(err, sql.ErrNoRows) {
			ok = false
			return nil
		}
		if err != nil {
			return err
		}
		job, ok = j.String, true
		return nil
	})
	return job, ok, err
}

// SetWorkerState moves this process's registry row to a state; stopping
// keeps the assignment so a restarted worker resumes its job.
func (s *Store) SetWorkerState(ctx context.Context, id, instance, state string) error {
	_, err := s.Exec(ctx, `UPDATE pampa_workers SET state = ? WHERE id = ? AND instance = ?`, state, id, instance)
	return err
}

const workerColumns = `id, node, host, pid, version, instance, proc_token, jobs, COALESCE(job, ''), state,
	CASE WHEN drained_at IS NULL THEN 0 ELSE 1 END, slots, COALESCE(via, ''), members`

func (s *Store) scanWorker(sc interface{ Scan(...any) error }) (WorkerInfo, error) {
	var w WorkerInfo
	var jobs string
	var fresh, drained int
	var beatAge, uptime float64 // seconds, by the database's clock
	err := sc.Scan(&w.ID, &w.Node, &w.Host, &w.PID, &w.Version, &w.Instance, &w.ProcToken, &jobs, &w.Job, &w.State, &drained, &w.Slots, &w.Via, &w.Members,
		&beatAge, &uptime, &fresh)
	w.LastBeat = time.Duration(beatAge * float64(time.Second))
	w.Uptime = time.Duration(uptime * float64(time.Second))
	if jobs != "" {
		w.Jobs = strings.Split(jobs, ",")
	}
	w.Fresh = fresh == 1
	w.Alive = w.Fresh && w.State == StateRunning
	w.Drained = drained == 1
	return w, err
}

// Dispatchable reports whether the dispatcher may assign the worker to a
// job and reserve rows for it: alive, not drained, and claiming for
// itself (a node dispatcher's workers get their rows from it). A drained
// worker stays fresh: what it runs is not handed on.
func (w WorkerInfo) Dispatchable() bool { return w.Alive && !w.Drained && w.Via == "" }

// IsNode reports whether the entry is a node dispatcher's.
func (w WorkerInfo) IsNode() bool { return w.Members > 0 }

func (s *Store) workerSelect() string {
	d := s.Dialect
	return `SELECT ` + workerColumns + `, ` + d.SecondsSince("heartbeat_at") + `, ` + d.SecondsSince("started_at") + `,
		CASE WHEN state IN ('running', 'stopping') AND heartbeat_at >= ` + d.Ago() + ` THEN 1 ELSE 0 END FROM pampa_workers`
}

// Workers lists the registry; Alive uses ttl. Ordered by node, then worker
// number (local.2 before local.10).
func (s *Store) Workers(ctx context.Context, ttl time.Duration) ([]WorkerInfo, error) {
	var out []WorkerInfo
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.DB.QueryContext(ctx, s.q(s.workerSelect()), s.Dialect.AgoArg(ttl))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			w, err := s.scanWorker(rows)
			if err != nil {
				return err
			}
			out = append(out, w)
		}
		return rows.Err()
	})
	SortWorkers(out)
	return out, err
}

// Worker returns one registry row, or sql.ErrNoRows.
func (s *Store) Worker(ctx context.Context, id string, ttl time.Duration) (WorkerInfo, error) {
	row := s.DB.QueryRowContext(ctx, s.q(s.workerSelect()+` WHERE id = ?`), s.Dialect.AgoArg(ttl), id)
	return s.scanWorker(row)
}

// LockLive reads, within tx and locking them, the registry rows of ids,
// and returns the jobs of those still running or stopping. Held until tx
// ends, the lock makes a process registering under one of the ids wait,
// so that what tx hands on for a gone worker is never what a new process
// of that id has just claimed.
func (s *Store) LockLive(ctx context.Context, tx *sql.Tx, ids []string) (map[string][]string, error) {
	live := map[string][]string{}
	if len(ids) == 0 {
		return live, nil
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, state, jobs FROM pampa_workers WHERE id IN (`+placeholders(len(ids))+`)`+
		s.Dialect.LockRows()), toAny(ids)...)
	if err != nil {
		return nil, fmt.Errorf("lock registry rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state, jobs string
		if err := rows.Scan(&id, &state, &jobs); err != nil {
			return nil, err
		}
		if state == StateRunning || state == StateStopping {
			live[id] = strings.Split(jobs, ",")
		}
	}
	return live, rows.Err()
}

// MarkDead declares dead the workers whose heartbeat is older than ttl and
// drops their assignments. It returns their ids.
func (s *Store) MarkDead(ctx context.Context, ttl time.Duration) ([]string, error) {
	var ids []string
	err := s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ids = ids[:0]
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE pampa_workers SET state = 'dead', job = NULL
			WHERE state IN ('running', 'stopping') AND heartbeat_at < `+s.Dialect.Ago()+` RETURNING id`), s.Dialect.AgoArg(ttl))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// SetDrained drains a worker (the dispatcher reserves nothing more for it
// and hands back its unstarted reservations), or lifts the drain. The mark
// is a column of the registry row, which registering again leaves as it
// is: a worker drained, stopped and started again stays drained. It
// returns false when no worker of that id ever registered.
func (s *Store) SetDrained(ctx context.Context, id string, drained bool) (bool, error) {
	set := `NULL`
	if drained {
		set = `COALESCE(drained_at, ` + s.Dialect.Now() + `)`
	}
	n, err := s.Exec(ctx, `UPDATE pampa_workers SET drained_at = `+set+` WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("drain worker %s: %w", id, err)
	}
	return n == 1, nil
}

// Assign moves a worker from job `from` ("" = unassigned) to job `to`
// ("" = unassign). It does nothing, and returns false, when the worker's
// assignment changed meanwhile.
func (s *Store) Assign(ctx context.Context, id, from, to string) (bool, error) {
	var toArg any
	if to != "" {
		toArg = to
	}
	n, err := s.Exec(ctx, `UPDATE pampa_workers SET job = ? WHERE id = ? AND COALESCE(job, '') = ?`, toArg, id, from)
	return n == 1, err
}

// SortWorkers orders workers by node name, then by worker number.
func SortWorkers(ws []WorkerInfo) {
	less := func(a, b string) bool {
		an, ai := splitID(a)
		bn, bi := splitID(b)
		if an != bn {
			return an < bn
		}
		if ai != bi {
			return ai < bi
		}
		return a < b
	}
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && less(ws[j].ID, ws[j-1].ID); j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
}

func splitID(id string) (string, int) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return id, 0
	}
	n := 0
	for _, c := range id[i+1:] {
		if c < '0' || c > '9' {
			return id, 0
		}
		n = n*10 + int(c-'0')
	}
	return id[:i], n
}
