package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/metrics"
)

// envMetricsToken names the bearer token /metrics requires, when set.
const envMetricsToken = "PAMPA_METRICS_TOKEN"

// metricsFlags serve a process's metrics over HTTP.
type metricsFlags struct{ listen string }

func (f *metricsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "metrics-listen", "", "serve Prometheus metrics on this address, such as :9400 or 127.0.0.1:9400 (GET /metrics, GET /healthz);\n"+
		"$"+envMetricsToken+", if set, is the bearer token /metrics requires (docs/metrics.md)")
}

// start serves the process's metrics when --metrics-listen is given, and
// returns them (nil without the flag) and a stop that shuts the server
// down and waits for it. With a client (dispatcher and run processes, one
// or two per cluster) the database gauges are collected too; workers,
// which may be many, never run those queries.
func (f *metricsFlags) start(log *slog.Logger, client *pampa.Client) (*pampa.Metrics, func(), error) {
	if f.listen == "" {
		return nil, func() {}, nil
	}
	m := pampa.NewMetrics()
	if client != nil {
		if err := m.CollectDatabase(client, log); err != nil {
			return nil, nil, err
		}
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-listen %s: %w", f.listen, err)
	}
	token := os.Getenv(envMetricsToken)
	srv := metrics.NewServer(m.Handler(), token)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := metrics.Serve(ctx, srv, ln); err != nil {
			log.Warn("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "token_required", token != "")
	return m, func() { cancel(); <-done }, nil
}
