package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// loadTypes reads j's column types (a no-op but on PostgreSQL), after which
// FinishMany batches on PostgreSQL too.
func loadTypes(t *testing.T, j *JobSQL) {
	t.Helper()
	if err := j.LoadColumnTypes(t.Context()); err != nil {
		t.Fatalf("LoadColumnTypes: %v", err)
	}
	if loaded := j.casts.Load() != nil; loaded != (j.s.Dialect.Name() == "postgres") {
		t.Fatalf("after LoadColumnTypes on %s, column types loaded = %v", j.s.Dialect.Name(), loaded)
	}
}

// finishBatches reports whether FinishMany is expected to write outcomes setting
// cols in one statement: always on SQLite, on PostgreSQL once column types
// are loaded, never on other engines.
func finishBatches(j *JobSQL) bool {
	switch j.s.Dialect.Name() {
	case "sqlite":
		return true
	case "postgres":
		return j.casts.Load() != nil
	}
	return false
}

// wantBatchable checks what batchCasts says of a set of written columns.
func wantBatchable(t *testing.T, j *JobSQL, cols []string, want bool) {
	t.Helper()
	if _, got := j.batchCasts(cols); got != want {
		t.Fatalf("on %s, outcomes setting %q batchable = %v, want %v", j.s.Dialect.Name(), cols, got, want)
	}
}

func finishMany(t *testing.T, j *JobSQL, fs []Fence, outs []Outcome) []bool {
	t.Helper()
	applied, err := j.FinishMany(t.Context(), j.s.DB, fs, outs)
	if err != nil {
		t.Fatalf("FinishMany(%d outcomes): %v", len(fs), err)
	}
	if len(applied) != len(fs) {
		t.Fatalf("FinishMany(%d outcomes) returned %d results", len(fs), len(applied))
	}
	return applied
}

// startMany reserves and claims rows ids for worker, and returns their
// fences in ids' order. worker must hold no other reserved row.
func startMany(t *testing.T, j *JobSQL, worker string, ids ...int64) []Fence {
	t.Helper()
	want := slices.Sorted(slices.Values(ids))
	var got []int64
	for lo := 0; lo < len(ids); lo += 500 {
		got = append(got, reserveKeys(t, j, worker, ids[lo:min(lo+500, len(ids))]...)...)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("reserve %d tasks for %s: got %d", len(ids), worker, len(got))
	}
	tries := map[int64]int64{}
	for _, r := range claimRows(t, j, worker, len(ids)) {
		k, _ := r.Get("id")
		n, _ := r.Get("rtimes")
		tries[toInt(t, k)] = toInt(t, n)
	}
	fences := make([]Fence, len(ids))
	for i, id := range ids {
		try, ok := tries[id]
		if !ok {
			t.Fatalf("task %d not claimed by %s", id, worker)
		}
		fences[i] = Fence{Key: id, Worker: worker, Try: try}
	}
	return fences
}

// startAllRows reserves and starts every pending row of j for worker and
// returns their fences, keys as Claim gives them (as a worker holds them).
func startAllRows(t *testing.T, j *JobSQL, worker string) []Fence {
	t.Helper()
	keys, err := j.Reserve(t.Context(), j.s.DB, worker, 1<<20)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	rows, err := j.Claim(t.Context(), j.s.DB, worker, len(keys)+1)
	if err != nil || len(rows) != len(keys) {
		t.Fatalf("Claim = %d rows, %v; want %d", len(rows), err, len(keys))
	}
	var fences []Fence
	for _, r := range rows {
		k, _ := r.Get(j.spec.PrimaryKey)
		n, _ := r.Get(j.spec.ReservationTimes)
		fences = append(fences, Fence{Key: k, Worker: worker, Try: toInt(t, n)})
	}
	return fences
}

// columnText reads one column of row id as text (NULL as invalid).
func columnText(t *testing.T, j *JobSQL, id int64, col string) sql.NullString {
	t.Helper()
	var v sql.NullString
	err := j.s.DB.QueryRowContext(t.Context(), j.s.q(`SELECT CAST(`+Quote(col)+` AS TEXT) FROM `+j.t+` WHERE id = ?`), id).Scan(&v)
	if err != nil {
		t.Fatalf("read %s of task %d: %v", col, id, err)
	}
	return v
}

// distinctEnded counts the distinct end times of rows ids: rows finished by
// one statement share one (the statement's clock), rows finished one by one
// on PostgreSQL outside a transaction each have their own.
func distinctEnded(t *testing.T, j *JobSQL, ids []int64) int {
	t.Helper()
	var n int
	err := j.s.DB.QueryRowContext(t.Context(), j.s.q(`SELECT COUNT(DISTINCT CAST(ended AS TEXT)) FROM `+j.t+
		` WHERE id IN (`+placeholders(len(ids))+`)`), int64s(ids)...).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantStatements checks, from the end times of rows ids (all applied by one
// FinishMany call outside a transaction), that they were written in at most
// stmts statements when batched, and one by one otherwise.
func wantStatements(t *testing.T, j *JobSQL, ids []int64, batched bool, stmts int) {
	t.Helper()
	got := distinctEnded(t, j, ids)
	switch {
	case batched && got > stmts:
		t.Fatalf("%d rows batched on %s have %d distinct end times, want at most %d statements", len(ids), j.s.Dialect.Name(), got, stmts)
	case !batched && j.s.Dialect.Name() != "sqlite" && got != len(ids):
		t.Fatalf("%d rows finished one by one on %s have %d distinct end times, want %d", len(ids), j.s.Dialect.Name(), got, len(ids))
	}
}

func idRange(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

func TestFinishManyEmpty(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 2, 3)
		loadTypes(t, j)
		applied, err := j.FinishMany(t.Context(), s.DB, nil, nil)
		if err != nil || len(applied) != 0 {
			t.Fatalf("FinishMany(nothing) = %v, %v", applied, err)
		}
	})
}

