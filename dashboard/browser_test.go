package dashboard

// End-to-end tests in a real headless Chromium (Debian's chromium package),
// driven with chromedp. Each page is saved as a PNG in $PAMPA_SCREENSHOTS
// (default: dashboard/screenshots/, which git ignores).

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pampa-go/pampa"
)

// chromiumPath finds the browser: $PAMPA_CHROMIUM, else chromium or
// google-chrome on the PATH. None is a failure that says what to install.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PAMPA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := osexec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found for the browser tests: install Debian's chromium package (apt-get install chromium), " +
		"or set PAMPA_CHROMIUM to a Chrome or Chromium binary")
	return ""
}

// browse starts a headless Chromium for the test and returns its context.
func browse(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page as name.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PAMPA_SCREENSHOTS")
	if dir == "" {
		dir = "screenshots"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs an action that gives a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// css is a CSS selector.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// cell reads a count of the job's row on the page as a number.
func cell(t *testing.T, ctx context.Context, field string) int64 {
	t.Helper()
	// Read in one script: a refresh may swap the row between the steps
	// of a query-then-read.
	text := value(t, ctx, "read "+field, chromedp.Evaluate[string](
		`document.querySelector('tr[data-job="numbers"] td[data-field="`+field+`"]').textContent`))
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, text)
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		t.Fatalf("the %s cell holds %q", field, text)
	}
	return n
}

// eventually polls cond every 100 ms for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// injection is an error text from user code that tries to run a script
// and to act on a terminal; the pages must show it as text.
const injection = "<b>card declined</b><script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> \x1b[31mred"

