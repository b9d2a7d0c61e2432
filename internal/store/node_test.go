package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// startFor runs StartFor outside a transaction and returns, by worker,
// the keys it started and their tries.
func startFor(t *testing.T, j *JobSQL, node string, shares ...Share) map[string]map[int64]int64 {
	t.Helper()
	rows, err := j.StartFor(context.Background(), j.s.DB, node, shares)
	if err != nil {
		t.Fatalf("StartFor(%s, %v): %v", node, shares, err)
	}
	out := map[string]map[int64]int64{}
	for _, r := range rows {
		k, _ := r.Get("id")
		w, _ := r.Get("rid")
		n, _ := r.Get("rtimes")
		id := ""
		switch x := w.(type) {
		case string:
			id = x
		case []byte:
			id = string(x)
		default:
			t.Fatalf("row %v: rid is %T", k, w)
		}
		if out[id] == nil {
			out[id] = map[int64]int64{}
		}
		out[id][toInt(t, k)] = toInt(t, n)
	}
	return out
}

func startedKeys(m map[int64]int64) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestStartFor(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 30, 3)
		loadTypes(t, j)
		wantKeys(t, "reserve for the node", reserveKeys(t, j, "n.0", idRange(1, 10)...), idRange(1, 10)...)
		wantKeys(t, "reserve for a worker", reserveKeys(t, j, "other.1", 11), 11)
		other := snapshot(t, j, 11)
		pending := snapshot(t, j, 12)

		got := startFor(t, j, "n.0", Share{"n.1", 2}, Share{"n.2", 3}, Share{"n.3", 0})
		if len(got["n.1"]) != 2 || len(got["n.2"]) != 3 || len(got) != 2 {
			t.Fatalf("StartFor gave %v, want 2 rows to n.1 and 3 to n.2", got)
		}
		// In reservation order (here: key order), each worker a run.
		wantKeys(t, "n.1's rows", startedKeys(got["n.1"]), 1, 2)
		wantKeys(t, "n.2's rows", startedKeys(got["n.2"]), 3, 4, 5)
		for w, rows := range got {
			for k, try := range rows {
				r := getTask(t, j, k)
				if try != 1 || !r.Started || r.Ended || r.RID.String != w || r.OK.Valid || !r.HasRTime {
					t.Fatalf("row %d after StartFor for %s: %+v (try %d)", k, w, r, try)
				}
			}
		}
		for k := int64(6); k <= 10; k++ {
			if r := getTask(t, j, k); r.RID.String != "n.0" || r.Started {
				t.Fatalf("row %d: %+v, want still reserved for n.0 and unstarted", k, r)
			}
		}
		if !slices.Equal(snapshot(t, j, 11), other) || !slices.Equal(snapshot(t, j, 12), pending) {
			t.Fatal("StartFor touched a row not reserved for the node")
		}

		// Asked for more than is reserved: the shares shrink in proportion.
		more := startFor(t, j, "n.0", Share{"n.1", 50}, Share{"n.2", 50})
		if len(more["n.1"])+len(more["n.2"]) != 5 || len(more["n.1"]) < 2 || len(more["n.2"]) < 2 {
			t.Fatalf("StartFor over 5 rows for shares of 50 and 50 gave %v", more)
		}
		if got := startFor(t, j, "n.0", Share{"n.1", 5}); len(got) != 0 {
			t.Fatalf("StartFor with nothing reserved gave %v", got)
		}

		// A row started is counted a try each time: relaunched and
		// reserved again, it starts as try 2.
		if _, relaunched, _, err := j.RecoverWorkers(ctx, s.DB, []string{"n.1"}, "gone"); err != nil || len(relaunched) != 2+len(more["n.1"]) {
			t.Fatalf("RecoverWorkers(n.1) = %v, %v; want %d rows relaunched", relaunched, err, 2+len(more["n.1"]))
		}
		wantKeys(t, "reserve row 1 again", reserveKeys(t, j, "n.0", 1), 1)
		got = startFor(t, j, "n.0", Share{"n.4", 1})
		if got["n.4"][1] != 2 {
			t.Fatalf("row 1 started again: %v, want try 2 for n.4", got)
		}
	})
}

