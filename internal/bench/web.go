package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/dashboard"
)

// DashboardPages are the dashboard pages the scale scenario times: the
// overview, the bench job's page with its first tasks, the same with its
// pending tasks, its failed tasks, and the overview as JSON.
var DashboardPages = []string{"/", "/jobs/" + Job, "/jobs/" + Job + "?state=pending", "/failed?job=" + Job, "/api/overview"}

// timeDashboard serves the dashboard over client on a loopback test server
// in this process and returns the median of full GETs of each of
// DashboardPages, in ms: the server's cost, its database reads included,
// plus one local round trip.
func timeDashboard(ctx context.Context, client *pampa.Client) (map[string]float64, error) {
	dash, err := dashboard.New(dashboard.Options{Client: client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(dash)
	defer srv.Close()
	times := map[string][]time.Duration{}
	for i := 0; i < timedRuns; i++ {
		for _, page := range DashboardPages {
			d, _, err := timeGET(ctx, srv.URL+page)
			if err != nil {
				return nil, err
			}
			times[page] = append(times[page], d)
		}
	}
	out := map[string]float64{}
	for page, ds := range times {
		out[page] = ms(median(ds))
	}
	return out, nil
}

// timeScrape serves metrics with the database gauges of client on a
// loopback test server and returns the median of full scrapes and the
// size of the last one's body (uncompressed; the client asks for gzip, as
// Prometheus does).
func timeScrape(ctx context.Context, client *pampa.Client) (time.Duration, int, error) {
	m := pampa.NewMetrics()
	if err := m.CollectDatabase(client, slog.New(slog.DiscardHandler)); err != nil {
		return 0, 0, err
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	var times []time.Duration
	var body []byte
	for i := 0; i < timedRuns; i++ {
		d, b, err := timeGET(ctx, srv.URL+"/metrics")
		if err != nil {
			return 0, 0, err
		}
		// A failed database read still answers 200, without its gauges.
		if !bytes.Contains(b, []byte("\npampa_database_scrape_success 1\n")) {
			return 0, 0, fmt.Errorf("scrape %d: the database reads failed:\n%s", i+1, b)
		}
		times, body = append(times, d), b
	}
	return median(times), len(body), nil
}

// timeGET times a GET of url until its whole body is read, and returns the
// body; it fails unless the answer is 200 OK.
func timeGET(ctx context.Context, url string) (time.Duration, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return d, body, nil
}
