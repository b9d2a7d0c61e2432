package execcall

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/handler"
)

// persistentScript answers each input line by the key it holds: most
// answer {"ok": true} with the process's pid; some keys misbehave.
const persistentScript = `
while IFS= read -r line; do
  case "$line" in
    *'"key":1,'*) echo 'garbage' ;;
    *'"key":2,'*) echo 'dying on key 2' >&2; exit 3 ;;
    *'"key":3,'*) sleep 60 ;;
    *'"key":4,'*) echo '{"ok": false, "error": "no such customer", "final": true, "set": {"note": "gone"}}' ;;
    *'"key":5,'*) echo '{"ok": false, "error": "try later"}' ;;
    *'"key":6,'*) echo '{"ok": true}'; echo '{"ok": true}' ;;
    *'"key":8,'*) echo '{"ok": true, "fnal": true}' ;;
    *'"key":9,'*) head -c 1100000 /dev/zero | tr '\0' a; echo ;;
    *) printf '{"ok": true, "set": {"pid": %d}}\n' $$ ;;
  esac
done
`

func newPersistent(t *testing.T, body string) *Caller {
	t.Helper()
	c := New(Options{Args: []string{script(t, body)}, Persistent: true, KillGrace: 300 * time.Millisecond})
	t.Cleanup(c.Close)
	return c
}

// try runs one persistent try of key under a timeout.
func try(c *Caller, key int64, timeout time.Duration) handler.Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Call(ctx, input(key))
}

// pidOf is the pid a good answer carries.
func pidOf(t *testing.T, out handler.Outcome) int64 {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("try failed: %v", out.Err)
	}
	pid, ok := out.Set["pid"].(int64)
	if !ok {
		t.Fatalf("answer without a pid: %+v", out)
	}
	return pid
}

// Many tries go through one process, and concurrent tries through one
// process each at most.
func TestPersistentManyTasksOneProcess(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, persistentScript)
	first := pidOf(t, try(c, 100, 10*time.Second))
	for k := int64(101); k < 150; k++ {
		if pid := pidOf(t, try(c, k, 10*time.Second)); pid != first {
			t.Fatalf("try %d ran in process %d, want all in %d", k, pid, first)
		}
	}
	var mu sync.Mutex
	pids := map[int64]int{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				out := try(c, int64(1000+g*100+i), 10*time.Second)
				mu.Lock()
				pids[pidOf(t, out)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(pids) > 4 {
		t.Errorf("100 tries on 4 goroutines ran in %d processes, want at most 4: %v", len(pids), pids)
	}
}

// The answer lines: a failure, final or not, with the columns it sets.
func TestPersistentAnswers(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, persistentScript)
	pid := pidOf(t, try(c, 100, 10*time.Second))
	out := try(c, 4, 10*time.Second)
	wantErr(t, out, "no such customer")
	if !out.Final || out.Set["note"] != "gone" {
		t.Errorf("outcome = %+v, want final with note set", out)
	}
	out = try(c, 5, 10*time.Second)
	wantErr(t, out, "try later")
	if out.Final {
		t.Error("a failure without final: true is final")
	}
	if again := pidOf(t, try(c, 100, 10*time.Second)); again != pid {
		t.Errorf("answers that failed tries restarted the process (%d, then %d)", pid, again)
	}
}

// A line that is not an answer fails the try and restarts the process,
// whose stream can no longer be trusted: garbage, an unknown key, a line
// past MaxOutput, a second line nobody asked for.
func TestPersistentBadLines(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, persistentScript)
	for _, tt := range []struct {
		key  int64
		want []string
	}{
		{1, []string{"the answer is not a JSON object", `begins "garbage"`, "restarted"}},
		{8, []string{`unknown field "fnal"`, "restarted"}},
		{9, []string{"output too large", "killed and is restarted"}},
	} {
		before := pidOf(t, try(c, 100, 10*time.Second))
		wantErr(t, try(c, tt.key, 10*time.Second), tt.want...)
		after := pidOf(t, try(c, 100, 10*time.Second))
		if after == before {
			t.Errorf("key %d: the next try ran in the same process %d", tt.key, before)
		}
		wantGone(t, int(before), fmt.Sprintf("the process that answered key %d", tt.key))
	}
	// Two lines for one input: the try succeeds, the next one runs in a
	// fresh process.
	before := pidOf(t, try(c, 100, 10*time.Second))
	if out := try(c, 6, 10*time.Second); out.Err != nil {
		t.Fatalf("first of two lines: %v", out.Err)
	}
	time.Sleep(100 * time.Millisecond) // the second line comes in
	if after := pidOf(t, try(c, 100, 10*time.Second)); after == before {
		t.Errorf("a process that wrote a line unasked served the next try")
	}
}

