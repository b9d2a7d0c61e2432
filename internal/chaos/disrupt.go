package chaos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kinds of major disruption.
const (
	majorStop    = "stop"
	majorLeader  = "leader kill"
	majorRestart = "postgres restart"
)

// major is a planned major disruption: it happens once the completed share
// of the tasks reaches at.
type major struct {
	kind string
	at   float64
}

// plan orders the major disruptions — stops, leader kills, restarts,
// taken in turn — and spreads their milestones evenly from FirstAt to
// LastAt.
func (r *runner) plan() []major {
	left := map[string]int{majorStop: count(r.cfg.Stops), majorLeader: count(r.cfg.LeaderKills), majorRestart: count(r.cfg.PostgresRestarts)}
	var out []major
	for left[majorStop]+left[majorLeader]+left[majorRestart] > 0 {
		for _, k := range []string{majorStop, majorLeader, majorRestart} {
			if left[k] > 0 {
				left[k]--
				out = append(out, major{kind: k})
			}
		}
	}
	for i := range out {
		out[i].at = r.cfg.FirstAt
		if len(out) > 1 {
			out[i].at += float64(i) * (r.cfg.LastAt - r.cfg.FirstAt) / float64(len(out)-1)
		}
	}
	return out
}

// calmed reports whether disruptions must end.
func (r *runner) calmed() bool {
	select {
	case <-r.calm:
		return true
	default:
		return false
	}
}

// sleep waits d; false if the disruptions must end first.
func (r *runner) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.calm:
	case <-ctx.Done():
	}
	return false
}

