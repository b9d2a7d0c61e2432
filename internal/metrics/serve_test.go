package metrics

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs a server for m on a free port, stopped when the test ends.
func serve(t *testing.T, m *Metrics, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, NewServer(m.Handler(), token), ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after its context ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of its context ending")
		}
	})
	return "http://" + ln.Addr().String()
}

func TestBearerToken(t *testing.T) {
	const token = "s3cret-token"
	url := serve(t, New(), token)
	for _, c := range []struct {
		name, auth string
		want       int
	}{
		{"NoHeader", "", http.StatusUnauthorized},
		{"WrongToken", "Bearer s3cret-tokeN", http.StatusUnauthorized},
		{"Prefix", "Bearer s3cret", http.StatusUnauthorized},
		{"Longer", "Bearer s3cret-token2", http.StatusUnauthorized},
		{"OtherScheme", "Basic s3cret-token", http.StatusUnauthorized},
		{"BareToken", token, http.StatusUnauthorized},
		{"Right", "Bearer " + token, http.StatusOK},
		{"SchemeInOtherCase", "bearer " + token, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, code := get(t, url+"/metrics", c.auth)
			if code != c.want {
				t.Fatalf("GET /metrics with %q: %d, want %d\n%s", c.auth, code, c.want, body)
			}
			if code == http.StatusOK && !strings.Contains(body, "go_goroutines") {
				t.Errorf("GET /metrics: no go_goroutines in\n%s", body)
			}
			if code != http.StatusOK && strings.Contains(body, "go_goroutines") {
				t.Errorf("an unauthorized GET /metrics got the metrics:\n%s", body)
			}
		})
	}
	// Liveness probes carry no token.
	if body, code := get(t, url+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz without a token: %d %q, want 200 \"ok\\n\"", code, body)
	}
}

func TestServerRoutes(t *testing.T) {
	url := serve(t, New(), "")
	if body, code := get(t, url+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "process_start_time_seconds") {
		t.Errorf("GET /metrics without a token configured: %d\n%s", code, body)
	}
	if _, code := get(t, url+"/healthz", ""); code != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", code)
	}
	if _, code := get(t, url+"/other", ""); code != http.StatusNotFound {
		t.Errorf("GET /other: %d, want 404", code)
	}
	resp, err := client.Post(url+"/metrics", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", resp.StatusCode)
	}
}

// A scrape in progress when the server stops is let finish.
func TestServeStopsWithScrapeInFlight(t *testing.T) {
	m := New()
	if err := m.CollectDatabase(&slowSource{fakeSource: healthySource(), delay: 300 * time.Millisecond}, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, NewServer(m.Handler(), ""), ln) }()
	scraped := make(chan int, 1)
	go func() {
		_, code := get(t, "http://"+ln.Addr().String()+"/metrics", "")
		scraped <- code
	}()
	time.Sleep(100 * time.Millisecond) // the scrape is waiting on the database
	cancel()
	if code := <-scraped; code != http.StatusOK {
		t.Errorf("a scrape in flight as the server stopped: %d, want 200", code)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// slowSource takes delay over its task counts.
type slowSource struct {
	*fakeSource
	delay time.Duration
}

func (s *slowSource) Jobs(ctx context.Context) ([]JobTasks, error) {
	time.Sleep(s.delay)
	return s.fakeSource.Jobs(ctx)
}