// TestStartForFence: rows that stopped being the node's between its
// look and its start (handed back by a pause or a drain, relaunched by
// the maintenance pass, reserved for someone else) are not started.
func TestStartForFence(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 20, 3)
		loadTypes(t, j)
		wantKeys(t, "reserve", reserveKeys(t, j, "n.0", idRange(1, 6)...), idRange(1, 6)...)

		// Handed back: pending again, not started.
		if n, err := j.HandBack(ctx, s.DB, "n.0"); err != nil || n != 6 {
			t.Fatalf("HandBack(n.0) = %d, %v", n, err)
		}
		before := snapshot(t, j, 1)
		if got := startFor(t, j, "n.0", Share{"n.1", 10}); len(got) != 0 {
			t.Fatalf("StartFor after the hand-back started %v", got)
		}
		if !slices.Equal(snapshot(t, j, 1), before) {
			t.Fatal("StartFor touched a handed-back row")
		}

		// Reserved for another worker, or started by another node: untouched.
		wantKeys(t, "reserve 7 for a plain worker", reserveKeys(t, j, "x.1", 7), 7)
		wantKeys(t, "reserve 8 for another node", reserveKeys(t, j, "m.0", 8), 8)
		startFor(t, j, "m.0", Share{"m.1", 1})
		s7, s8 := snapshot(t, j, 7), snapshot(t, j, 8)
		if got := startFor(t, j, "n.0", Share{"n.1", 10}); len(got) != 0 {
			t.Fatalf("StartFor started rows not the node's: %v", got)
		}
		if !slices.Equal(snapshot(t, j, 7), s7) || !slices.Equal(snapshot(t, j, 8), s8) {
			t.Fatal("StartFor touched a row reserved for another")
		}

		// Relaunched meanwhile: a row the node started, relaunched (its
		// worker declared gone), is pending: the node cannot start it
		// again without a new reservation.
		wantKeys(t, "reserve 9", reserveKeys(t, j, "n.0", 9), 9)
		got := startFor(t, j, "n.0", Share{"n.1", 1})
		if got["n.1"][9] != 1 {
			t.Fatalf("StartFor of row 9: %v", got)
		}
		if _, relaunched, _, err := j.RecoverWorkers(ctx, s.DB, []string{"n.1"}, "gone"); err != nil || len(relaunched) != 1 {
			t.Fatalf("RecoverWorkers(n.1) = %v, %v", relaunched, err)
		}
		if got := startFor(t, j, "n.0", Share{"n.1", 1}); len(got) != 0 {
			t.Fatalf("StartFor started a relaunched row: %v", got)
		}
		if r := getTask(t, j, 9); r.RID.Valid || r.Started || r.RTimes.Int64 != 1 {
			t.Fatalf("row 9 after its relaunch: %+v, want pending with 1 try", r)
		}
	})
}

// TestStartForFinishFence: once started by a node dispatcher, a row's
// writes are fenced by the worker that runs it and its try, as for a
// worker's own claim; finishes of several workers share one statement.
func TestStartForFinishFence(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 10, 3)
		loadTypes(t, j)
		wantKeys(t, "reserve", reserveKeys(t, j, "n.0", idRange(1, 4)...), idRange(1, 4)...)
		got := startFor(t, j, "n.0", Share{"n.1", 2}, Share{"n.2", 2})
		if len(got["n.1"]) != 2 || len(got["n.2"]) != 2 {
			t.Fatalf("StartFor: %v", got)
		}
		k1 := startedKeys(got["n.1"])[0]
		k2 := startedKeys(got["n.2"])[0]
		before := snapshot(t, j, k1)
		for _, f := range []Fence{
			{Key: k1, Worker: "n.0", Try: 1}, // the node dispatcher's id
			{Key: k1, Worker: "n.2", Try: 1}, // another worker of the node
			{Key: k1, Worker: "n.1", Try: 2}, // a later try
			{Key: k1, Worker: "n.1", Try: 0}, // an earlier one
		} {
			if finishTask(t, j, f, Outcome{Success: true}) {
				t.Fatalf("Finish(%+v) applied on row %d started for n.1, try 1", f, k1)
			}
		}
		if !slices.Equal(snapshot(t, j, k1), before) {
			t.Fatal("a refused finish changed the row")
		}
		applied, err := j.FinishMany(ctx, s.DB,
			[]Fence{{Key: k1, Worker: "n.1", Try: 1}, {Key: k2, Worker: "n.2", Try: 1}, {Key: startedKeys(got["n.2"])[1], Worker: "n.1", Try: 1}},
			[]Outcome{{Success: true}, {Success: false, Error: "boom"}, {Success: true}})
		if err != nil || !slices.Equal(applied, []bool{true, true, false}) {
			t.Fatalf("FinishMany over two workers = %v, %v; want [true true false]", applied, err)
		}
		if r := getTask(t, j, k1); !r.Ended || !r.OK.Bool {
			t.Fatalf("row %d: %+v, want succeeded", k1, r)
		}
		if r := getTask(t, j, k2); !r.Ended || r.OK.Bool || r.Why.String != "boom" {
			t.Fatalf("row %d: %+v, want failed with boom", k2, r)
		}
	})
}