// TestBrowserOperatesAJob: the overview's counts move by themselves while
// the job runs, and stop moving while live refresh is paused; Pause stops
// the job's reservations, Resume lets it finish; a task failed for good
// shows its error as inert text and is retried from the Failed page.
func TestBrowserOperatesAJob(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	f := newFixture(t, pampa.DriverSQLite, 1000, func(c *config) {
		c.process = func(ctx context.Context, task *pampa.Task) error {
			if v, _ := task.Int64("value"); v == 7 && failing.Load() {
				return errors.New(injection)
			}
			time.Sleep(15 * time.Millisecond)
			return nil
		}
	})
	ctx := browse(t)
	f.run(2)
	report := func() pampa.JobReport {
		r, err := f.client.JobReport(context.Background(), "numbers")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	run(t, ctx, "open the overview", chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(css("#jobs")))
	first := cell(t, ctx, "completed")
	eventually(t, 15*time.Second, "the completed count to move on the page without a reload", func() bool {
		return cell(t, ctx, "completed") > first
	})
	screenshot(t, ctx, "overview")

	run(t, ctx, "pause live refresh", chromedp.Click(css("#live")))
	if label := value(t, ctx, "read the live button", chromedp.Text(css("#live"))); label != "Live: paused" {
		t.Errorf("the live button says %q", label)
	}
	time.Sleep(300 * time.Millisecond) // let a refresh already under way land
	frozen := cell(t, ctx, "completed")
	eventually(t, 10*time.Second, "the job to go on meanwhile", func() bool { return report().Completed > frozen+20 })
	time.Sleep(2500 * time.Millisecond) // more than a refresh period
	if now := cell(t, ctx, "completed"); now != frozen {
		t.Errorf("the page refreshed while live refresh was paused: %d, then %d", frozen, now)
	}
	run(t, ctx, "resume live refresh", chromedp.Click(css("#live")))
	eventually(t, 5*time.Second, "the page to catch up once live again", func() bool { return cell(t, ctx, "completed") > frozen })

	// A hidden tab does not refresh, and refreshes at once when shown. The
	// headless browser has no tab to hide: the page is told it is hidden
	// as a browser tells it, by document.hidden and a visibilitychange.
	setHidden := func(hidden bool) {
		t.Helper()
		js := `Object.defineProperty(document, "hidden", {configurable: true, get: () => ` + strconv.FormatBool(hidden) + `});
			document.dispatchEvent(new Event("visibilitychange")); true`
		value(t, ctx, "hide or show the tab", chromedp.Evaluate[bool](js))
	}
	setHidden(true)
	time.Sleep(300 * time.Millisecond)
	hiddenAt := cell(t, ctx, "completed")
	eventually(t, 10*time.Second, "the job to go on while hidden", func() bool { return report().Completed > hiddenAt+20 })
	time.Sleep(2500 * time.Millisecond)
	if now := cell(t, ctx, "completed"); now != hiddenAt {
		t.Errorf("a hidden tab refreshed: %d, then %d", hiddenAt, now)
	}
	setHidden(false)
	eventually(t, time.Second, "the tab to refresh at once when shown", func() bool { return cell(t, ctx, "completed") > hiddenAt })

	run(t, ctx, "pause", chromedp.Click(css(`tr[data-job="numbers"] button[data-action="pause"]`)),
		chromedp.WaitVisible(css("#flash")))
	eventually(t, 10*time.Second, "the paused job's reservations to be handed back", func() bool {
		r := report()
		return r.Paused && r.Reserved == 0 && r.Running == 0
	})
	stopped := report().Completed
	time.Sleep(time.Second)
	if r := report(); r.Completed != stopped || r.Reserved != 0 {
		t.Fatalf("the paused job went on: completed %d then %d, reserved %d", stopped, r.Completed, r.Reserved)
	}
	run(t, ctx, "see the pause", chromedp.WaitVisible(css(`tr[data-job="numbers"] .badge.paused`)))

	run(t, ctx, "resume", chromedp.Click(css(`tr[data-job="numbers"] button[data-action="resume"]`)),
		chromedp.WaitVisible(css(`tr[data-job="numbers"] button[data-action="pause"]`)))
	eventually(t, 30*time.Second, "the job to finish, but for task 7", func() bool {
		r := report()
		return r.Completed == 999 && r.Failed == 1
	})

	run(t, ctx, "open the job page", chromedp.Navigate(f.http.URL+"/jobs/numbers"), chromedp.WaitVisible(css("#counts")))
	screenshot(t, ctx, "job")
	run(t, ctx, "open the workers page", chromedp.Navigate(f.http.URL+"/workers"), chromedp.WaitVisible(css("#workers")))
	screenshot(t, ctx, "workers")
	run(t, ctx, "open the nodes page", chromedp.Navigate(f.http.URL+"/nodes"), chromedp.WaitVisible(css("h1")))
	screenshot(t, ctx, "nodes")

	run(t, ctx, "open the failed page", chromedp.Navigate(f.http.URL+"/failed?job=numbers"), chromedp.WaitVisible(css("#failed")))
	errText := value(t, ctx, "read the error", chromedp.Text(css("#failed pre.error")))
	if want := strings.ReplaceAll(injection, "\x1b", `\x1b`); errText != want {
		t.Errorf("the error is shown as %q, want %q", errText, want)
	}
	if pwned := value(t, ctx, "look for the injected script's mark", chromedp.Evaluate[bool](`window.pwned !== undefined`)); pwned {
		t.Error("the error text's script or handler ran")
	}
	screenshot(t, ctx, "failed")
	run(t, ctx, "open the failed task's page", chromedp.Navigate(f.http.URL+"/jobs/numbers/tasks/7"), chromedp.WaitVisible(css("#columns")))
	if pwned := value(t, ctx, "look for the injected script's mark", chromedp.Evaluate[bool](`window.pwned !== undefined`)); pwned {
		t.Error("the error text's script or handler ran on the task's page")
	}
	screenshot(t, ctx, "task")
	run(t, ctx, "back to the failed page", chromedp.Navigate(f.http.URL+"/failed?job=numbers"), chromedp.WaitVisible(css("#failed")))
	failing.Store(false)
	run(t, ctx, "retry task 7", chromedp.Click(css(`button[form="retry-one"][value="7"]`)),
		chromedp.WaitVisible(css("#flash")))
	eventually(t, 15*time.Second, "task 7 to succeed", func() bool {
		r := report()
		return r.Completed == 1000 && r.Failed == 0
	})
	run(t, ctx, "see nothing failed", chromedp.Navigate(f.http.URL+"/failed?job=numbers"), chromedp.WaitVisible(css("#none-failed")))
}

// TestBrowserSignInRoles: sign in and out; a read-only user sees no
// action, and the server refuses one forged from the page.
func TestBrowserSignInRoles(t *testing.T) {
	f := newFixture(t, pampa.DriverSQLite, 3, withAuth)
	ctx := browse(t)
	run(t, ctx, "sign in as admin", chromedp.Navigate(f.http.URL+"/jobs/numbers"), chromedp.WaitVisible(css("#sign-in")))
	screenshot(t, ctx, "login")
	run(t, ctx, "sign in as admin", chromedp.SendKeys(css("#name"), "ada"),
		chromedp.SendKeys(css("#password"), adminPassword), chromedp.Click(css("#sign-in")),
		chromedp.WaitVisible(css("#counts")))
	if user := value(t, ctx, "read the user", chromedp.Text(css("#user"))); user != "ada" {
		t.Errorf("signed in as %q", user)
	}
	run(t, ctx, "see the pause button", chromedp.WaitVisible(css(`button[data-action="pause"]`)))
	run(t, ctx, "sign out", chromedp.Click(css("#logout")), chromedp.WaitVisible(css("#sign-in")))
	run(t, ctx, "signed out, pages need a sign-in", chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(css("#sign-in")))

	run(t, ctx, "a wrong password", chromedp.SendKeys(css("#name"), "rob"),
		chromedp.SendKeys(css("#password"), "nope"), chromedp.Click(css("#sign-in")),
		chromedp.WaitVisible(css("#login-error")))
	run(t, ctx, "sign in read-only", chromedp.SendKeys(css("#name"), "rob"),
		chromedp.SendKeys(css("#password"), readPassword), chromedp.Click(css("#sign-in")),
		chromedp.WaitVisible(css("#jobs")))
	buttons := value(t, ctx, "count action buttons", chromedp.Evaluate[int](`document.querySelectorAll("button[data-action]").length`))
	if buttons != 0 {
		t.Errorf("a read-only user is shown %d action buttons", buttons)
	}
	forge := `fetch("/api/jobs/numbers/pause", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "csrf=" + document.querySelector('meta[name=csrf-token]').content}).then(r => r.status)`
	status := value(t, ctx, "forge a pause", chromedp.Evaluate[int](forge, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Errorf("a read-only pause answered %d, want 403", status)
	}
	if r, _ := f.client.JobReport(context.Background(), "numbers"); r.Paused {
		t.Error("a read-only user paused the job")
	}
}
