package chaos

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestMain turns the test binary into the scenario's Pampa program when
// Run starts it as a dispatcher, worker or setup command.
func TestMain(m *testing.M) {
	if IsChild() {
		ChildMain()
	}
	os.Exit(m.Run())
}

// TestChaos runs the Small scenario — a few thousand tasks; one worker
// SIGKILLed and restarted, the leading dispatcher SIGKILLed, a worker
// SIGSTOPped past its heartbeat timeout and SIGCONTed, PostgreSQL restarted
// — with the checks of `make chaos`: nothing lost, no concurrent run of a
// task while both its workers were alive, no other problem.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs separate processes for about half a minute")
	}
	t.Parallel()
	runChaos(t, Small())
}

// TestChaosNodes is TestChaos with the workers under node dispatchers:
// two node processes of three workers each, one of them SIGKILLed and
// one SIGSTOPped with all their workers.
func TestChaosNodes(t *testing.T) {
	t.Parallel()
	runChaos(t, Small().WithNodes(2, 3))
}

// runChaos runs a scenario and checks its verdict.
func runChaos(t *testing.T, cfg Config) {
	t.Helper()
	out := &lineLogger{t: t}
	res, err := Run(t.Context(), cfg, out)
	out.flush()
	if err != nil {
		t.Fatalf("the scenario could not run: %v", err)
	}
	t.Log(res.JSON())
	if res.Tasks != cfg.Tasks {
		t.Errorf("tasks = %d, want %d", res.Tasks, cfg.Tasks)
	}
	if res.Lost != 0 {
		t.Errorf("lost = %d (succeeded %d, failed for good %d), want 0", res.Lost, res.Succeeded, res.Failed)
	}
	if res.ConcurrentRuns != 0 {
		t.Errorf("concurrent_runs = %d, want 0", res.ConcurrentRuns)
	}
	for _, p := range res.Problems {
		t.Errorf("problem: %s", p)
	}
	if want := 2; res.Kills < want { // one worker, one leader
		t.Errorf("kills = %d, want at least %d", res.Kills, want)
	}
	if res.MaxRecoveryS <= 0 || res.MaxRecoveryS > cfg.RecoveryBound.Seconds() {
		t.Errorf("max_recovery_s = %g, want in (0, %g]", res.MaxRecoveryS, cfg.RecoveryBound.Seconds())
	}
	if res.Dir != "" {
		t.Logf("the run's logs and cluster are kept in %s", res.Dir)
	}
}

// lineLogger hands each line written to it to t.Log.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // incomplete: keep it for later
			return len(p), nil
		}
		l.t.Log(strings.TrimSuffix(line, "\n"))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.t.Log(l.buf.String())
		l.buf.Reset()
	}
}