// TestFinishManyLargeBatch finishes batches of many sizes, across the
// power-of-two padding steps and the per-statement row limit: every row is
// applied, with its outcome and its Set columns.
func TestFinishManyLargeBatch(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		sizes := []int{2, 3, 5, 17, 300, 512, 513, 1100}
		total := 0
		for _, n := range sizes {
			total += n
		}
		j := newJob(t, s, "tasks", total, 3)
		loadTypes(t, j)
		wantBatchable(t, j, []string{"payload"}, finishBatches(j))
		wantBatchable(t, j, nil, finishBatches(j))
		// A stale error from an earlier try: success must clear it.
		mustExec(t, s, `UPDATE tasks SET why = 'stale'`)
		next := int64(1)
		for _, n := range sizes {
			worker := fmt.Sprintf("w%d", n)
			ids := idRange(next, next+int64(n)-1)
			next += int64(n)
			fs := startMany(t, j, worker, ids...)
			outs := make([]Outcome, n)
			for i, id := range ids {
				outs[i] = Outcome{Success: id%3 != 0, Set: map[string]any{"payload": fmt.Sprintf("done %d by %s", id, worker)}}
				if id%3 == 0 {
					outs[i].Error = fmt.Sprintf("task %d failed", id)
				}
			}
			t0 := dbClock(t, s)
			applied := finishMany(t, j, fs, outs)
			t1 := dbClock(t, s)
			for i, id := range ids {
				if !applied[i] {
					t.Fatalf("batch of %d: task %d not applied", n, id)
				}
				r := getTask(t, j, id)
				wantPayload := fmt.Sprintf("done %d by %s", id, worker)
				if !r.Ended || !r.Started || r.RID.String != worker || r.RTimes.Int64 != 1 || r.Payload.String != wantPayload {
					t.Fatalf("batch of %d: task %d = %+v, want ended by %s on try 1 with payload %q", n, id, r, worker, wantPayload)
				}
				if id%3 == 0 {
					if !r.OK.Valid || r.OK.Bool || r.Why.String != fmt.Sprintf("task %d failed", id) {
						t.Fatalf("batch of %d: failed task %d = %+v, want ok false and its error", n, id, r)
					}
				} else if !r.OK.Valid || !r.OK.Bool || r.Why.Valid {
					t.Fatalf("batch of %d: succeeded task %d = %+v, want ok true and the error cleared", n, id, r)
				}
			}
			betweenClock(t, j, ids[0], "ended", t0, t1)
			betweenClock(t, j, ids[n-1], "ended", t0, t1)
			wantStatements(t, j, ids, finishBatches(j), (n+maxBatchRows-1)/maxBatchRows)
			// The same tries again: all refused now, nothing changes.
			before := snapshot(t, j, ids[n-1])
			for i, a := range finishMany(t, j, fs, outs) {
				if a {
					t.Fatalf("batch of %d: second finish of task %d applied", n, ids[i])
				}
			}
			if after := snapshot(t, j, ids[n-1]); !slices.Equal(before, after) {
				t.Fatalf("a refused second finish changed the row: %v → %v", before, after)
			}
		}
		c, err := j.Count(t.Context(), s.DB)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Counts{Total: int64(total), Succeeded: int64(total - total/3)}); c != want {
			t.Fatalf("Count after the batches = %+v, want %+v (failures have tries left: pending)", c, want)
		}
		var ended int
		if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM tasks WHERE ended IS NOT NULL`).Scan(&ended); err != nil || ended != total {
			t.Fatalf("%d rows ended, %v; want all %d", ended, err, total)
		}
	})
}

// TestFinishManyFences mixes tries whose fences still hold with tries that
// moved on in every way a fence can fail: those are refused and their rows
// left untouched, the others applied, each reported at its own index.
func TestFinishManyFences(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := newJob(t, s, "tasks", 60, 3)
		loadTypes(t, j)

		good := startMany(t, j, "w1", idRange(1, 40)...) // 1..40 running on w1

		// 41: running on w2; w1's fence names the wrong worker.
		wrongWorker := Fence{Key: int64(41), Worker: "w1", Try: startTask(t, j, "w2", 41).Try}
		// 42: running on w1, try 1; the fence says try 2 (and 43, try 0).
		f42 := startTask(t, j, "w1", 42)
		wrongTry := Fence{Key: f42.Key, Worker: "w1", Try: f42.Try + 1}
		f43 := startTask(t, j, "w1", 43)
		zeroTry := Fence{Key: f43.Key, Worker: "w1", Try: 0}
		// 44: already ended by the same try.
		ended := startTask(t, j, "w1", 44)
		if !finishTask(t, j, ended, Outcome{Success: false, Error: "first"}) {
			t.Fatal("Finish of task 44")
		}
		// 45: reserved for w1, never started.
		wantKeys(t, "reserve 45", reserveKeys(t, j, "w1", 45), 45)
		notStarted := Fence{Key: int64(45), Worker: "w1", Try: 0}
		notStarted1 := Fence{Key: int64(45), Worker: "w1", Try: 1}
		// 46: started, then given back unstarted: key, worker and try
		// count match, only "started" fails.
		f46 := startTask(t, j, "w3", 46)
		if ok, err := j.Unstart(ctx, s.DB, f46); err != nil || !ok {
			t.Fatalf("Unstart(46) = %v, %v", ok, err)
		}
		unstarted := Fence{Key: f46.Key, Worker: "w3", Try: f46.Try - 1}
		// 47: relaunched after w4 was declared gone, and started again by
		// w4: the old try's fence no longer holds.
		old47 := startTask(t, j, "w4", 47)
		if _, relaunched, _, err := j.RecoverWorkers(ctx, s.DB, []string{"w4"}, "gone"); err != nil || len(relaunched) != 1 {
			t.Fatalf("RecoverWorkers = %v, %v", relaunched, err)
		}
		new47 := startTask(t, j, "w4", 47)
		// 48: pending, never reserved; 9999: no such row.
		pending := Fence{Key: int64(48), Worker: "w1", Try: 0}
		missing := Fence{Key: int64(9999), Worker: "w1", Try: 1}

		refused := []Fence{wrongWorker, wrongTry, zeroTry, ended, notStarted, notStarted1, unstarted, old47, pending, missing}
		untouched := []int64{41, 42, 43, 44, 45, 46, 48}
		before := map[int64][]sql.NullString{}
		for _, id := range untouched {
			before[id] = snapshot(t, j, id)
		}

		// Interleave: refused fences among the good ones, and the new try
		// of 47 after its old one.
		var fs []Fence
		var want []bool
		for i, f := range good {
			fs, want = append(fs, f), append(want, true)
			if i%4 == 1 && len(refused) > 0 {
				fs, want = append(fs, refused[0]), append(want, false)
				refused = refused[1:]
			}
		}
		fs, want = append(fs, new47), append(want, true)
		outs := make([]Outcome, len(fs))
		for i, f := range fs {
			outs[i] = Outcome{Success: i%2 == 0, Error: fmt.Sprintf("error of %v", f), Set: map[string]any{"payload": fmt.Sprintf("set by %v/%s/%d", f.Key, f.Worker, f.Try)}}
		}
		applied := finishMany(t, j, fs, outs)
		for i := range fs {
			if applied[i] != want[i] {
				t.Fatalf("outcome %d, fence %+v: applied = %v, want %v", i, fs[i], applied[i], want[i])
			}
		}
		for i, f := range fs {
			if !want[i] {
				continue
			}
			id := toInt(t, f.Key)
			r := getTask(t, j, id)
			if !r.Ended || r.OK.Bool != outs[i].Success || r.Payload.String != outs[i].Set["payload"] {
				t.Fatalf("applied task %d = %+v, want outcome %+v", id, r, outs[i])
			}
			if outs[i].Success == r.Why.Valid || !outs[i].Success && r.Why.String != outs[i].Error {
				t.Fatalf("applied task %d has error %v, want %q (success %v)", id, r.Why, outs[i].Error, outs[i].Success)
			}
		}
		for _, id := range untouched {
			if after := snapshot(t, j, id); !slices.Equal(before[id], after) {
				t.Fatalf("task %d, fenced out, changed: %v → %v", id, before[id], after)
			}
		}
		if r := getTask(t, j, 47); r.RID.String != "w4" || r.RTimes.Int64 != 2 || !r.Ended {
			t.Fatalf("task 47 = %+v, want its second try ended", r)
		}
		// Rows no fence named stay as they were.
		if r := getTask(t, j, 60); r.RID.Valid || r.Started || r.Ended || r.Payload.String != "p60" {
			t.Fatalf("task 60 = %+v, want untouched", r)
		}
	})
}

// TestFinishManyAllRefused: a batch none of whose fences hold writes
// nothing.
func TestFinishManyAllRefused(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 20, 3)
		loadTypes(t, j)
		fs := startMany(t, j, "w1", idRange(1, 20)...)
		for i := range fs {
			fs[i].Worker = "w2"
		}
		before := snapshot(t, j, 7)
		outs := make([]Outcome, len(fs))
		for i := range outs {
			outs[i] = Outcome{Success: true, Set: map[string]any{"payload": "stolen"}}
		}
		for i, a := range finishMany(t, j, fs, outs) {
			if a {
				t.Fatalf("outcome %d applied under another worker's fence", i)
			}
		}
		if after := snapshot(t, j, 7); !slices.Equal(before, after) {
			t.Fatalf("refused batch changed the row: %v → %v", before, after)
		}
		var n int
		if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM tasks WHERE ended IS NOT NULL OR payload = 'stolen'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d rows written by a refused batch, %v", n, err)
		}
	})
}

// TestFinishManyDuplicateKeys: a key named twice in one call is applied
// once, whichever the statements' order.
func TestFinishManyDuplicateKeys(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 10, 3)
		loadTypes(t, j)
		fs := startMany(t, j, "w1", idRange(1, 10)...)
		// The same try twice, with the same columns, and once more in
		// another set of columns.
		all := append(append([]Fence{}, fs...), fs[3], fs[5])
		outs := make([]Outcome, len(all))
		for i := range all {
			outs[i] = Outcome{Success: true, Set: map[string]any{"payload": fmt.Sprintf("out %d", i)}}
		}
		outs[len(all)-1] = Outcome{Success: false, Error: "dup"}
		applied := finishMany(t, j, all, outs)
		for i := range fs {
			if i == 3 || i == 5 {
				continue
			}
			if !applied[i] {
				t.Fatalf("outcome %d not applied", i)
			}
			if p := getTask(t, j, int64(i+1)).Payload.String; p != fmt.Sprintf("out %d", i) {
				t.Fatalf("task %d payload = %q", i+1, p)
			}
		}
		for _, c := range []struct{ first, dup int }{{3, len(fs)}, {5, len(fs) + 1}} {
			if applied[c.first] == applied[c.dup] {
				t.Fatalf("task %d named twice: applied %v and %v, want exactly one", c.first+1, applied[c.first], applied[c.dup])
			}
			won := c.first
			if applied[c.dup] {
				won = c.dup
			}
			r := getTask(t, j, int64(c.first+1))
			if r.OK.Bool != outs[won].Success || !outs[won].Success && r.Why.String != "dup" ||
				outs[won].Set != nil && r.Payload.String != outs[won].Set["payload"] ||
				outs[won].Set == nil && r.Payload.String != fmt.Sprintf("p%d", c.first+1) {
				t.Fatalf("task %d = %+v, want the applied outcome %d: %+v", c.first+1, r, won, outs[won])
			}
		}
	})
}

// TestFinishManyColumnSets finishes, in one call, outcomes that write
// different sets of columns (one statement each), none at all, and sets
// that only one outcome writes.
func TestFinishManyColumnSets(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ty := s.Dialect.Types()
		j := newJob(t, s, "tasks", 70, 3)
		mustExec(t, s, `ALTER TABLE tasks ADD COLUMN note `+ty.Text)
		mustExec(t, s, `ALTER TABLE tasks ADD COLUMN n `+ty.Int)
		mustExec(t, s, `UPDATE tasks SET note = 'old note', n = -1, why = 'stale'`)
		loadTypes(t, j)
		wantBatchable(t, j, []string{"n", "note", "payload"}, finishBatches(j))

		ids := idRange(1, 66)
		fs := startMany(t, j, "w1", ids...)
		// 67 runs on w2: refused in the middle of a group.
		wrong := Fence{Key: int64(67), Worker: "w1", Try: startTask(t, j, "w2", 67).Try}
		fs = append(fs[:30], append([]Fence{wrong}, fs[30:]...)...)
		kinds := []func(id int64) map[string]any{
			func(int64) map[string]any { return nil },
			func(id int64) map[string]any { return map[string]any{"payload": fmt.Sprintf("pay %d", id)} },
			func(id int64) map[string]any {
				return map[string]any{"note": fmt.Sprintf("note %d", id), "payload": fmt.Sprintf("both %d", id)}
			},
			func(id int64) map[string]any { return map[string]any{"n": id * 10, "note": nil} },
			func(int64) map[string]any { return map[string]any{} }, // same as nil
		}
		outs := make([]Outcome, len(fs))
		for i, f := range fs {
			id := toInt(t, f.Key)
			outs[i] = Outcome{Success: id%4 != 0, Error: fmt.Sprintf("e%d", id), Set: kinds[i%len(kinds)](id)}
		}
		// One outcome alone in its set of columns.
		f68 := startTask(t, j, "w1", 68)
		fs = append(fs, f68)
		outs = append(outs, Outcome{Success: true, Set: map[string]any{"n": int64(680), "payload": "alone"}})

		applied := finishMany(t, j, fs, outs)
		for i, f := range fs {
			id := toInt(t, f.Key)
			if applied[i] != (id != 67) {
				t.Fatalf("outcome %d (task %d) applied = %v", i, id, applied[i])
			}
			if id == 67 {
				continue
			}
			r := getTask(t, j, id)
			o := outs[i]
			if !r.Ended || r.OK.Bool != o.Success || o.Success == r.Why.Valid || !o.Success && r.Why.String != o.Error {
				t.Fatalf("task %d = %+v, want outcome %+v", id, r, o)
			}
			wantPayload, wantNote, wantN := fmt.Sprintf("p%d", id), sql.NullString{String: "old note", Valid: true}, sql.NullString{String: "-1", Valid: true}
			if v, ok := o.Set["payload"]; ok {
				wantPayload = v.(string)
			}
			if v, ok := o.Set["note"]; ok {
				wantNote = sql.NullString{}
				if v != nil {
					wantNote = sql.NullString{String: v.(string), Valid: true}
				}
			}
			if v, ok := o.Set["n"]; ok {
				wantN = sql.NullString{String: fmt.Sprint(v), Valid: true}
			}
			if r.Payload.String != wantPayload || columnText(t, j, id, "note") != wantNote || columnText(t, j, id, "n") != wantN {
				t.Fatalf("task %d: payload %q, note %v, n %v; want %q, %v, %v (Set %v)",
					id, r.Payload.String, columnText(t, j, id, "note"), columnText(t, j, id, "n"), wantPayload, wantNote, wantN, o.Set)
			}
		}
		if r := getTask(t, j, 67); r.Ended || r.RID.String != "w2" || r.Payload.String != "p67" {
			t.Fatalf("task 67 = %+v, want w2's, running, untouched", r)
		}
		// Each set of columns went in one statement: as many end times
		// (at most) as sets, on a batching engine.
		var applied66 []int64
		for i, f := range fs {
			if applied[i] {
				applied66 = append(applied66, toInt(t, f.Key))
			}
		}
		wantStatements(t, j, applied66, finishBatches(j), 5)
	})
}

// TestFinishManyValues writes values that need care: quotes, newlines,
// unicode, placeholder look-alikes, the empty string apart from NULL, long
// text, integers, and NULLs among values in one statement.
func TestFinishManyValues(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ty := s.Dialect.Types()
		texts := []string{
			`it's "quoted"`,
			"two\nlines\r\nand\ttab",
			"unicode: héllo wörld — 日本語 🎉",
			`back\slash \' \"`,
			"$1 ? ?::int :name @p %s",
			"'; DROP TABLE tasks; --",
			"",
			strings.Repeat("long ", 4000),
			"nul-free \u00a0\u200b\ufeff end",
		}
		nums := []any{int64(0), int64(-7), int64(2147483647), nil, int64(42), int64(1), nil, int64(-2147483648), int64(3)}
		n := len(texts) * 3
		j := newJob(t, s, "tasks", n, 3)
		mustExec(t, s, `ALTER TABLE tasks ADD COLUMN num `+ty.Int)
		mustExec(t, s, `UPDATE tasks SET num = 5`)
		loadTypes(t, j)
		ids := idRange(1, int64(n))
		fs := startMany(t, j, "w1", ids...)
		outs := make([]Outcome, n)
		for i := range outs {
			txt := texts[i%len(texts)]
			var payload any = txt
			if i/len(texts) == 2 {
				payload = nil // third round: NULL text
			}
			outs[i] = Outcome{Success: i/len(texts) == 1, Error: txt, Set: map[string]any{"payload": payload, "num": nums[i%len(nums)]}}
		}
		applied := finishMany(t, j, fs, outs)
		for i, id := range ids {
			if !applied[i] {
				t.Fatalf("task %d not applied", id)
			}
			r := getTask(t, j, id)
			o := outs[i]
			wantPayload := sql.NullString{}
			if p := o.Set["payload"]; p != nil {
				wantPayload = sql.NullString{String: p.(string), Valid: true}
			}
			if r.Payload != wantPayload {
				t.Fatalf("task %d payload = %q (valid %v), want %q (valid %v)", id, r.Payload.String, r.Payload.Valid, wantPayload.String, wantPayload.Valid)
			}
			wantWhy := sql.NullString{}
			if !o.Success {
				wantWhy = sql.NullString{String: o.Error, Valid: true}
			}
			if r.Why != wantWhy || r.OK.Bool != o.Success {
				t.Fatalf("task %d ok %v why %q (valid %v), want ok %v why %q (valid %v)", id, r.OK, r.Why.String, r.Why.Valid, o.Success, wantWhy.String, wantWhy.Valid)
			}
			wantNum := sql.NullString{}
			if v := o.Set["num"]; v != nil {
				wantNum = sql.NullString{String: fmt.Sprint(v), Valid: true}
			}
			if got := columnText(t, j, id, "num"); got != wantNum {
				t.Fatalf("task %d num = %v, want %v", id, got, wantNum)
			}
		}
		// The table is all there (no statement was cut short by a quote).
		var rows int
		if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM tasks`).Scan(&rows); err != nil || rows != n {
			t.Fatalf("tasks has %d rows, %v", rows, err)
		}
	})
}

// TestFinishManyInTransaction: FinishMany inside a transaction writes
// nothing if it rolls back, and everything once it commits.
func TestFinishManyInTransaction(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		j := newJob(t, s, "tasks", 40, 3)
		loadTypes(t, j)
		ids := idRange(1, 40)
		fs := startMany(t, j, "w1", ids...)
		outs := make([]Outcome, len(fs))
		for i := range outs {
			outs[i] = Outcome{Success: true, Set: map[string]any{"payload": fmt.Sprintf("tx %d", i)}}
		}
		before := snapshot(t, j, 20)
		rollback := fmt.Errorf("roll back")
		err := s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			applied, err := j.FinishMany(ctx, tx, fs, outs)
			if err != nil {
				return err
			}
			for i, a := range applied {
				if !a {
					return fmt.Errorf("outcome %d not applied in the transaction", i)
				}
			}
			return rollback
		})
		if err != rollback {
			t.Fatalf("Tx = %v, want the rollback", err)
		}
		if after := snapshot(t, j, 20); !slices.Equal(before, after) {
			t.Fatalf("rolled back FinishMany changed the row: %v → %v", before, after)
		}
		var applied []bool
		err = s.Tx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			var err error
			applied, err = j.FinishMany(ctx, tx, fs, outs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if !applied[i] {
				t.Fatalf("task %d not applied", id)
			}
			if r := getTask(t, j, id); !r.Ended || !r.OK.Bool || r.Payload.String != fmt.Sprintf("tx %d", i) {
				t.Fatalf("task %d after commit = %+v", id, r)
			}
		}
	})
}

// TestFinishManyBeforeLoadColumnTypes runs the same finishes on two equal
// tables, one whose job has loaded its column types and one that has not:
// the results are the same, written row by row on PostgreSQL before the
// load and batched after.
func TestFinishManyBeforeLoadColumnTypes(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const n = 300
		rowByRow := newJob(t, s, "plain", n, 3)
		batched := newJob(t, s, "loaded", n, 3)
		if rowByRow.casts.Load() != nil {
			t.Fatal("column types loaded before LoadColumnTypes")
		}
		loadTypes(t, batched)
		if s.Dialect.Name() == "postgres" {
			wantBatchable(t, rowByRow, []string{"payload"}, false)
			wantBatchable(t, batched, []string{"payload"}, true)
		}
		var results [2][]bool
		var ids []int64
		for k, j := range []*JobSQL{rowByRow, batched} {
			fs := startMany(t, j, "w1", idRange(1, n-20)...)
			// Fenced-out tries among them: another worker's, a wrong try.
			w2 := startMany(t, j, "w2", idRange(n-19, n-10)...)
			for i := range w2 {
				w2[i].Worker = "w1"
			}
			fs = append(fs, w2...)
			stale := startMany(t, j, "w3", idRange(n-9, n)...)
			for i := range stale {
				stale[i].Try++
			}
			fs = append(fs, stale...)
			slices.SortFunc(fs, func(a, b Fence) int { return int(a.Key.(int64)%7 - b.Key.(int64)%7) }) // shuffle, same way on both
			outs := make([]Outcome, len(fs))
			for i, f := range fs {
				id := f.Key.(int64)
				outs[i] = Outcome{Success: id%5 != 0, Error: fmt.Sprintf("err %d: it's\nbad", id)}
				if id%2 == 0 {
					outs[i].Set = map[string]any{"payload": fmt.Sprintf("v%d 'é'", id)}
				}
			}
			results[k] = finishMany(t, j, fs, outs)
			if k == 0 {
				ids = nil
				for _, f := range fs {
					ids = append(ids, f.Key.(int64))
				}
			}
			var appliedIDs []int64
			for i, a := range results[k] {
				if a {
					appliedIDs = append(appliedIDs, fs[i].Key.(int64))
				}
				if want := fs[i].Worker == "w1" && fs[i].Key.(int64) <= n-20; a != want {
					t.Fatalf("job %d: outcome %d (%+v) applied = %v, want %v", k, i, fs[i], a, want)
				}
			}
			wantStatements(t, j, appliedIDs, finishBatches(j), 2)
		}
		if !slices.Equal(results[0], results[1]) {
			t.Fatalf("applied differ: row by row %v, batched %v", results[0], results[1])
		}
		cols := []string{"payload", "rid", "rtimes", "ended IS NOT NULL", "ok", "why", "started IS NOT NULL"}
		for _, id := range ids {
			var a, b [7]sql.NullString
			for k, j := range []*JobSQL{rowByRow, batched} {
				dst := &a
				if k == 1 {
					dst = &b
				}
				exprs := make([]string, len(cols))
				ptrs := make([]any, len(cols))
				for i, c := range cols {
					exprs[i] = "CAST(" + c + " AS TEXT)"
					ptrs[i] = &dst[i]
				}
				if err := s.DB.QueryRowContext(ctx, s.q(`SELECT `+strings.Join(exprs, ", ")+` FROM `+j.t+` WHERE id = ?`), id).Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
			}
			if a != b {
				t.Fatalf("task %d: row by row %v, batched %v", id, a, b)
			}
		}
		// Loading is done once; again is a no-op.
		loaded := batched.casts.Load()
		loadTypes(t, batched)
		if batched.casts.Load() != loaded {
			t.Fatal("a second LoadColumnTypes read the types again")
		}
	})
}

// TestFinishManyLoadColumnTypesError: on PostgreSQL, a job whose table
// cannot be read keeps finishing row by row.
func TestFinishManyLoadColumnTypesError(t *testing.T) {
	t.Parallel()
	s := openStore(t, "postgres")
	j := s.Job(JobSpec{Table: ParseIdent("no_such_table"), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
		StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
	err := j.LoadColumnTypes(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("LoadColumnTypes of a missing table = %v, want an error naming it", err)
	}
	if j.casts.Load() != nil {
		t.Fatal("column types stored after a failed load")
	}
	wantBatchable(t, j, nil, false)
}

// TestFinishManyTextKeys finishes a batch on a table keyed by text, with
// keys that differ only slightly and keys that need quoting.
func TestFinishManyTextKeys(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ty := s.Dialect.Types()
		mustExec(t, s, fmt.Sprintf(`CREATE TABLE "Orders" ("Order Ref" %s PRIMARY KEY, "Who" %s, "At" %s,
			"Tries" %s, "Began" %s, "Done" %s, "Ok" %s, "Why" %s, "Note" %s)`,
			ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text, ty.Text))
		keys := []string{"a-1", "b-2", "it's-3", "with space", "ünï-ç 😀", "10", "010", "1", "", `quo"te`, `back\slash`, "line\nbreak", "A-1"}
		for i := range 40 {
			keys = append(keys, fmt.Sprintf("k-%03d", i))
		}
		for _, k := range keys {
			mustExec(t, s, `INSERT INTO "Orders" ("Order Ref") VALUES (?)`, k)
		}
		j := s.Job(JobSpec{Table: ParseIdent("Orders"), PrimaryKey: "Order Ref", ReservationID: "Who", ReservationTime: "At", ReservationTimes: "Tries",
			StartTime: "Began", EndTime: "Done", Success: "Ok", ErrorDescription: "Why", MaxTryTimes: 2})
		loadTypes(t, j)
		wantBatchable(t, j, []string{"Note"}, finishBatches(j))
		fs := startAllRows(t, j, "w1")
		if len(fs) != len(keys) {
			t.Fatalf("started %d rows, want %d", len(fs), len(keys))
		}
		// "010" and "A-1" are fenced out with a wrong try: their near
		// twins "10" and "a-1" must still be applied, and they not.
		want := map[string]bool{}
		outs := make([]Outcome, len(fs))
		for i := range fs {
			k, ok := fs[i].Key.(string)
			if !ok {
				t.Fatalf("key %v is %T, want string", fs[i].Key, fs[i].Key)
			}
			want[k] = k != "010" && k != "A-1"
			if !want[k] {
				fs[i].Try++
			}
			outs[i] = Outcome{Success: i%2 == 0, Error: "failed " + k, Set: map[string]any{"Note": "note of " + k}}
		}
		applied := finishMany(t, j, fs, outs)
		for i, f := range fs {
			k := f.Key.(string)
			if applied[i] != want[k] {
				t.Fatalf("key %q applied = %v, want %v", k, applied[i], want[k])
			}
			var done bool
			var note, why sql.NullString
			var ok sql.NullBool
			if err := s.DB.QueryRowContext(ctx, s.q(`SELECT "Done" IS NOT NULL, "Note", "Ok", "Why" FROM "Orders" WHERE "Order Ref" = ?`), k).
				Scan(&done, &note, &ok, &why); err != nil {
				t.Fatal(err)
			}
			if !want[k] {
				if done || note.Valid || ok.Valid {
					t.Fatalf("fenced-out key %q was written: done %v note %v ok %v", k, done, note, ok)
				}
				continue
			}
			if !done || note.String != "note of "+k || ok.Bool != outs[i].Success || outs[i].Success == why.Valid {
				t.Fatalf("key %q: done %v note %v ok %v why %v; want outcome %+v", k, done, note, ok, why, outs[i])
			}
		}
	})
}

