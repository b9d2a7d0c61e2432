// Package chaos runs Pampa under fire and checks that it keeps its
// promises: nothing is lost, and no task runs twice at once while the
// workers running it are alive.
//
// [Run] starts a throwaway PostgreSQL cluster of its own (from the machine's
// binaries, in a temporary directory, so that it may restart it without
// disturbing anything else), seeds a table of tasks, and runs a scenario of
// separate OS processes — dispatchers and workers — over it. The processes
// are the running executable itself, started again with an environment
// switch that turns it into a Pampa program (see [IsChild] and
// [ChildMain]): no separate build is needed, and a test binary works as
// well as the pampa-chaos command.
//
// The processing function records each execution in a side table,
// through the task's database handle, in two steps: a start record (task,
// worker, try, process id, start in Unix nanoseconds), committed before
// the work begins; then, after sleeping a few milliseconds (honouring its
// context), an end record (end, and "done" or "cancelled" when its
// context ended first). A run with a start record and no end record was
// cut off: its process was killed, or died, in the middle of it; for the
// checks it lasted until that process's death, as the runner saw it (the
// SIGKILL it sent, or the exit it reaped).
//
//	runner ─┬─ SIGKILL the leader ─────▶ dispatcher ×2 ── lease, reserve ───────┐
//	        ├─ SIGKILL + start again ──▶ worker ×6 ───── claim, finish, record ─┤
//	        ├─ SIGSTOP … SIGCONT ──────▶ (one worker)                           ▼
//	        └─ restart ───────────────────────────────────────────────────▶ PostgreSQL
//
// While the tasks run, the runner SIGKILLs a random worker every few
// seconds and starts it again at once (the new process retries until the
// registry lets it take the id back), SIGSTOPs one worker for longer than
// the dispatchers' worker TTL and then SIGCONTs it, SIGKILLs the leading
// dispatcher (and starts it again as a standby), and restarts PostgreSQL.
// These major disruptions happen one after the other, each once the
// completed share of the tasks has reached its milestone, so that they
// land in the middle of the work whatever the machine's speed.
//
// # What is measured
//
// tasks, succeeded, failed: rows of the task table; failed counts rows
// failed for good (out of tries).
//
// lost: tasks not succeeded when the run ends.
//
// duplicate_runs: executions started beyond the first of each task,
// whether they ended, were cancelled or were cut off.
//
// cut_off_runs: executions with a start record and no end record.
//
// concurrent_runs: pairs of executions of one task whose time spans overlap
// at a moment when both processes were alive; a run cut off spans from its
// start to its process's death, so a killed run still counts against any
// run of its task that began before the kill. The runner knows, for every
// worker process, the intervals in which it was alive: from its start
// until it was SIGKILLed (or exited); a SIGSTOPped process stops being
// alive at the SIGSTOP and becomes alive again only when it has registered
// anew after the SIGCONT (its registry row shows a new instance), or never
// if it does not.
//
// kills: SIGKILLs sent, to workers and to leading dispatchers.
//
// max_recovery_s: the longest recovery after a kill, where
//   - for a worker, recovery is the time from the SIGKILL until every task
//     that was reserved for or running on the killed worker at that moment
//     has been started again (its try counter went up) or has ended: the
//     killed worker's work is back in hands that can finish it. A worker
//     that held no task recovers in 0 s;
//   - for the leading dispatcher, recovery is the time from the SIGKILL
//     until another dispatcher process logs "leading".
//
// A recovery that overlaps another disruption (a worker killed just before
// the leader, or before the PostgreSQL restart) includes its delay.
//
// The PostgreSQL restart and the SIGSTOP have recoveries of their own,
// printed with the progress but not part of max_recovery_s: for the
// restart, the time from the start of the restart until the succeeded
// count grows again once the server is back; for the SIGSTOP, the time
// until the stopped worker's tasks have started again elsewhere (about the
// worker TTL, by design).
//
// Just before it continues a stopped worker, the runner lists the database
// sessions waiting on a lock, as warnings: a worker stopped in the middle
// of a transaction keeps its row locks, and whoever needs those rows waits
// for it.
//
// The run also reports problems that make it fail besides lost tasks and
// concurrent runs: a succeeded task with no execution that ran to its end, a process
// that exited on its own, a worker that ran no task for a long while after
// the PostgreSQL restart, a recovery that did not happen within its
// bound, tasks not done in time, and a scenario whose planned disruptions
// did not all happen before the tasks were done.
package chaos