// runMajors performs the planned major disruptions one after the other.
func (r *runner) runMajors(ctx context.Context, plan []major) {
	defer r.chaosWG.Done()
	for _, m := range plan {
		goal := int64(m.at * float64(r.cfg.Tasks))
		for r.succeeded.Load() < goal {
			if !r.sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
		if r.calmed() {
			return
		}
		var err error
		switch m.kind {
		case majorStop:
			err = r.stopWorker(ctx)
		case majorLeader:
			err = r.killLeader(ctx)
		case majorRestart:
			err = r.restartPostgres(ctx)
		}
		if err != nil {
			if ctx.Err() == nil {
				r.problem("%s: %v", m.kind, err)
			}
			return
		}
		r.mu.Lock()
		r.majorsDone++
		r.mu.Unlock()
	}
}

// killWorkers SIGKILLs a random worker every WorkerKillEvery or so.
func (r *runner) killWorkers(ctx context.Context) {
	defer r.chaosWG.Done()
	limit := r.cfg.WorkerKills
	if limit < 0 {
		return
	}
	for kills := 0; limit == 0 || kills < limit; {
		r.mu.Lock()
		gap := time.Duration(float64(r.cfg.WorkerKillEvery) * (0.5 + r.rng.Float64()))
		r.mu.Unlock()
		if !r.sleep(ctx, gap) {
			return
		}
		r.pgMu.RLock() // not while PostgreSQL restarts
		ok := !r.calmed() && r.killWorker(ctx)
		r.pgMu.RUnlock()
		if ok {
			kills++
		}
	}
}

// pickWorker chooses a random registered, running worker that is not
// stopped, preferring those running a task at the moment: a disruption
// then lands mid-task.
func (r *runner) pickWorker(ctx context.Context) (*slot, *proc) {
	busy, _ := r.busyWorkers(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	var cands, busyCands []*slot
	for _, s := range r.slots {
		if s.role == roleWorker && !s.stopped && s.cur != nil && s.cur.ready.Load() && s.cur.alive() {
			cands = append(cands, s)
			if busy[s.name] {
				busyCands = append(busyCands, s)
			}
		}
	}
	if len(busyCands) > 0 {
		cands = busyCands
	}
	if len(cands) == 0 {
		return nil, nil
	}
	s := cands[r.rng.IntN(len(cands))]
	return s, s.cur
}

// busyWorkers returns the workers running a task.
func (r *runner) busyWorkers(ctx context.Context) (map[string]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(qctx, `SELECT DISTINCT `+colReservedBy+` FROM `+taskTable+`
		WHERE `+colReservedBy+` IS NOT NULL AND `+colStartedAt+` IS NOT NULL AND `+colEndedAt+` IS NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[r.cfg.slotOf(id)] = true
	}
	return out, rows.Err()
}

// killWorker SIGKILLs a random worker (its supervisor starts it again) and
// measures how long its tasks take to start again elsewhere.
func (r *runner) killWorker(ctx context.Context) bool {
	s, p := r.pickWorker(ctx)
	if s == nil {
		return false
	}
	p.killed.Store(true)
	at := time.Now()
	if err := p.signal(syscall.SIGKILL); err != nil {
		return false
	}
	r.live.died(p.pid, at)
	r.workerKills.Add(1)
	h, err := r.inflight(ctx, s.name)
	if err != nil {
		r.logf("killed worker %s (pid %d); its tasks could not be listed: %v", s.name, p.pid, err)
		return true
	}
	r.logf("killed worker %s (pid %d) holding %s", s.name, p.pid, h)
	r.measure(func() {
		took, ok := r.waitRelaunched(ctx, h, at)
		if !ok {
			if ctx.Err() == nil {
				r.problem("the tasks of worker %s (pid %d), killed at %s, did not start again within %s", s.name, p.pid, r.since(at), r.cfg.RecoveryBound)
			}
			return
		}
		r.recovered(recovery{kind: workerKill, what: fmt.Sprintf("%s at %s, %s", s.name, r.since(at), h), took: took})
	})
	return true
}

// measure runs fn in the background, tracked.
func (r *runner) measure(fn func()) {
	r.measures.Add(1)
	go func() {
		defer r.measures.Done()
		fn()
	}()
}

func (r *runner) recovered(rc recovery) {
	r.mu.Lock()
	r.recoveries = append(r.recoveries, rc)
	r.mu.Unlock()
}

// held is what a worker holds at one moment: its tasks (id → try
// count), reserved or running, and how many of them are running.
type held struct {
	tries   map[int64]int64
	running int
}

func (h held) String() string {
	return fmt.Sprintf("%d tasks (%d running)", len(h.tries), h.running)
}

// inflight returns the tasks reserved for or running on a worker.
func (r *runner) inflight(ctx context.Context, worker string) (held, error) {
	h := held{tries: map[int64]int64{}}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(qctx, `SELECT id, COALESCE(`+colTries+`, 0), `+colStartedAt+` IS NOT NULL FROM `+taskTable+`
		WHERE (`+colReservedBy+` = $1 OR `+colReservedBy+` LIKE $2) AND `+colEndedAt+` IS NULL`, worker, r.cfg.heldLike(worker))
	if err != nil {
		return h, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, tries int64
		var running bool
		if err := rows.Scan(&id, &tries, &running); err != nil {
			return h, err
		}
		h.tries[id] = tries
		if running {
			h.running++
		}
	}
	return h, rows.Err()
}

// waitRelaunched waits until every task of h has started
// again (its tries went up) or ended, and returns the time since at.
func (r *runner) waitRelaunched(ctx context.Context, h held, at time.Time) (time.Duration, bool) {
	left := make(map[int64]int64, len(h.tries))
	for k, v := range h.tries {
		left[k] = v
	}
	for len(left) > 0 {
		if time.Since(at) > r.cfg.RecoveryBound || ctx.Err() != nil {
			return 0, false
		}
		ids := make([]int64, 0, len(left))
		for id := range left {
			ids = append(ids, id)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rows, err := r.db.QueryContext(qctx, `SELECT id, COALESCE(`+colTries+`, 0), `+colEndedAt+` IS NOT NULL
			FROM `+taskTable+` WHERE id = ANY($1)`, ids)
		if err == nil {
			for rows.Next() {
				var id, tries int64
				var ended bool
				if rows.Scan(&id, &tries, &ended) == nil && (ended || tries > left[id]) {
					delete(left, id)
				}
			}
			rows.Close()
		}
		cancel()
		if len(left) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return time.Since(at), true
}

// killLeader SIGKILLs the dispatcher holding the lease (its supervisor
// starts it again, as a standby) and measures how long until another
// dispatcher process logs "leading".
func (r *runner) killLeader(ctx context.Context) error {
	var victim *proc
	deadline := time.Now().Add(30 * time.Second)
	for victim == nil {
		if pid, err := r.leaderPID(ctx); err == nil {
			r.mu.Lock()
			for _, s := range r.slots {
				if s.role == roleDispatcher && s.cur != nil && s.cur.pid == pid && s.cur.alive() {
					victim = s.cur
				}
			}
			r.mu.Unlock()
		}
		if victim == nil {
			if time.Now().After(deadline) {
				return errors.New("no dispatcher of ours held the lease for 30s")
			}
			if !r.sleep(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	victim.killed.Store(true)
	at := time.Now()
	if err := victim.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill the leader %s (pid %d): %w", victim.slot.name, victim.pid, err)
	}
	r.leaderKills.Add(1)
	r.logf("killed the leading dispatcher %s (pid %d)", victim.slot.name, victim.pid)
	for {
		r.mu.Lock()
		var next *leadEvent
		for i := range r.leads {
			if l := r.leads[i]; l.pid != victim.pid && l.at.After(at) {
				next = &l
				break
			}
		}
		r.mu.Unlock()
		if next != nil {
			took := next.at.Sub(at)
			r.logf("dispatcher pid %d leads %.2fs after the kill", next.pid, took.Seconds())
			r.recovered(recovery{kind: majorLeader, what: fmt.Sprintf("%s at %s", victim.slot.name, r.since(at)), took: took})
			return nil
		}
		if time.Since(at) > r.cfg.RecoveryBound {
			r.problem("no dispatcher took the lead within %s of killing the leader", r.cfg.RecoveryBound)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leaderPID reads the pid of the lease holder ("host:pid:random").
func (r *runner) leaderPID(ctx context.Context) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var holder string
	err := r.db.QueryRowContext(qctx, `SELECT holder FROM pampa_leader
		WHERE name = 'dispatcher' AND holder IS NOT NULL AND expires_at > now()`).Scan(&holder)
	if err != nil {
		return 0, err
	}
	parts := strings.Split(holder, ":")
	if len(parts) < 3 {
		return 0, fmt.Errorf("lease holder %q: not host:pid:random", holder)
	}
	return strconv.Atoi(parts[len(parts)-2])
}

// restartPostgres restarts the server (a fast shutdown: sessions are
// ended) and measures how long until the succeeded count grows again; it
// then checks that every worker that lived through the restart runs tasks
// again.
func (r *runner) restartPostgres(ctx context.Context) error {
	r.pgMu.Lock()
	defer r.pgMu.Unlock()
	before := map[string]int{} // worker → pid before the restart
	r.mu.Lock()
	for _, s := range r.slots {
		if s.role == roleWorker && s.cur != nil && s.cur.alive() && !s.stopped {
			before[s.name] = s.cur.pid
		}
	}
	r.mu.Unlock()
	at := time.Now()
	r.logf("restarting PostgreSQL")
	if err := r.cluster.Restart(ctx); err != nil {
		return fmt.Errorf("restart PostgreSQL: %w", err)
	}
	up := time.Now()
	r.logf("PostgreSQL back after %.2fs", up.Sub(at).Seconds())
	var base int64 = -1
	for {
		if s, _, err := r.progress(ctx); err == nil {
			if base < 0 {
				base = s
			} else if s > base {
				break
			}
		}
		if time.Since(at) > r.cfg.RecoveryBound {
			r.problem("no task succeeded within %s of the PostgreSQL restart", r.cfg.RecoveryBound)
			return nil
		}
		if r.calmed() {
			return nil // the tasks are done
		}
		if !r.sleep(ctx, 50*time.Millisecond) {
			return nil
		}
	}
	took := time.Since(at)
	r.logf("progress resumed %.2fs after the restart began", took.Seconds())
	r.recovered(recovery{kind: majorRestart, what: "at " + r.since(at), took: took})
	r.checkResumed(ctx, before, up)
	return nil
}

// checkResumed waits until each worker process that lived through the
// PostgreSQL restart (pid unchanged, not stopped) has run a task that
// started after the server came back.
func (r *runner) checkResumed(ctx context.Context, before map[string]int, up time.Time) {
	const bound = 20 * time.Second
	for {
		waiting := map[string]int{}
		r.mu.Lock()
		for _, s := range r.slots {
			if pid, ok := before[s.name]; ok && s.cur != nil && s.cur.pid == pid && s.cur.alive() && !s.stopped {
				waiting[s.name] = pid
			}
		}
		r.mu.Unlock()
		ran, err := r.ranSince(ctx, up)
		if err == nil {
			for name, pid := range waiting {
				if ran[pid] {
					delete(waiting, name)
				}
			}
			if len(waiting) == 0 {
				r.logf("every worker that lived through the restart runs tasks again")
				return
			}
		}
		if time.Since(up) > bound {
			var names []string
			for name, pid := range waiting {
				names = append(names, fmt.Sprintf("%s (pid %d)", name, pid))
			}
			r.problem("workers ran no task in the %s after the PostgreSQL restart: %s", bound, strings.Join(names, ", "))
			return
		}
		if !r.sleep(ctx, 250*time.Millisecond) {
			return
		}
	}
}

// ranSince returns the worker processes that started a task after t.
func (r *runner) ranSince(ctx context.Context, t time.Time) (map[int]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(qctx, `SELECT DISTINCT pid FROM `+executionsTable+` WHERE started_ns > $1`, t.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		out[pid] = true
	}
	return out, rows.Err()
}

// stopWorker SIGSTOPs a worker for StopFor, past its heartbeat timeout,
// then SIGCONTs it and waits until it has registered again. It is not
// alive from the SIGSTOP until then (see the package doc).
func (r *runner) stopWorker(ctx context.Context) error {
	s, p := r.pickWorker(ctx)
	if s == nil {
		return errors.New("no worker to stop")
	}
	r.mu.Lock()
	s.stopped = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		s.stopped = false
		r.mu.Unlock()
	}()
	instance, _, _, err := r.registration(ctx, s.name)
	if err != nil {
		return fmt.Errorf("read the registry row of %s: %w", s.name, err)
	}
	at := time.Now()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stop %s (pid %d): %w", s.name, p.pid, err)
	}
	r.live.end(p.pid, at)
	// Listed once it is stopped: a task it finished just before the
	// SIGSTOP is not among them.
	h, err := r.inflight(ctx, s.name)
	if err != nil {
		// It counts as not alive from the SIGSTOP on, for the rest of the
		// run: whether it was declared dead meanwhile is not known.
		_ = p.signal(syscall.SIGCONT)
		return fmt.Errorf("list the tasks of %s: %w", s.name, err)
	}
	r.logf("stopped worker %s (pid %d) holding %s, for %s", s.name, p.pid, h, r.cfg.StopFor)
	r.measure(func() {
		if took, ok := r.waitRelaunched(ctx, h, at); ok {
			r.logf("the tasks of stopped worker %s started again elsewhere after %.2fs", s.name, took.Seconds())
			r.recovered(recovery{kind: majorStop, what: fmt.Sprintf("%s at %s, %s", s.name, r.since(at), h), took: took})
		} else if ctx.Err() == nil {
			r.problem("the tasks of stopped worker %s did not start again within %s", s.name, r.cfg.RecoveryBound)
		}
	})
	// Not cut short by the end of the disruptions: a stopped worker must
	// come back before the run stops. Just before it does, look for
	// sessions waiting on locks: a worker stopped in the middle of a
	// transaction keeps its row locks, and whoever needs those rows waits.
	select {
	case <-time.After(r.cfg.StopFor - 500*time.Millisecond):
		r.reportLockWaits(ctx, s.name)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("continue %s (pid %d): %w", s.name, p.pid, err)
	}
	cont := time.Now()
	r.logf("continued worker %s (pid %d)", s.name, p.pid)
	for {
		inst, state, startedNs, err := r.registration(ctx, s.name)
		if err == nil && inst != instance && state == "running" {
			r.live.begin(p.pid, time.Unix(0, startedNs))
			r.logf("worker %s (pid %d) registered again %.2fs after SIGCONT", s.name, p.pid, time.Unix(0, startedNs).Sub(cont).Seconds())
			return nil
		}
		if !p.alive() {
			return nil // it exited; its supervisor says why
		}
		if time.Since(cont) > 30*time.Second {
			r.logf("worker %s (pid %d) did not register again within 30s of SIGCONT (registry: %s); it counts as not alive from the SIGSTOP on", s.name, p.pid, state)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registration reads a worker's registry row: its instance, state and
// start (Unix nanoseconds, database clock — the same machine's).
func (r *runner) registration(ctx context.Context, id string) (instance, state string, startedNs int64, err error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = r.db.QueryRowContext(qctx, `SELECT instance, state, (EXTRACT(EPOCH FROM started_at) * 1000000000)::bigint
		FROM pampa_workers WHERE id = $1`, id).Scan(&instance, &state, &startedNs)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("worker %s is not in the registry", id)
	}
	return instance, state, startedNs, err
}

// reportLockWaits prints the database sessions waiting on a lock, with
// what they wait for and what the holder last ran. While worker is
// stopped, a holder "idle in transaction" is most likely that worker,
// frozen between two statements of one of its transactions.
func (r *runner) reportLockWaits(ctx context.Context, worker string) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(qctx, `SELECT EXTRACT(EPOCH FROM now() - w.query_start)::float8,
			left(regexp_replace(w.query, '\s+', ' ', 'g'), 110),
			h.state, EXTRACT(EPOCH FROM now() - h.state_change)::float8,
			left(regexp_replace(h.query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_activity w
		CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
		JOIN pg_stat_activity h ON h.pid = b.pid
		WHERE w.datname = current_database()`)
	if err != nil {
		r.logf("look for lock waits: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var waited, held float64
		var query, state, holderQuery string
		if err := rows.Scan(&waited, &query, &state, &held, &holderQuery); err != nil {
			r.logf("look for lock waits: %v", err)
			return
		}
		r.logf("WARNING: while worker %s is stopped, a session has waited %.1fs on a lock for: %s — held by a session %s for %.1fs whose last statement was: %s",
			worker, waited, query, state, held, holderQuery)
	}
}
