package httpcall

import (
	"context"
	"net/http"
	"runtime"
	"testing"
)

// BenchmarkCall posts signed tries to a no-op handler over loopback with
// keep-alive: from one goroutine, then from 40 at once (a worker of
// concurrency 40). conns is how many connections the server saw opened.
// The server runs in the same process: its work and allocations count.
// Run with go test -run '^$' -bench Call -benchmem.
func BenchmarkCall(b *testing.B) {
	b.Setenv("BENCH_HTTPCALL_SECRET", "s3cret")
	noop := func(http.ResponseWriter, *http.Request) {}
	signed := func(s *Spec) { s.SecretEnv = "BENCH_HTTPCALL_SECRET" }
	in, ctx := input(), context.Background()
	b.Run("serial", func(b *testing.B) {
		bb := setup(b, noop, signed)
		b.ReportAllocs()
		for b.Loop() {
			if out := bb.caller.Call(ctx, in); out.Err != nil {
				b.Fatal(out.Err)
			}
		}
		b.ReportMetric(float64(bb.conns.Load()), "conns")
	})
	b.Run("concurrent40", func(b *testing.B) {
		bb := setup(b, noop, signed)
		b.ReportAllocs()
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((40 + procs - 1) / procs) // goroutines: parallelism × GOMAXPROCS
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if out := bb.caller.Call(ctx, in); out.Err != nil {
					b.Error(out.Err)
					return
				}
			}
		})
		b.ReportMetric(float64(bb.conns.Load()), "conns") // opened in all, over b.N calls
	})
}