// TestFinishManyKeyTypes finishes batches on tables keyed by other types,
// with fences holding the keys as Claim returned them: every applied row
// must be reported applied.
func TestFinishManyKeyTypes(t *testing.T) {
	t.Parallel()
	cases := map[string][]struct{ typ, values string }{
		"sqlite": {
			{"BLOB", `(x'00ff10'), (x'61'), (x'6162')`},
			{"REAL", `(1.5), (2.25), (-3.0)`},
			{"TEXT", `('x'), ('y'), ('z')`},
			{"BIGINT", `(9007199254740993), (-1), (0)`},
		},
		"postgres": {
			{"bytea", `('\x00ff10'), ('\x61'), ('\x6162')`},
			{"uuid", `('00000000-0000-0000-0000-000000000001'), ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), ('ffffffff-ffff-ffff-ffff-ffffffffffff')`},
			{"numeric", `(1.50), (2), (-3.125)`},
			{"bigint", `(9007199254740993), (-1), (0)`},
			{"timestamptz", `('2024-02-29 12:00:00.123456+00'), ('1999-12-31 23:59:59+05:30'), ('2030-01-01 00:00:00+00')`},
			{"varchar(10)", `('a'), ('b '), ('c')`},
		},
	}
	for dialect, types := range cases {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, dialect)
			ty := s.Dialect.Types()
			for i, c := range types {
				table := fmt.Sprintf("keys%d", i)
				mustExec(t, s, fmt.Sprintf(`CREATE TABLE %s (id %s PRIMARY KEY, rid %s, rtime %s, rtimes %s, started %s, ended %s, ok %s, why %s, payload %s)`,
					table, c.typ, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text, ty.Text))
				mustExec(t, s, `INSERT INTO `+table+` (id) VALUES `+c.values)
				j := s.Job(JobSpec{Table: ParseIdent(table), PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
					StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
				loadTypes(t, j)
				fs := startAllRows(t, j, "w1")
				if len(fs) != 3 {
					t.Fatalf("%s keys: started %d rows", c.typ, len(fs))
				}
				outs := make([]Outcome, len(fs))
				for i := range outs {
					outs[i] = Outcome{Success: true, Set: map[string]any{"payload": "done"}}
				}
				applied := finishMany(t, j, fs, outs)
				var ended int
				if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM `+table+` WHERE ended IS NOT NULL AND payload = 'done'`).Scan(&ended); err != nil {
					t.Fatal(err)
				}
				if ended != 3 {
					t.Fatalf("%s keys: %d of 3 rows written", c.typ, ended)
				}
				for i, a := range applied {
					if !a {
						t.Errorf("%s keys: key %#v (%T) was written but FinishMany reports it not applied", c.typ, fs[i].Key, fs[i].Key)
					}
				}
			}
		})
	}
}

// TestFinishManyTableNames finishes batches on tables whose names need
// care: mixed case and spaces, schema-qualified, and names that the
// statement might use for itself.
func TestFinishManyTableNames(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ty := s.Dialect.Types()
		schema := "main"
		if s.Dialect.Name() != "sqlite" {
			if err := s.DB.QueryRowContext(t.Context(), `SELECT current_schema()`).Scan(&schema); err != nil {
				t.Fatal(err)
			}
		}
		names := []Ident{{Name: "Job Tasks"}, {Schema: schema, Name: "qualified"}, {Schema: schema, Name: "v"},
			{Name: "r"}, {Name: "b"}, {Name: "values"}, {Name: "column1"}}
		if s.Dialect.Name() != "sqlite" { // SQLite's names ignore case: "V" is v
			names = append(names, Ident{Name: "V"})
		}
		for _, name := range names {
			mustExec(t, s, fmt.Sprintf(`CREATE TABLE %s (id %s PRIMARY KEY, payload %s, rid %s, rtime %s, rtimes %s, started %s, ended %s, ok %s, why %s)`,
				name.Quoted(), ty.Int, ty.Text, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text))
			mustExec(t, s, `INSERT INTO `+name.Quoted()+` (id) VALUES (1), (2), (3), (4)`)
			j := s.Job(JobSpec{Table: name, PrimaryKey: "id", ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
				StartTime: "started", EndTime: "ended", Success: "ok", ErrorDescription: "why", MaxTryTimes: 3})
			loadTypes(t, j)
			fs := startAllRows(t, j, "w1")
			outs := make([]Outcome, len(fs))
			for i := range outs {
				outs[i] = Outcome{Success: true, Set: map[string]any{"payload": "done"}}
			}
			applied, err := j.FinishMany(t.Context(), s.DB, fs, outs)
			if err != nil {
				t.Errorf("table %s: FinishMany: %v", name, err)
				continue
			}
			for i, a := range applied {
				if !a {
					t.Errorf("table %s: outcome %d not applied", name, i)
				}
			}
			var n int
			if err := s.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM `+name.Quoted()+` WHERE ended IS NOT NULL AND payload = 'done'`).Scan(&n); err != nil || n != 4 {
				t.Errorf("table %s: %d of 4 rows written, %v", name, n, err)
			}
		}
	})
}

