package pampa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Tests of the completion hooks (docs/completion.md): each hook writes a
// row per call into the side table fired, which the tests read.

// createFired makes the side table the hooks write to.
func (e *testEnv) createFired() {
	e.t.Helper()
	e.exec(`CREATE TABLE fired (id TEXT, kind TEXT, grp TEXT, run INTEGER, succeeded INTEGER, failed INTEGER)`)
}

// firedRow is one call of a hook, as the hook wrote it.
type firedRow struct {
	ID, Kind, Group      string
	Run, Succeeded, Fail int64
}

// fired reads the hooks' calls, in the order they wrote them.
func (e *testEnv) fired() []firedRow {
	e.t.Helper()
	rows, err := e.client.DB().Query(`SELECT id, kind, COALESCE(grp, ''), run, succeeded, failed FROM fired`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []firedRow
	for rows.Next() {
		var r firedRow
		if err := rows.Scan(&r.ID, &r.Kind, &r.Group, &r.Run, &r.Succeeded, &r.Fail); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// waitFired waits until the hooks were called n times in all.
func (e *testEnv) waitFired(n int, job string) []firedRow {
	e.t.Helper()
	e.waitState(15*time.Second, fmt.Sprintf("%d hook calls", n), job, func() bool { return len(e.fired()) >= n })
	return e.fired()
}

// checkOncePerID fails the test if a hook was called twice for one event.
func (e *testEnv) checkOncePerID() {
	e.t.Helper()
	seen := map[string]int{}
	for _, r := range e.fired() {
		if seen[r.ID]++; seen[r.ID] == 2 {
			e.t.Errorf("event %s fired twice", r.ID)
		}
	}
}

// recordGo is a Go hook's write of an event into fired.
func recordGo(ctx context.Context, db Querier, driver, id, kind string, group any, run, ok, failed int64) error {
	var g any
	if group != nil {
		g = fmt.Sprint(group)
	}
	d, err := store.ByName(driver)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, d.Rebind(`INSERT INTO fired (id, kind, grp, run, succeeded, failed) VALUES (?, ?, ?, ?, ?, ?)`),
		id, kind, g, run, ok, failed)
	return err
}

// onDrainedHook sets the job's on_drained hook, in Go or SQL, to record
// into fired.
func onDrainedHook(j *Job, driver string, sqlHook bool) {
	if sqlHook {
		j.Hooks.OnDrainedSQL = `INSERT INTO fired (id, kind, run, succeeded, failed) VALUES (@event_id, 'drained', @run, @succeeded, @failed)`
		return
	}
	j.Hooks.OnDrained = func(ctx context.Context, db Querier, e DrainedEvent) error {
		if e.Job != j.Name || e.StartedAt.After(e.EndedAt) || e.EndedAt.IsZero() || e.Attempt != 1 {
			return fmt.Errorf("bad event %+v", e)
		}
		return recordGo(ctx, db, driver, e.ID, "drained", nil, e.Run, e.Succeeded, e.Failed)
	}
}

// failMultiplesOf5 fails for good the tasks whose value is a multiple of 5.
func failMultiplesOf5(ctx context.Context, t *Task) error {
	v, err := t.Int64("value")
	if err != nil {
		return err
	}
	if v%5 == 0 {
		return Final(fmt.Errorf("%d: multiple of 5", v))
	}
	return nil
}

func insertNumbers(e *testEnv, from, to int) {
	e.t.Helper()
	var vals []string
	for v := from; v <= to; v++ {
		vals = append(vals, fmt.Sprintf("(%d)", v))
	}
	e.exec(`INSERT INTO numbers (value) VALUES ` + strings.Join(vals, ", "))
}

// A drain fires once, with the counts of its run; new rows make a new
// run, which fires again when it drains, with its own counts.
func TestOnDrainedFiresOncePerDrain(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		j := withProcess(failMultiplesOf5)
		j.MaxTryTimes = 2
		onDrainedHook(&j, driver, sqlHook)
		e := newEnv(t, driver, 20, j)
		e.createFired()
		r := e.start(2)
		got := e.waitFired(1, j.Name)
		want := firedRow{ID: "drained/search_odd_numbers/1", Kind: "drained", Run: 1, Succeeded: 16, Fail: 4}
		if got[0] != want {
			t.Fatalf("first drain = %+v, want %+v", got[0], want)
		}
		insertNumbers(e, 21, 30)
		got = e.waitFired(2, j.Name)
		want = firedRow{ID: "drained/search_odd_numbers/2", Kind: "drained", Run: 2, Succeeded: 8, Fail: 2}
		if got[1] != want {
			t.Fatalf("second drain = %+v, want %+v", got[1], want)
		}
		// Idle, the job drains no more: ten more passes fire nothing.
		time.Sleep(10 * fastDispatcher().MaintenanceEvery)
		r.stop(t)
		if n := len(e.fired()); n != 2 {
			t.Errorf("%d hook calls, want 2: %+v", n, e.fired())
		}
		if n := e.count(`SELECT COUNT(*) FROM pampa_runs WHERE job = ? AND run = 2 AND busy_since IS NULL`, j.Name); n != 1 {
			t.Errorf("the job's run row is not idle after run 2")
		}
		e.checkOncePerID()
		evs, err := e.client.store.Events(t.Context(), j.Name)
		if err != nil || len(evs) != 2 || evs[0].State != store.EventFired || evs[1].State != store.EventFired {
			t.Errorf("events = %+v, %v; want 2 fired", evs, err)
		}
	})
}

