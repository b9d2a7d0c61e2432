package leadership

import (
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/enginetest"
	"github.com/pampa-go/pampa/internal/store"
	"github.com/pampa-go/pampa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// twoStores opens two stores on one fresh database: two dispatchers.
func twoStores(t *testing.T, dialect string) (*store.Store, *store.Store) {
	t.Helper()
	url := testdb.SQLitePath(t)
	if dialect != "sqlite" {
		url = testdb.PostgresURL(t)
	}
	return enginetest.OpenURL(t, dialect, url), enginetest.OpenURL(t, dialect, url)
}

func elector(s *store.Store, id string, ttl time.Duration, logs *enginetest.Logs) *Elector {
	log := enginetest.Discard()
	if logs != nil {
		log = logs.Logger()
	}
	return New(Options{Store: s, Name: "dispatcher", ID: id, TTL: ttl, Log: log})
}

func elect(t *testing.T, e *Elector) bool {
	t.Helper()
	gained, err := e.Elect(t.Context())
	if err != nil {
		t.Fatalf("Elect(%s): %v", e.opts.ID, err)
	}
	return gained
}

func eachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range enginetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

func TestOnlyOneLeads(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		s1, s2 := twoStores(t, dialect)
		a, b := elector(s1, "a", time.Minute, nil), elector(s2, "b", time.Minute, nil)
		if gained := elect(t, a); !gained || !a.Leading() || a.Term() != 1 {
			t.Fatalf("a: gained/leading/term = %v/%v/%d, want the first term", gained, a.Leading(), a.Term())
		}
		if elect(t, b) || b.Leading() {
			t.Fatal("b leads while a holds a live lease")
		}
		if elect(t, a) || !a.Leading() {
			t.Fatal("a's second Elect reported a new term or lost the lead")
		}
		l, err := s1.CurrentLease(t.Context(), "dispatcher")
		if err != nil || l.Holder != "a" || l.Term != 1 || l.ExpiresInSec <= 0 {
			t.Fatalf("lease = %+v, %v; want a's, term 1, live", l, err)
		}
	})
}

func TestResignHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		s1, s2 := twoStores(t, dialect)
		a, b := elector(s1, "a", time.Minute, nil), elector(s2, "b", time.Minute, nil)
		elect(t, a)
		b.Resign() // not leading: a no-op
		if l, _ := s1.CurrentLease(t.Context(), "dispatcher"); l.Holder != "a" {
			t.Fatalf("a non-leader's Resign changed the lease: %+v", l)
		}
		a.Resign()
		if a.Leading() {
			t.Fatal("still leading after Resign")
		}
		if !elect(t, b) || !b.Leading() {
			t.Fatal("b did not take the lease at once after a resigned")
		}
		if b.Term() <= 1 {
			t.Fatalf("b's term = %d, want above a's 1", b.Term())
		}
	})
}

func TestRenewKeepsTermAndLease(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	s1, s2 := twoStores(t, "sqlite")
	a, b := elector(s1, "a", ttl, nil), elector(s2, "b", ttl, nil)
	elect(t, a)
	// Renewed every TTL/3, the lease never lapses: b never gets it over
	// several TTLs.
	deadline := time.Now().Add(3 * ttl)
	tick := time.NewTicker(ttl / 10)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if elect(t, a) {
			t.Fatal("a renewal reported a new term")
		}
		if elect(t, b) {
			t.Fatal("b took a lease that a renews")
		}
		<-tick.C
	}
	if !a.Leading() || a.Term() != 1 {
		t.Fatalf("a: leading %v, term %d; want still leading term 1", a.Leading(), a.Term())
	}
}

// A leader that cannot renew stands down at two thirds of the TTL: after
// it (the last renewal lies between t0 and t1), and before the lease can
// pass to another. Both electors are driven in one loop, and never lead
// at once.
func TestLeaderThatCannotRenewStandsDown(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		const ttl = 600 * time.Millisecond
		s1, s2 := twoStores(t, dialect)
		logs := &enginetest.Logs{}
		a, b := elector(s1, "a", ttl, logs), elector(s2, "b", ttl, nil)
		t0 := time.Now()
		elect(t, a)
		t1 := time.Now()
		if err := s1.DB.Close(); err != nil {
			t.Fatal(err)
		}
		tick := time.NewTicker(ttl / 30)
		defer tick.Stop()
		var stoodDown time.Time
		for !b.Leading() {
			if time.Since(t0) > 10*time.Second {
				t.Fatal("b never took the lease")
			}
			start := time.Now()
			_, _ = a.Elect(t.Context()) // fails once a renewal is due
			end := time.Now()
			switch {
			case !a.Leading() && stoodDown.IsZero():
				stoodDown = end
				if end.Sub(t0) < ttl*2/3 {
					t.Fatalf("stood down %s after the last renewal, before 2/3 of the TTL", end.Sub(t0))
				}
			case a.Leading() && start.Sub(t1) > ttl*2/3:
				t.Fatalf("still leading %s after the last renewal, past 2/3 of the TTL", start.Sub(t1))
			}
			elect(t, b)
			if a.Leading() && b.Leading() {
				t.Fatal("two leaders at once")
			}
			<-tick.C
		}
		if stoodDown.IsZero() || b.Term() != 2 {
			t.Fatalf("b leads with term %d (a stood down: %v), want term 2 after a stood down", b.Term(), !stoodDown.IsZero())
		}
		if !logs.Contains("standing down") {
			t.Fatalf("no log of standing down:\n%s", logs)
		}
	})
}

func TestLeaderLearnsItLostTheLease(t *testing.T) {
	t.Parallel()
	const ttl = 100 * time.Millisecond
	s1, s2 := twoStores(t, "sqlite")
	logs := &enginetest.Logs{}
	a, b := elector(s1, "a", ttl, logs), elector(s2, "b", ttl, nil)
	elect(t, a)
	// a stalls past its lease (no Elect), b takes it once expired.
	enginetest.Eventually(t, 5*time.Second, "b to take the expired lease", func() bool { return elect(t, b) })
	if elect(t, a) || a.Leading() {
		t.Fatal("a still leads after b took the lease")
	}
	if !logs.Contains("lost the lease") {
		t.Fatalf("no log of the lost lease:\n%s", logs)
	}
}
