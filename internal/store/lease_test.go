package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func acquire(t *testing.T, s *Store, name, holder string, ttl time.Duration) (int64, bool) {
	t.Helper()
	term, ok, err := s.AcquireLease(context.Background(), name, holder, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
	}
	return term, ok
}

// expireLease moves a lease's expiry d into the past.
func expireLease(t *testing.T, s *Store, name string, d time.Duration) {
	t.Helper()
	if n := mustExec(t, s, `UPDATE pampa_leader SET expires_at = `+s.Dialect.Ago()+` WHERE name = ?`,
		s.Dialect.AgoArg(d), name); n != 1 {
		t.Fatalf("expire lease %s: %d rows", name, n)
	}
}

func wantLease(t *testing.T, s *Store, name, holder string, term int64) Lease {
	t.Helper()
	l, err := s.CurrentLease(context.Background(), name)
	if err != nil {
		t.Fatalf("CurrentLease(%s): %v", name, err)
	}
	if l.Holder != holder || l.Term != term {
		t.Fatalf("CurrentLease(%s) = %+v, want holder %q term %d", name, l, holder, term)
	}
	return l
}

func TestLease(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if l, err := s.CurrentLease(ctx, "dispatcher"); err != nil || l != (Lease{}) {
			t.Fatalf("CurrentLease before anyone held it = %+v, %v; want zero", l, err)
		}

		if term, ok := acquire(t, s, "dispatcher", "a", 30*time.Second); !ok || term != 1 {
			t.Fatalf("first AcquireLease = term %d ok %v, want 1 true", term, ok)
		}
		l := wantLease(t, s, "dispatcher", "a", 1)
		if l.ExpiresInSec < 25 || l.ExpiresInSec > 31 {
			t.Fatalf("expires in %.1fs, want about 30", l.ExpiresInSec)
		}
		if term, ok := acquire(t, s, "dispatcher", "b", 30*time.Second); ok {
			t.Fatalf("second holder got a live lease (term %d)", term)
		}
		wantLease(t, s, "dispatcher", "a", 1)

		// Renewal by the holder keeps the term and extends the expiry.
		if term, ok := acquire(t, s, "dispatcher", "a", time.Hour); !ok || term != 1 {
			t.Fatalf("renewal = term %d ok %v, want 1 true", term, ok)
		}
		if l := wantLease(t, s, "dispatcher", "a", 1); l.ExpiresInSec < 3500 {
			t.Fatalf("renewal did not extend the lease: expires in %.1fs", l.ExpiresInSec)
		}

		// Another lease name is independent.
		if term, ok := acquire(t, s, "other", "b", time.Minute); !ok || term != 1 {
			t.Fatalf("AcquireLease(other) = term %d ok %v", term, ok)
		}

		// Expired: another holder takes it with the next term.
		expireLease(t, s, "dispatcher", time.Second)
		if l := wantLease(t, s, "dispatcher", "a", 1); l.ExpiresInSec >= 0 {
			t.Fatalf("expired lease expires in %.1fs, want negative", l.ExpiresInSec)
		}
		if term, ok := acquire(t, s, "dispatcher", "b", 30*time.Second); !ok || term != 2 {
			t.Fatalf("takeover after expiry = term %d ok %v, want 2 true", term, ok)
		}
		wantLease(t, s, "dispatcher", "b", 2)
		if _, ok := acquire(t, s, "dispatcher", "a", 30*time.Second); ok {
			t.Fatal("the old holder took the lease back while b's is live")
		}

		// Resigning: only the holder can, and the lease is free at once.
		if err := s.ResignLease(ctx, "dispatcher", "a"); err != nil {
			t.Fatal(err)
		}
		wantLease(t, s, "dispatcher", "b", 2)
		if err := s.ResignLease(ctx, "dispatcher", "b"); err != nil {
			t.Fatal(err)
		}
		wantLease(t, s, "dispatcher", "", 2)
		if term, ok := acquire(t, s, "dispatcher", "a", 30*time.Second); !ok || term != 3 {
			t.Fatalf("AcquireLease after resign = term %d ok %v, want 3 true", term, ok)
		}
		wantLease(t, s, "dispatcher", "a", 3)
		wantLease(t, s, "other", "b", 1)
	})
}

// TestLeaseRace has eight would-be leaders race for an expired lease:
// exactly one may win (invariant 1: only one dispatcher leads at a time).
func TestLeaseRace(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		for round := range 3 {
			name := fmt.Sprintf("lease-%d", round)
			if _, ok := acquire(t, s, name, "old", time.Minute); !ok {
				t.Fatal("initial acquire")
			}
			expireLease(t, s, name, time.Second)

			const n = 8
			type result struct {
				term int64
				ok   bool
				err  error
			}
			results := make([]result, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					term, ok, err := s.AcquireLease(t.Context(), name, fmt.Sprintf("h%d", i), time.Minute)
					results[i] = result{term, ok, err}
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, r := range results {
				if r.err != nil {
					t.Fatalf("round %d: h%d: AcquireLease: %v", round, i, r.err)
				}
				if r.ok {
					if winner >= 0 {
						t.Fatalf("round %d: both h%d and h%d won the lease", round, winner, i)
					}
					winner = i
					if r.term != 2 {
						t.Fatalf("round %d: winner's term = %d, want 2", round, r.term)
					}
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody won the expired lease", round)
			}
			wantLease(t, s, name, fmt.Sprintf("h%d", winner), 2)
		}
	})
}

// TestLeaseFirstAcquireRace races the very first acquisition, when the
// lease row does not exist yet.
func TestLeaseFirstAcquireRace(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		const n = 6
		oks := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, oks[i], errs[i] = s.AcquireLease(t.Context(), "fresh", fmt.Sprintf("h%d", i), time.Minute)
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("h%d: %v", i, errs[i])
			}
			if oks[i] {
				won++
			}
		}
		if won != 1 {
			t.Fatalf("%d holders won a fresh lease, want exactly 1", won)
		}
		if l, err := s.CurrentLease(t.Context(), "fresh"); err != nil || l.Term != 1 {
			t.Fatalf("CurrentLease = %+v, %v; want term 1", l, err)
		}
	})
}