// A task that failed with tries left holds the drain until its retry
// ends.
func TestOnDrainedWaitsForRetries(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		j := withProcess(func(ctx context.Context, task *Task) error {
			if v, _ := task.Int64("value"); v == 3 && task.Try() == 1 {
				return fmt.Errorf("first try of 3 fails")
			}
			return nil
		})
		j.RetryBackoff = 1500 * time.Millisecond
		onDrainedHook(&j, driver, false)
		e := newEnv(t, driver, 10, j)
		e.createFired()
		r := e.start(2)
		// Every other task done, 3 waits for its retry.
		retrying := func() bool {
			return e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = FALSE AND value = 3`) == 1 &&
				e.count(`SELECT COUNT(*) FROM numbers WHERE odd_checking_success = TRUE`) == 9
		}
		e.waitState(10*time.Second, "task 3 to retry", j.Name, retrying)
		for retrying() {
			if n := len(e.fired()); n != 0 {
				t.Fatalf("drained while task 3 retries: %+v", e.fired())
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := e.waitFired(1, j.Name)
		r.stop(t)
		if got[0].Succeeded != 10 || got[0].Fail != 0 || len(got) != 1 {
			t.Errorf("drains = %+v, want one with 10 succeeded", got)
		}
		if n := e.count(`SELECT COUNT(*) FROM numbers WHERE value = 3 AND odd_checking_reservation_times = 2`); n != 1 {
			t.Errorf("task 3 ran %d times twice; want its retry before the drain", n)
		}
	})
}

// sitePagesJob is a job over `pages`, its tasks grouped by site.
func sitePagesJob(process ProcessFunc) Job {
	return Job{
		Name: "scrape", Table: "pages", PrimaryKey: "id", GroupBy: "site",
		Fields: TrackingFields{ReservationID: "rid", ReservationTime: "rtime", ReservationTimes: "rtimes",
			StartTime: "stime", EndTime: "etime", Success: "ok", ErrorDescription: "err"},
		QueueSize: 5, MaxPendingTasks: 10, MaxAssignedWorkers: 4, Process: process,
	}
}

// newSitePagesEnv creates `pages` (id, site) with sites by id, and a cluster
// with the job over it, set up and opened. A "" site is NULL.
func newSitePagesEnv(t *testing.T, driver string, j Job, sites map[int]string) *testEnv {
	t.Helper()
	c := &Cluster{Database: databaseFor(t, driver)}
	if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 8}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddJob(j); err != nil {
		t.Fatal(err)
	}
	cl, err := connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DB().Exec(`CREATE TABLE pages (id integer PRIMARY KEY, site text)`); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if _, err := Setup(context.Background(), c, SetupOptions{}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cl, err = Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	e := &testEnv{t: t, cluster: c, client: cl}
	e.addPages(sites)
	return e
}

// addPages inserts pages by id and site ("" for NULL).
func (e *testEnv) addPages(sites map[int]string) {
	e.t.Helper()
	for id, site := range sites {
		var v any = site
		if site == "" {
			v = nil
		}
		e.exec(`INSERT INTO pages (id, site) VALUES (?, ?)`, id, v)
	}
}

// onGroupDoneHook sets the job's on_group_done hook, in Go or SQL, to
// record into fired.
func onGroupDoneHook(j *Job, driver string, sqlHook bool) {
	if sqlHook {
		j.Hooks.OnGroupDoneSQL = `INSERT INTO fired (id, kind, grp, run, succeeded, failed) VALUES (@event_id, 'group', @group, @run, @succeeded, @failed)`
		return
	}
	j.Hooks.OnGroupDone = func(ctx context.Context, db Querier, e GroupDoneEvent) error {
		if e.Job != j.Name || e.StartedAt.After(e.EndedAt) {
			return fmt.Errorf("bad event %+v", e)
		}
		return recordGo(ctx, db, driver, e.ID, "group", e.Group, e.Run, e.Succeeded, e.Failed)
	}
}

// byGroup indexes hook calls by group and run.
func byGroup(rows []firedRow) map[string]firedRow {
	out := map[string]firedRow{}
	for _, r := range rows {
		out[fmt.Sprintf("%s/%d", r.Group, r.Run)] = r
	}
	return out
}

// Each group fires once its every task ended, with its own counts (a
// task failed for good included), not while one of its tasks retries;
// a group given new rows fires again.
func TestOnGroupDoneFiresOncePerGroup(t *testing.T) {
	t.Parallel()
	variants(t, func(t *testing.T, driver string, sqlHook bool) {
		j := sitePagesJob(func(ctx context.Context, task *Task) error {
			id, _ := task.Int64("id")
			switch {
			case id == 7:
				return Final(fmt.Errorf("page 7 is gone"))
			case id == 9 && task.Try() == 1:
				return fmt.Errorf("page 9: try again")
			}
			return nil
		})
		j.RetryBackoff = 1200 * time.Millisecond
		onGroupDoneHook(&j, driver, sqlHook)
		e := newSitePagesEnv(t, driver, j, map[int]string{1: "a", 2: "a", 3: "a", 4: "a", 5: "a", 6: "b", 7: "b", 8: "b", 9: "c", 10: "c", 11: ""})
		e.createFired()
		r := e.start(3)
		retrying := func() bool {
			return e.count(`SELECT COUNT(*) FROM pages WHERE id = 9 AND ok = FALSE`) == 1
		}
		e.waitState(10*time.Second, "page 9 to retry", j.Name, retrying)
		for retrying() {
			if c, ok := byGroup(e.fired())["c/1"]; ok {
				t.Fatalf("group c done while page 9 retries: %+v", c)
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := byGroup(e.waitFired(4, j.Name))
		want := map[string]firedRow{
			"a/1": {ID: "group_done/scrape/1/s:a", Kind: "group", Group: "a", Run: 1, Succeeded: 5},
			"b/1": {ID: "group_done/scrape/1/s:b", Kind: "group", Group: "b", Run: 1, Succeeded: 2, Fail: 1},
			"c/1": {ID: "group_done/scrape/1/s:c", Kind: "group", Group: "c", Run: 1, Succeeded: 2},
			"/1":  {ID: "group_done/scrape/1/null", Kind: "group", Run: 1, Succeeded: 1},
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("group %s: %+v, want %+v", k, got[k], w)
			}
		}
		e.addPages(map[int]string{12: "a", 13: "a"})
		got = byGroup(e.waitFired(5, j.Name))
		if w := (firedRow{ID: "group_done/scrape/2/s:a", Kind: "group", Group: "a", Run: 2, Succeeded: 2}); got["a/2"] != w {
			t.Errorf("group a, run 2: %+v, want %+v", got["a/2"], w)
		}
		time.Sleep(10 * fastDispatcher().MaintenanceEvery)
		r.stop(t)
		if n := len(e.fired()); n != 5 {
			t.Errorf("%d hook calls, want 5: %+v", n, e.fired())
		}
		e.checkOncePerID()
	})
}

// hookScript records each call in calls.log (the event kind, its id, the
// group, the JSON it read), in the directory it runs from; with
// FAIL_FIRST set, the first call of each event fails.
const hookScript = `line=$(cat)
mark="marks/$(printf %s "$PAMPA_EVENT_ID" | tr '/:' '__')"
if [ -n "$FAIL_FIRST" ] && [ ! -e "$mark" ]; then
	mkdir -p marks && : > "$mark"
	echo "first call of $PAMPA_EVENT_ID fails" >&2
	exit 3
fi
printf '%s\t%s\t%s\t%s\n' "$PAMPA_EVENT" "$PAMPA_EVENT_ID" "${PAMPA_GROUP-}" "$line" >> calls.log
`

// hookCall is a line of calls.log.
type hookCall struct {
	kind, id, group string
	event           struct {
		Event, ID, Job    string
		Group             any
		Run               int64
		Succeeded, Failed int64
		Attempt           int
		StartedAt         time.Time `json:"started_at"`
		EndedAt           time.Time `json:"ended_at"`
	}
}

func readCalls(t *testing.T, path string) []hookCall {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []hookCall
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, "\t", 4)
		if len(f) != 4 {
			t.Fatalf("bad line %q", line)
		}
		c := hookCall{kind: f[0], id: f[1], group: f[2]}
		if err := json.Unmarshal([]byte(f[3]), &c.event); err != nil {
			t.Fatalf("stdin of %s: %v (%q)", c.id, err, f[3])
		}
		out = append(out, c)
	}
	return out
}

// Commands: run from their directory with the event as JSON on stdin and
// PAMPA_* variables; a non-zero exit is a failed call, called again.
func TestCompletionCommands(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "hook.sh"), []byte(hookScript), 0o755); err != nil {
			t.Fatal(err)
		}
		j := sitePagesJob(func(ctx context.Context, task *Task) error {
			if id, _ := task.Int64("id"); id == 3 {
				return Final(errors.New("page 3 is gone"))
			}
			return nil
		})
		j.Hooks.OnDrainedExec = &HookCommand{Command: []string{"sh", "hook.sh"}, Dir: dir}
		j.Hooks.OnGroupDoneExec = &HookCommand{Command: []string{"sh", "./hook.sh"}, Dir: dir, Env: map[string]string{"FAIL_FIRST": "1"}}
		e := newSitePagesEnv(t, driver, j, map[int]string{1: "a", 2: "a", 3: "b"})
		r := e.start(2)
		log := filepath.Join(dir, "calls.log")
		e.waitState(15*time.Second, "three hook calls", j.Name, func() bool { return len(readCalls(t, log)) >= 3 })
		r.stop(t)
		calls := readCalls(t, log)
		if len(calls) != 3 {
			t.Fatalf("calls = %+v, want 3", calls)
		}
		by := map[string]hookCall{}
		for _, c := range calls {
			if c.kind != c.event.Event || c.id != c.event.ID || c.event.Job != "scrape" || c.event.Run != 1 || c.event.StartedAt.After(c.event.EndedAt) {
				t.Errorf("call %+v: environment and stdin disagree", c)
			}
			by[c.id] = c
		}
		check := func(id, group string, ok, failed int64, attempt int) {
			t.Helper()
			c, found := by[id]
			switch {
			case !found:
				t.Errorf("no call of %s: %+v", id, calls)
			case c.group != group || c.event.Succeeded != ok || c.event.Failed != failed || c.event.Attempt != attempt:
				t.Errorf("%s: %+v, want group %q, %d succeeded, %d failed, attempt %d", id, c, group, ok, failed, attempt)
			}
		}
		check("drained/scrape/1", "", 2, 1, 1)
		check("group_done/scrape/1/s:a", "a", 2, 0, 2)
		check("group_done/scrape/1/s:b", "b", 0, 1, 2)
		if g := by["group_done/scrape/1/s:a"].event.Group; g != "a" {
			t.Errorf("stdin group = %v, want a", g)
		}
		evs, err := e.client.store.Events(t.Context(), "scrape")
		if err != nil || len(evs) != 3 {
			t.Fatalf("events = %+v, %v", evs, err)
		}
		for _, ev := range evs {
			if ev.State != store.EventFired || ev.LastError != "" {
				t.Errorf("event %s: state %s, error %q; want fired, the error cleared", ev.ID, ev.State, ev.LastError)
			}
		}
	})
}
