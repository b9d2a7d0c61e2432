package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/pampa-go/pampa"
	"github.com/pampa-go/pampa/internal/bridge"
)

// The burn under node dispatchers: Nodes nodes named bench1 … benchN,
// Workers workers each, all in this process, as on one machine of a
// cluster that would run them on many.

// NodeName is the name of the bench's node i (1-based) under node
// dispatchers.
func NodeName(i int) string { return fmt.Sprintf("bench%d", i) }

// addNodes defines the nodes of a burn under node dispatchers.
func addNodes(c *pampa.Cluster, nodes, workers int) error {
	for i := 1; i <= nodes; i++ {
		if err := c.AddNode(pampa.Node{Name: NodeName(i), MaxWorkers: workers}); err != nil {
			return err
		}
	}
	return nil
}

// startNodes runs a node dispatcher per node, with its workers.
func (b *burnRun) startNodes(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger) error {
	cfg := b.cfg
	for i := 1; i <= cfg.Nodes; i++ {
		opts := pampa.NodeOptions{Workers: cfg.Workers}
		opts.Concurrency, opts.Logger = cfg.Concurrency, log
		d, err := b.client.NewNodeDispatcher(NodeName(i), opts)
		if err != nil {
			return err
		}
		b.workers = append(b.workers, d)
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.Run(ctx) }()
	}
	return nil
}

// dbFigures are what the database served during a burn.
type dbFigures struct {
	commits   int64 // write transactions this process's store committed
	pgXacts   int64 // PostgreSQL: write transactions at the server (transaction ids), -1 elsewhere
	rounds    int
	reserved  float64 // rows reserved by the rounds
	roundMean time.Duration
	roundP95  time.Duration // the upper bound of the bucket holding it; -1 past the last one
}

// readDB reads the counters: the store's commits, and PostgreSQL's
// transaction ids. Each write transaction at the server takes an id, at
// once, whoever runs it; pg_stat_database's counters would lag by a
// second or more, as backends report them lazily.
func readDB(ctx context.Context, client *pampa.Client) dbFigures {
	f := dbFigures{commits: bridge.Commits(client), pgXacts: -1}
	if client.Cluster().Database.Driver == pampa.DriverPostgres {
		var n int64
		if client.DB().QueryRowContext(ctx, `SELECT txid_current()`).Scan(&n) == nil {
			f.pgXacts = n
		}
	}
	return f
}

func (f dbFigures) minus(before dbFigures) dbFigures {
	out := dbFigures{commits: f.commits - before.commits, pgXacts: -1}
	if f.pgXacts >= 0 && before.pgXacts >= 0 {
		out.pgXacts = f.pgXacts - before.pgXacts
	}
	return out
}

// roundFigures reads the dispatcher's round histogram: how many rounds,
// their mean, and the upper bound of the bucket holding the 95th
// percentile.
func roundFigures(m *pampa.Metrics) (int, time.Duration, time.Duration) {
	families, err := m.Registry().Gather()
	if err != nil {
		return 0, 0, 0
	}
	for _, f := range families {
		if f.GetName() != "pampa_dispatcher_round_duration_seconds" || len(f.GetMetric()) == 0 {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		n := h.GetSampleCount()
		if n == 0 {
			return 0, 0, 0
		}
		mean := time.Duration(h.GetSampleSum() / float64(n) * float64(time.Second))
		p95 := time.Duration(-1) // past the last bucket
		for _, b := range h.GetBucket() {
			if float64(b.GetCumulativeCount()) >= 0.95*float64(n) && !math.IsInf(b.GetUpperBound(), 1) {
				p95 = time.Duration(b.GetUpperBound() * float64(time.Second))
				break
			}
		}
		return int(n), mean, p95
	}
	return 0, 0, 0
}

// reservedRows reads how many rows the dispatcher reserved.
func reservedRows(m *pampa.Metrics) float64 {
	families, err := m.Registry().Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "pampa_tasks_reserved_total" {
			for _, mm := range f.GetMetric() {
				n += mm.GetCounter().GetValue()
			}
		}
	}
	return n
}

// setDB records the database figures of a burn of duration d.
func (r *Result) setDB(f dbFigures, d time.Duration) {
	r.BurnRounds, r.BurnRoundMs, r.BurnRoundP95ms = f.rounds, ms(f.roundMean), ms(f.roundP95)
	if f.rounds > 0 {
		r.BurnReservedPerRound = f.reserved / float64(f.rounds)
	}
	r.BurnCommitsPerS = float64(f.commits) / d.Seconds()
	if f.pgXacts >= 0 {
		r.BurnPgXactsPerS = float64(f.pgXacts) / d.Seconds()
	}
}

func pgXacts(perS float64) string {
	if perS == 0 {
		return ""
	}
	return fmt.Sprintf(", %.0f write transactions/s at the server (transaction ids)", perS)
}
