package nodes

// The supervisors' rules, without processes: restart delays and the crash
// loop, exit descriptions, and how a supervisor's record is judged.

import (
	"strings"
	"testing"
	"time"
)

func TestNodesCrashLoop(t *testing.T) {
	t.Parallel()
	c := crashLoop{p: DefaultRestartPolicy}
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	// 1s doubling to 30s, then the sixth exit within 60s gives up.
	var got []time.Duration
	at := t0
	for range 5 {
		d, giveUp := c.failed(at)
		if giveUp {
			t.Fatalf("gave up after %d exits", len(got)+1)
		}
		got = append(got, d)
		at = at.Add(d + 2*time.Second)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	if _, giveUp := c.failed(t0.Add(59 * time.Second)); !giveUp {
		t.Error("a sixth exit within the window did not give up")
	}

	// Exits older than the window are forgotten: the delay starts over.
	c = crashLoop{p: RestartPolicy{Delay: time.Second, MaxDelay: 3 * time.Second, Limit: 2, Window: 10 * time.Second}}
	c.failed(t0)
	if d, _ := c.failed(t0.Add(time.Second)); d != 2*time.Second {
		t.Errorf("second delay = %s, want 2s", d)
	}
	if d, giveUp := c.failed(t0.Add(10500 * time.Millisecond)); giveUp || d != 2*time.Second {
		t.Errorf("with the first exit out of the window: %s, %v; want 2s, no give-up", d, giveUp)
	}
	if d, giveUp := c.failed(t0.Add(30 * time.Second)); giveUp || d != time.Second {
		t.Errorf("after a quiet window: %s, %v; want 1s", d, giveUp)
	}
	// The delay stops at MaxDelay.
	c = crashLoop{p: RestartPolicy{Delay: time.Second, MaxDelay: 3 * time.Second, Limit: 9, Window: time.Hour}}
	var last time.Duration
	for i := range 5 {
		last, _ = c.failed(t0.Add(time.Duration(i) * time.Second))
	}
	if last != 3*time.Second {
		t.Errorf("capped delay = %s, want 3s", last)
	}
}

func TestNodesRestartPolicyDefaults(t *testing.T) {
	t.Parallel()
	if p := (RestartPolicy{}).withDefaults(); p != DefaultRestartPolicy {
		t.Errorf("zero policy = %+v", p)
	}
	// A delay above the default maximum raises the maximum with it.
	if p := (RestartPolicy{Delay: time.Minute}).withDefaults(); p.MaxDelay != time.Minute || p.Limit != 5 {
		t.Errorf("long delay = %+v", p)
	}
	p := RestartPolicy{Delay: 100 * time.Millisecond, MaxDelay: 50 * time.Millisecond, Limit: 2, Window: time.Second}.withDefaults()
	if p.MaxDelay != 100*time.Millisecond || p.Limit != 2 || p.Window != time.Second {
		t.Errorf("max below delay = %+v", p)
	}
	if s := DefaultRestartPolicy.String(); s != "restart after 1s doubling to 30s, give up after 5 restarts within 1m0s" {
		t.Errorf("String = %q", s)
	}
}

func TestNodesExitInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e     ExitInfo
		text  string
		clean bool
	}{
		{ExitInfo{}, "exit status 0", true},
		{ExitInfo{Code: 3}, "exit status 3", false},
		{ExitInfo{Signal: "SIGKILL"}, "killed by SIGKILL", false},
	} {
		if tc.e.String() != tc.text || tc.e.Clean() != tc.clean {
			t.Errorf("%+v: %q, clean %v; want %q, %v", tc.e, tc.e.String(), tc.e.Clean(), tc.text, tc.clean)
		}
	}
	for n, want := range map[int]string{9: "SIGKILL", 15: "SIGTERM", 11: "SIGSEGV", 6: "SIGABRT", 0: "signal 0", 64: "signal 64"} {
		if got := signalName(n); got != want {
			t.Errorf("signalName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNodesSupervisorState(t *testing.T) {
	t.Parallel()
	files := map[string]string{}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, errNotExist(name)
	}
	const dir = "/h/pampa"
	if st := supervisorState(read, dir, "n.1"); st != nil {
		t.Errorf("no record: %+v", st)
	}
	files[superPath(dir, "n.1")] = "{not json"
	if st := supervisorState(read, dir, "n.1"); st == nil || st.Alive || !strings.Contains(st.Why, "unreadable") {
		t.Errorf("unreadable record: %+v", st)
	}
	files[superPath(dir, "n.1")] = `{"kind":"pampa","pid":40,"start_ticks":700,"state":"restarting","restarts":2,"last_exit":{"signal":"SIGKILL"}}`
	if st := supervisorState(read, dir, "n.1"); st.Alive || !strings.Contains(st.Why, "the supervisor died: pid 40 is gone without recording why") {
		t.Errorf("a supervisor gone while restarting: %+v", st)
	}
	files["/proc/40/stat"] = "40 (prog) S 1 40 40 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 700 0 0"
	files["/proc/40/cmdline"] = "prog\x00nodes\x00agent\x00worker\x00--id\x00n.1\x00"
	if st := supervisorState(read, dir, "n.1"); st.Alive {
		t.Errorf("a process without `supervise` in its arguments: %+v", st)
	}
	files["/proc/40/cmdline"] = "prog\x00nodes\x00agent\x00supervise\x00--id\x00n.1\x00{}\x00"
	st := supervisorState(read, dir, "n.1")
	if !st.Alive || st.Why != "" || st.Restarts != 2 || st.LastExit == nil || st.LastExit.Signal != "SIGKILL" {
		t.Errorf("a live supervisor: %+v", st)
	}
	if st := supervisorState(read, dir, "n.10"); st != nil {
		t.Errorf("another worker's: %+v", st)
	}
	// One that gave up is gone, as it should be: no complaint.
	files[superPath(dir, "n.1")] = `{"kind":"pampa","pid":41,"state":"gave-up","gave_up":true,"reason":"crash loop"}`
	if st := supervisorState(read, dir, "n.1"); st.Alive || st.Why != "" || !st.GaveUp {
		t.Errorf("a supervisor that gave up: %+v", st)
	}
	// A systemd unit's state is its manager's to tell.
	files[superPath(dir, "n.2")] = `{"kind":"systemd","unit":"pampa-n.2-abc123.service","systemctl":["systemctl"],"state":"running"}`
	if st := supervisorState(read, dir, "n.2"); st.Alive || st.Why != "" || st.Unit != "pampa-n.2-abc123.service" {
		t.Errorf("a systemd unit: %+v", st)
	}
}