// A process that dies mid-stream fails its try with its status and
// stderr; the next try starts another.
func TestPersistentDiesMidStream(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, persistentScript)
	before := pidOf(t, try(c, 100, 10*time.Second))
	wantErr(t, try(c, 2, 10*time.Second), "the process exited (exit status 3) before answering", "stderr: dying on key 2")
	if after := pidOf(t, try(c, 100, 10*time.Second)); after == before {
		t.Errorf("the same pid %d after the process died", before)
	}
}

// A process that exits between tries (here once it answered) is replaced
// for the next one.
func TestPersistentExitsBetweenTries(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, `read -r line; printf '{"ok": true, "set": {"pid": %d}}\n' $$`)
	seen := map[int64]bool{}
	for k := range int64(5) {
		seen[pidOf(t, try(c, k+100, 10*time.Second))] = true
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) != 5 {
		t.Errorf("5 tries of a process that answers once ran in %d processes", len(seen))
	}
}

// A process that dies at once fails every try with its stderr, and each
// restart waits longer: 100 ms, then 200 ms, …
func TestPersistentImmediateDeaths(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, `echo 'SyntaxError: invalid syntax' >&2; exit 1`)
	start := time.Now()
	for range 3 {
		wantErr(t, try(c, 100, 10*time.Second), "exited (exit status 1) before answering", "SyntaxError: invalid syntax")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("3 tries of a process dying at once took %s, want the restarts to back off (100 ms + 200 ms)", d)
	}
	// The next backoff (400 ms) is longer than the try's time left: the
	// try fails at its deadline instead of starting anything.
	wantErr(t, try(c, 100, 50*time.Millisecond), "waiting", "to restart the process, which exited", "context deadline exceeded")
}

// The deadline holds per try: the process is killed with its group, and
// the next try starts another.
func TestPersistentDeadline(t *testing.T) {
	t.Parallel()
	c := newPersistent(t, persistentScript)
	before := pidOf(t, try(c, 100, 10*time.Second))
	start := time.Now()
	wantErr(t, try(c, 3, 300*time.Millisecond), "stopped by SIGTERM when its try ended (context deadline exceeded)")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the try past its deadline took %s", d)
	}
	wantGone(t, int(before), "the process killed at its try's deadline")
	if after := pidOf(t, try(c, 100, 10*time.Second)); after == before {
		t.Errorf("the killed process %d served the next try", before)
	}
}

// Close stops idle processes: one that exits when its stdin closes at
// once, one that ignores it and SIGTERM after the grace and SIGKILL.
func TestPersistentClose(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		min, max   time.Duration
	}{
		{"ExitsOnEOF", persistentScript, 0, 250 * time.Millisecond},
		{"Stubborn", `trap '' TERM
while :; do
  if IFS= read -r line; then printf '{"ok": true, "set": {"pid": %d}}\n' $$; else sleep 0.05; fi
done`, 600 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := New(Options{Args: []string{script(t, tt.body)}, Persistent: true, KillGrace: 300 * time.Millisecond})
			pid := pidOf(t, try(c, 100, 10*time.Second))
			start := time.Now()
			c.Close()
			if d := time.Since(start); d < tt.min || d > tt.max {
				t.Errorf("Close took %s, want between %s and %s", d, tt.min, tt.max)
			}
			wantGone(t, int(pid), "a persistent process after Close")
			wantErr(t, try(c, 100, time.Second), "the worker is stopping")
		})
	}
}

// The input lines are the Input objects, one per try, in the order sent.
func TestPersistentInputLines(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "in.jsonl")
	c := newPersistent(t, `while IFS= read -r line; do echo "$line" >> `+file+`; echo '{"ok": true}'; done`)
	for k := range int64(3) {
		if out := try(c, k+10, 10*time.Second); out.Err != nil {
			t.Fatal(out.Err)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"key":10,`) || !strings.Contains(lines[2], `"key":12,`) {
		t.Errorf("input lines = %q", lines)
	}
}