func TestNodeRegistry(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		node := testWorker("n.0", "inst-n")
		node.Slots, node.Members = 6, 2
		mustRegister(t, s, node)
		for _, id := range []string{"n.1", "n.2"} {
			w := testWorker(id, "inst-"+id)
			w.Slots, w.Via = 3, "n.0"
			mustRegister(t, s, w)
		}
		plain := testWorker("p.1", "inst-p")
		mustRegister(t, s, plain)

		got := mustWorker(t, s, "n.0")
		if !got.IsNode() || got.Members != 2 || got.Slots != 6 || got.Via != "" || !got.Dispatchable() {
			t.Fatalf("node entry %+v: want a dispatchable node of 2 members and 6 slots", got)
		}
		m := mustWorker(t, s, "n.1")
		if m.IsNode() || m.Via != "n.0" || m.Slots != 3 || !m.Alive || m.Dispatchable() {
			t.Fatalf("member entry %+v: want alive, via n.0, not dispatchable", m)
		}
		if p := mustWorker(t, s, "p.1"); p.Via != "" || p.IsNode() || !p.Dispatchable() {
			t.Fatalf("plain worker %+v", p)
		}

		if ok, err := s.Assign(ctx, "n.0", "", "render"); err != nil || !ok {
			t.Fatalf("Assign(n.0) = %v, %v", ok, err)
		}
		if _, err := s.SetDrained(ctx, "n.2", true); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"n.0", "n.1", "n.2", "p.1"} {
			ageHeartbeat(t, s, id, 30*time.Second)
		}
		beats := []Beat{{"n.0", "inst-n"}, {"n.1", "inst-n.1"}, {"n.2", "inst-n.2"}, {"p.1", "not-its-instance"}}
		ans, err := s.HeartbeatMany(ctx, beats, "render")
		if err != nil {
			t.Fatal(err)
		}
		if len(ans) != 3 || ans["n.0"].Job != "render" || ans["n.1"].Job != "render" || ans["n.1"].Drained || !ans["n.2"].Drained {
			t.Fatalf("HeartbeatMany = %+v", ans)
		}
		for _, id := range []string{"n.0", "n.1", "n.2"} {
			if w := mustWorker(t, s, id); w.LastBeat > 5*time.Second || w.Job != "render" {
				t.Fatalf("%s after the beat: heartbeat %.1fs ago, job %q", id, w.LastBeat.Seconds(), w.Job)
			}
		}
		if w := mustWorker(t, s, "p.1"); w.LastBeat < 20*time.Second {
			t.Fatalf("a beat with the wrong instance refreshed p.1 (%.1fs ago)", w.LastBeat.Seconds())
		}

		// The node's own job is the central dispatcher's to set: a beat
		// writes only its members'.
		ans, err = s.HeartbeatMany(ctx, beats[:2], "")
		if err != nil || ans["n.0"].Job != "render" || ans["n.1"].Job != "" {
			t.Fatalf("HeartbeatMany with no member job = %+v, %v", ans, err)
		}
		// A stopped member, or one declared dead, is no longer beaten.
		if err := s.SetWorkerState(ctx, "n.1", "inst-n.1", StateStopped); err != nil {
			t.Fatal(err)
		}
		mustExec(t, s, `UPDATE pampa_workers SET state = 'dead' WHERE id = ?`, "n.2")
		ans, err = s.HeartbeatMany(ctx, beats[:3], "render")
		if _, ok := ans["n.1"]; err != nil || ok || len(ans) != 1 {
			t.Fatalf("HeartbeatMany over a stopped and a dead member = %+v, %v; want only n.0", ans, err)
		}

		// Registering the id as a plain worker again clears via.
		mustExec(t, s, `UPDATE pampa_workers SET state = 'stopped' WHERE id = ?`, "n.2")
		mustRegister(t, s, testWorker("n.2", "inst-again"))
		if w := mustWorker(t, s, "n.2"); w.Via != "" || !w.Alive || !w.Drained || w.Dispatchable() {
			t.Fatalf("n.2 registered as a plain worker: %+v", w)
		}

		// Cancels of several workers in one read.
		mustExec(t, s, `INSERT INTO pampa_cancels (worker, job, task, cancelled_at) VALUES (?, 'render', '1', `+s.Dialect.Now()+`), (?, 'render', '2', `+s.Dialect.Now()+`), (?, 'render', '3', `+s.Dialect.Now()+`)`,
			"n.1", "n.2", "p.1")
		cs, err := s.CancelsOf(ctx, []string{"n.1", "n.2"})
		if err != nil || len(cs) != 2 {
			t.Fatalf("CancelsOf(n.1, n.2) = %+v, %v", cs, err)
		}
	})
}