// TestFinishManyColumnNames finishes a batch on a table whose columns bear
// the names the statement may give its own values (k, w, n, s, e, c0, …,
// column1, …).
func TestFinishManyColumnNames(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ty := s.Dialect.Types()
		mustExec(t, s, fmt.Sprintf(`CREATE TABLE odd (column1 %s PRIMARY KEY, k %s, at %s, n %s, v %s, column2 %s, s %s, e %s,
			c0 %s, c1 %s, column6 %s, b %s, r %s)`,
			ty.Int, ty.Text, ty.Time, ty.Int, ty.Time, ty.Time, ty.Bool, ty.Text, ty.Text, ty.Text, ty.Text, ty.Int, ty.Int))
		mustExec(t, s, `INSERT INTO odd (column1, c0, c1, column6, b, r) VALUES (1, 'x', 'x', 'x', 0, 0), (2, 'x', 'x', 'x', 0, 0), (3, 'x', 'x', 'x', 0, 0), (4, 'x', 'x', 'x', 0, 0)`)
		j := s.Job(JobSpec{Table: ParseIdent("odd"), PrimaryKey: "column1", ReservationID: "k", ReservationTime: "at", ReservationTimes: "n",
			StartTime: "v", EndTime: "column2", Success: "s", ErrorDescription: "e", MaxTryTimes: 3})
		loadTypes(t, j)
		fs := startAllRows(t, j, "w1")
		if len(fs) != 4 {
			t.Fatalf("started %d rows", len(fs))
		}
		fs[2].Worker = "w2" // fenced out
		outs := make([]Outcome, len(fs))
		for i, f := range fs {
			id := toInt(t, f.Key)
			outs[i] = Outcome{Success: id != 1, Error: "bad", Set: map[string]any{
				"c0": fmt.Sprintf("c0-%d", id), "c1": fmt.Sprintf("c1-%d", id), "column6": fmt.Sprintf("col6-%d", id), "b": id * 10, "r": id * 100}}
		}
		applied := finishMany(t, j, fs, outs)
		for i, f := range fs {
			id := toInt(t, f.Key)
			if applied[i] != (i != 2) {
				t.Fatalf("row %d applied = %v", id, applied[i])
			}
			var ended, ok bool
			var e, c0, c1, c6 sql.NullString
			var b, r int64
			if err := s.DB.QueryRowContext(t.Context(), s.q(`SELECT column2 IS NOT NULL, COALESCE(s, FALSE), e, c0, c1, column6, b, r FROM odd WHERE column1 = ?`), id).
				Scan(&ended, &ok, &e, &c0, &c1, &c6, &b, &r); err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%v %v %v %s %s %s %d %d", ended, ok, e.Valid, c0.String, c1.String, c6.String, b, r)
			want := fmt.Sprintf("true %v %v c0-%d c1-%d col6-%d %d %d", id != 1, id == 1, id, id, id, id*10, id*100)
			if !applied[i] {
				want = "false false false x x x 0 0"
			}
			if got != want {
				t.Fatalf("row %d = %s, want %s", id, got, want)
			}
		}
	})
}

