package pampa

import (
	"context"
	"errors"
	"github.com/pampa-go/pampa/internal/engine"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// Errors no database column likes — quotes, newlines, invalid UTF-8, NUL
// bytes, 100 KB of text — end as readable, bounded failure descriptions,
// and nothing is lost.
func TestHostileErrorTexts(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		texts := map[int64]string{
			1: `it's "quoted"; DROP TABLE numbers; --`,
			2: "line one\nline two\r\n\ttabbed",
			3: "bad utf-8: \xff\xfe\xfd end",
			4: "nul \x00 byte",
			5: strings.Repeat("0123456789", 10<<10), // 100 KB
		}
		job := oddJob()
		job.MaxTryTimes = 1
		job.Process = func(ctx context.Context, task *Task) error {
			v, err := task.Int64("value")
			if err != nil {
				return err
			}
			if s, ok := texts[v]; ok {
				return errors.New(s)
			}
			return nil
		}
		e := newEnv(t, driver, 8, job)
		r := e.start(2)
		rep := e.waitDone("search_odd_numbers", 8, 60*time.Second)
		r.stop(t)
		if rep.Completed != 3 || rep.Failed != 5 {
			t.Fatalf("report = %+v, want 3 completed and 5 failed", rep)
		}
		rows, err := e.client.DB().Query(`SELECT value, odd_checking_error_description FROM numbers WHERE odd_checking_success = FALSE ORDER BY value`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			var desc string
			if err := rows.Scan(&v, &desc); err != nil {
				t.Fatal(err)
			}
			if !utf8.ValidString(desc) || strings.ContainsRune(desc, 0) {
				t.Errorf("task %d: description is not clean text: %q", v, desc[:min(len(desc), 80)])
			}
			if len(desc) > engine.MaxErrorLen+100 {
				t.Errorf("task %d: description of %d bytes, want at most about %d", v, len(desc), engine.MaxErrorLen)
			}
			want := strings.ToValidUTF8(texts[v], "\uFFFD")
			want = strings.ReplaceAll(want, "\x00", "\\0")
			if len(want) > 40 {
				want = want[:40]
			}
			if !strings.HasPrefix(desc, want) {
				t.Errorf("task %d: description %q does not start with %q", v, desc[:min(len(desc), 80)], want)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// A processing function that ignores its context and hangs is abandoned
// after its deadline plus the overrun grace: its try fails, and the
// worker's other tasks go on.
func TestHangingFunctionIsAbandoned(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		release := make(chan struct{})
		defer close(release)
		var hung atomic.Int32
		job := oddJob()
		job.MaxJobDuration = 300 * time.Millisecond
		job.MaxTryTimes = 1
		job.Process = func(ctx context.Context, task *Task) error {
			if v, _ := task.Int64("value"); v == 2 {
				hung.Add(1)
				<-release // ignores ctx
			}
			return nil
		}
		e := newEnv(t, driver, 6, job)
		r := e.start(1) // one worker: the hang must not block the rest
		rep := e.waitDone("search_odd_numbers", 6, 60*time.Second)
		r.stop(t)
		if rep.Completed != 5 || rep.Failed != 1 {
			t.Fatalf("report = %+v, want 5 completed, 1 failed", rep)
		}
		var desc string
		if err := e.client.DB().QueryRow(`SELECT odd_checking_error_description FROM numbers WHERE value = 2`).Scan(&desc); err != nil {
			t.Fatal(err)
		}
		// The worker abandons it (its overrun grace), or the dispatcher's
		// expiry gets there first: with the tests' short settings both
		// fall due at about the same time.
		if !strings.Contains(desc, "did not return") && !strings.Contains(desc, "expired") {
			t.Errorf("description of the hung task = %q", desc)
		}
		if hung.Load() != 1 {
			t.Errorf("hung task ran %d times, want 1", hung.Load())
		}
	})
}

// A worker id with shell metacharacters is refused with a clear error
// before anything is written or run.
func TestWorkerIDWithShellMetacharacters(t *testing.T) {
	t.Parallel()
	c := &Cluster{}
	if err := c.AddNode(Node{Name: "local", MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"local.1; rm -rf /", "local.$(reboot)", "local.`id`", "local.1 && true", "local|x.1", "local.1\n"} {
		if err := c.CheckWorkerID(id); err == nil {
			t.Errorf("worker id %q accepted", id)
		} else if !strings.Contains(err.Error(), "worker id") {
			t.Errorf("worker id %q: unclear error %v", id, err)
		}
	}
	if err := c.AddNode(Node{Name: "evil;rm", MaxWorkers: 1}); err == nil {
		t.Error("node name with a semicolon accepted")
	}
}
