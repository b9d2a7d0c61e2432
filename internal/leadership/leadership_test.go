package leadership

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// openStores opens n stores on one fresh, migrated database of the
// dialect: one per dispatcher, each with its own connections.
func openStores(t *testing.T, dialect string, n int) []*store.Store {
	t.Helper()
	url := testdb.SQLitePath(t)
	if dialect == "postgres" {
		url = testdb.PostgresURL(t)
	}
	var out []*store.Store
	for i := range n {
		s, err := store.Open(t.Context(), dialect, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if i == 0 {
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, s)
	}
	return out
}

func newElector(s *store.Store, id string, ttl time.Duration) *Elector {
	return New(Options{Store: s, Name: "dispatcher", ID: id, TTL: ttl, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func forEachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// A leader that cannot reach the database stands down before its lease
// expires: a standby that takes the expired lease never leads beside it.
func TestLeaderWithoutDatabaseStandsDown(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect string) {
		const ttl = 3 * time.Second
		ctx := context.Background()
		stores := openStores(t, dialect, 2)
		leader, standby := newElector(stores[0], "d1", ttl), newElector(stores[1], "d2", ttl)
		if gained, err := leader.Elect(ctx); err != nil || !gained {
			t.Fatalf("d1 Elect = %v, %v; want the free lease", gained, err)
		}
		// d1's database goes away: every renewal fails from here.
		stores[0].DB.Close()
		deadline := time.Now().Add(ttl + 10*time.Second)
		for !standby.Leading() {
			if time.Now().After(deadline) {
				t.Fatalf("d2 never took the lease d1 could not renew")
			}
			// Fails once a renewal is due; d1 decides whether it leads on.
			_, _ = leader.Elect(ctx)
			if _, err := standby.Elect(ctx); err != nil {
				t.Fatal(err)
			}
			if leader.Leading() && standby.Leading() {
				t.Fatal("d1 still leads while d2 holds the lease: two leaders")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if leader.Leading() {
			t.Fatal("d1 leads beside d2")
		}
		if standby.Term() < 2 {
			t.Errorf("d2 took the lease with term %d, want a new term", standby.Term())
		}
	})
}

// A leader that was cut off past its lease (a long pause) and finds the
// lease in another's hands stops leading at once.
func TestLeaderThatLostTheLeaseStopsLeading(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect string) {
		const ttl = 600 * time.Millisecond
		ctx := context.Background()
		stores := openStores(t, dialect, 2)
		leader, standby := newElector(stores[0], "d1", ttl), newElector(stores[1], "d2", ttl)
		if gained, err := leader.Elect(ctx); err != nil || !gained {
			t.Fatalf("d1 Elect = %v, %v; want the free lease", gained, err)
		}
		// d1 pauses; d2 takes the lease once it has expired.
		deadline := time.Now().Add(ttl + 10*time.Second)
		for !standby.Leading() {
			if time.Now().After(deadline) {
				t.Fatal("d2 never took the expired lease")
			}
			if _, err := standby.Elect(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		gained, err := leader.Elect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if gained || leader.Leading() {
			t.Fatalf("d1 after its pause: gained %v, leading %v; want neither, d2 holds the lease", gained, leader.Leading())
		}
		l, err := stores[1].CurrentLease(ctx, "dispatcher")
		if err != nil {
			t.Fatal(err)
		}
		if l.Holder != "d2" || l.Term != standby.Term() {
			t.Errorf("lease = %+v, want d2's, term %d", l, standby.Term())
		}
	})
}