// TestFinishManyWideSet finishes a large batch whose outcomes set many
// columns, as Finish can one row at a time.
func TestFinishManyWideSet(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const cols, rows = 130, 300
		ty := s.Dialect.Types()
		j := newJob(t, s, "tasks", rows, 3)
		var names []string
		for c := range cols {
			names = append(names, fmt.Sprintf("c%03d", c))
			mustExec(t, s, fmt.Sprintf(`ALTER TABLE tasks ADD COLUMN c%03d %s`, c, ty.Text))
		}
		loadTypes(t, j)
		wantBatchable(t, j, names, finishBatches(j))
		ids := idRange(1, rows)
		fs := startMany(t, j, "w1", ids...)
		outs := make([]Outcome, rows)
		for i, id := range ids {
			set := map[string]any{}
			for _, c := range names {
				set[c] = fmt.Sprintf("%s=%d", c, id)
			}
			outs[i] = Outcome{Success: true, Set: set}
		}
		applied, err := j.FinishMany(t.Context(), s.DB, fs, outs)
		if err != nil {
			t.Fatalf("FinishMany of %d outcomes setting %d columns: %v", rows, cols, err)
		}
		for i, id := range ids {
			if !applied[i] {
				t.Fatalf("task %d not applied", id)
			}
		}
		for _, id := range []int64{1, 150, rows} {
			for _, c := range []string{names[0], names[cols/2], names[cols-1]} {
				if got := columnText(t, j, id, c); got.String != fmt.Sprintf("%s=%d", c, id) {
					t.Fatalf("task %d %s = %v", id, c, got)
				}
			}
		}
	})
}

// TestFinishManyPostgresTypes writes columns of PostgreSQL types that the
// batched statement casts its values to: the values land as a single-row
// Finish would write them, and a value too long for its column is an error,
// never silently cut.
func TestFinishManyPostgresTypes(t *testing.T) {
	t.Parallel()
	s := openStore(t, "postgres")
	ctx := t.Context()
	const n = 40
	j := newJob(t, s, "typed", n, 3)
	mustExec(t, s, `CREATE TYPE "Mood" AS ENUM ('sad', 'ok', 'glad')`)
	mustExec(t, s, `CREATE DOMAIN code3 AS char(3) CHECK (VALUE <> 'bad')`)
	mustExec(t, s, `ALTER TABLE typed
		ADD COLUMN short varchar(5), ADD COLUMN amount numeric(12,3), ADD COLUMN at timestamptz, ADD COLUMN doc jsonb,
		ADD COLUMN tags text[], ADD COLUMN big bigint, ADD COLUMN ratio double precision, ADD COLUMN mood "Mood",
		ADD COLUMN code char(4), ADD COLUMN flags bit(3), ADD COLUMN codes char(3)[], ADD COLUMN bits bit(2)[],
		ADD COLUMN stamp timestamp(0), ADD COLUMN shorts varchar(3)[], ADD COLUMN dom code3`)
	loadTypes(t, j)
	wantBatchable(t, j, []string{"amount", "at", "big", "doc", "mood", "ratio", "short", "tags"}, true)
	wantBatchable(t, j, []string{"code"}, false)
	wantBatchable(t, j, []string{"flags"}, false)
	next := int64(1)
	start := func(k int) ([]Fence, []int64) {
		ids := idRange(next, next+int64(k)-1)
		next += int64(k)
		return startMany(t, j, "w1", ids...), ids
	}
	text := func(id int64, expr string) sql.NullString {
		t.Helper()
		var v sql.NullString
		if err := s.DB.QueryRowContext(ctx, `SELECT (`+expr+`)::text FROM typed WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatalf("read %s of task %d: %v", expr, id, err)
		}
		return v
	}
	null := sql.NullString{}
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }

	t.Run("varchar too long", func(t *testing.T) {
		fs, ids := start(4)
		outs := []Outcome{
			{Success: true, Set: map[string]any{"short": "ok"}},
			{Success: true, Set: map[string]any{"short": "12345"}},
			{Success: true, Set: map[string]any{"short": "héllo"}},
			{Success: true, Set: map[string]any{"short": "0123456789"}},
		}
		_, err := j.FinishMany(ctx, s.DB, fs, outs)
		if err == nil || !strings.Contains(err.Error(), "too long") {
			t.Fatalf("FinishMany with a 10-character value for varchar(5) = %v, want a value-too-long error", err)
		}
		if r := getTask(t, j, ids[3]); r.Ended || text(ids[3], "short").Valid {
			t.Fatalf("task %d written despite the error: %+v, short %v", ids[3], r, text(ids[3], "short"))
		}
		// Row by row (the first three) they fit.
		applied := finishMany(t, j, fs[:3], outs[:3])
		for i, want := range []string{"ok", "12345", "héllo"} {
			if !applied[i] || text(ids[i], "short") != str(want) {
				t.Fatalf("task %d: applied %v short %v, want %q", ids[i], applied[i], text(ids[i], "short"), want)
			}
		}
		// Within a Tx, as the worker runs it, the error surfaces too.
		more, moreIDs := start(1)
		err = s.Tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			_, err := j.FinishMany(ctx, tx, []Fence{fs[3], more[0]}, []Outcome{outs[3], outs[0]})
			return err
		})
		if err == nil {
			t.Fatal("FinishMany in a transaction of a too-long value succeeded")
		}
		for _, id := range []int64{ids[3], moreIDs[0]} {
			if r := getTask(t, j, id); r.Ended || text(id, "short").Valid {
				t.Fatalf("task %d written by a failed transaction: %+v", id, r)
			}
		}
	})

	t.Run("varchar[] too long", func(t *testing.T) {
		fs, ids := start(3)
		outs := []Outcome{
			{Success: true, Set: map[string]any{"shorts": []string{"abc", "d"}}},
			{Success: true, Set: map[string]any{"shorts": []string{"x"}}},
			{Success: true, Set: map[string]any{"shorts": []string{"abcdef"}}},
		}
		if _, err := j.FinishMany(ctx, s.DB, fs, outs); err == nil {
			t.Fatalf("FinishMany of a 6-character element for varchar(3)[] succeeded: %v", text(ids[2], "shorts"))
		}
		applied := finishMany(t, j, fs[:2], outs[:2])
		if !applied[0] || !applied[1] || text(ids[0], "shorts") != str("{abc,d}") || text(ids[1], "shorts") != str("{x}") {
			t.Fatalf("varchar(3)[]: applied %v, %v, %v", applied, text(ids[0], "shorts"), text(ids[1], "shorts"))
		}
	})

	t.Run("numeric timestamptz jsonb and more", func(t *testing.T) {
		fs, ids := start(6)
		at := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("+05:30", 5*3600+1800))
		outs := []Outcome{
			{Success: true, Set: map[string]any{"amount": "12345.678", "at": at, "doc": `{"b": [1, "x'y\n"], "a": null}`,
				"tags": []string{"a", "b c", `d"e`}, "big": int64(9007199254740993), "ratio": 0.1, "mood": "glad"}},
			{Success: false, Error: "x", Set: map[string]any{"amount": "-0.001", "at": at.Add(-48 * time.Hour), "doc": map[string]any{"k": "v", "n": 1},
				"tags": []string{}, "big": int64(-1), "ratio": -2.5e300, "mood": "sad"}},
			{Success: true, Set: map[string]any{"amount": 2.5, "at": nil, "doc": `"just text"`, "tags": nil, "big": nil, "ratio": nil, "mood": nil}},
			{Success: true, Set: map[string]any{"amount": int64(7), "at": at, "doc": `[]`, "tags": []string{"ü"}, "big": int64(0), "ratio": 1.0, "mood": "ok"}},
			{Success: true, Set: map[string]any{"amount": "1.23456", "at": at, "doc": nil, "tags": []string{""}, "big": int64(1), "ratio": 0.0, "mood": "ok"}},
			{Success: true, Set: map[string]any{"amount": nil, "at": at, "doc": `{"a":{"b":{"c":[true,false,null]}}}`, "tags": []string{"x"}, "big": int64(2), "ratio": 3.0, "mood": "ok"}},
		}
		applied := finishMany(t, j, fs, outs)
		for i, a := range applied {
			if !a {
				t.Fatalf("outcome %d not applied", i)
			}
		}
		wantAmount := []sql.NullString{str("12345.678"), str("-0.001"), str("2.500"), str("7.000"), str("1.235"), null}
		wantDoc := []sql.NullString{str(`{"a": null, "b": [1, "x'y\n"]}`), str(`{"k": "v", "n": 1}`), str(`"just text"`), str(`[]`), null, str(`{"a": {"b": {"c": [true, false, null]}}}`)}
		wantTags := []sql.NullString{str(`{a,"b c","d\"e"}`), str(`{}`), null, str(`{ü}`), str(`{""}`), str(`{x}`)}
		wantBig := []sql.NullString{str("9007199254740993"), str("-1"), null, str("0"), str("1"), str("2")}
		wantRatio := []sql.NullString{str("0.1"), str("-2.5e+300"), null, str("1"), str("0"), str("3")}
		wantMood := []sql.NullString{str("glad"), str("sad"), null, str("ok"), str("ok"), str("ok")}
		for i, id := range ids {
			for _, c := range []struct {
				col  string
				want sql.NullString
			}{{"amount", wantAmount[i]}, {"doc", wantDoc[i]}, {"tags", wantTags[i]}, {"big", wantBig[i]}, {"ratio", wantRatio[i]}, {"mood", wantMood[i]}} {
				if got := text(id, c.col); got != c.want {
					t.Errorf("task %d (outcome %d) %s = %v, want %v", id, i, c.col, got, c.want)
				}
			}
			var got sql.NullTime
			if err := s.DB.QueryRowContext(ctx, `SELECT at FROM typed WHERE id = $1`, id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			want, _ := outs[i].Set["at"].(time.Time)
			if got.Valid != !want.IsZero() || got.Valid && !got.Time.Equal(want) {
				t.Errorf("task %d at = %v, want %v", id, got, outs[i].Set["at"])
			}
		}
		if r := getTask(t, j, ids[1]); r.OK.Bool || r.Why.String != "x" {
			t.Errorf("task %d = %+v, want failed with x", ids[1], r)
		}
	})

	t.Run("typmod columns", func(t *testing.T) {
		// char(n) and bit(n), whose unmodified types mean char(1) and
		// bit(1), their arrays, and timestamp(0): written as Finish
		// writes them, whether batched or not.
		fs, ids := start(10)
		stamp := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		outs := []Outcome{
			{Success: true, Set: map[string]any{"code": "abcd", "codes": []string{"abc", "de"}}},
			{Success: true, Set: map[string]any{"code": "ab", "codes": []string{"xyz"}}},
			{Success: true, Set: map[string]any{"flags": "101", "bits": "{10,01}"}},
			{Success: true, Set: map[string]any{"flags": "011", "bits": "{11}"}},
			{Success: true, Set: map[string]any{"codes": []string{"abc", "de"}}},
			{Success: true, Set: map[string]any{"codes": []string{"xyz"}}},
			{Success: true, Set: map[string]any{"bits": "{10,01}"}},
			{Success: true, Set: map[string]any{"bits": "{11}"}},
			{Success: true, Set: map[string]any{"stamp": stamp}},
			{Success: true, Set: map[string]any{"stamp": stamp.Add(time.Second + 400*time.Millisecond)}},
		}
		for i := 0; i < len(fs); i += 2 { // a call per pair: an error in one spoils no other
			applied, err := j.FinishMany(ctx, s.DB, fs[i:i+2], outs[i:i+2])
			if err != nil {
				t.Errorf("FinishMany(%v, %v): %v", outs[i].Set, outs[i+1].Set, err)
				continue
			}
			if !applied[0] || !applied[1] {
				t.Errorf("FinishMany(%v, %v) applied %v", outs[i].Set, outs[i+1].Set, applied)
			}
		}
		for _, c := range []struct {
			id        int64
			col, want string
		}{
			{ids[0], "code", "abcd"}, {ids[0], "octet_length(code)", "4"}, {ids[0], "codes", `{abc,"de "}`},
			{ids[1], "code", "ab"}, {ids[1], "octet_length(code)", "4"}, {ids[1], "codes", "{xyz}"},
			{ids[2], "flags", "101"}, {ids[2], "bits", "{10,01}"},
			{ids[3], "flags", "011"}, {ids[3], "bits", "{11}"},
			// Without char(n) or bit(n) beside them:
			{ids[4], "codes", `{abc,"de "}`}, {ids[5], "codes", "{xyz}"},
			{ids[6], "bits", "{10,01}"}, {ids[7], "bits", "{11}"},
			{ids[8], "stamp", "2024-05-06 07:08:09"}, {ids[9], "stamp", "2024-05-06 07:08:10"},
		} {
			if got := text(c.id, c.col); got != str(c.want) {
				t.Errorf("task %d %s = %v, want %q", c.id, c.col, got, c.want)
			}
		}
		// Too long for char(4), or for an element of char(3)[]: an error,
		// not a cut.
		// A domain over char(3): its length and check hold, its values
		// are padded, not cut.
		dfs, dids := start(2)
		if applied := finishMany(t, j, dfs, []Outcome{{Success: true, Set: map[string]any{"dom": "ab"}}, {Success: true, Set: map[string]any{"dom": "xyz"}}}); !applied[0] || !applied[1] {
			t.Errorf("domain: applied %v", applied)
		}
		if got := text(dids[0], "octet_length(dom)"); got != str("3") {
			t.Errorf("domain value length = %v, want 3 (padded)", got)
		}
		if got := text(dids[1], "dom"); got != str("xyz") {
			t.Errorf("domain value = %v, want xyz", got)
		}
		for _, set := range []map[string]any{{"code": "abcde"}, {"codes": []string{"abcd"}}, {"dom": "abcd"}, {"dom": "bad"}} {
			fs, ids := start(2)
			var col string
			for col = range set {
			}
			_, err := j.FinishMany(ctx, s.DB, fs, []Outcome{{Success: true, Set: set}, {Success: true, Set: map[string]any{col: nil}}})
			if err == nil {
				t.Errorf("FinishMany of %v succeeded, storing %v", set, text(ids[0], col))
			}
		}
	})
}
