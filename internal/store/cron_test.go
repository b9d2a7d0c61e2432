package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A due time is claimed once, however many processes try at once, and a
// claim moves last_due so that a later read starts from it.
func TestCronClaimOncePerDueTime(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		start := time.UnixMilli(time.Now().UnixMilli())
		last, err := s.CronLast(ctx, "relaunching:odd", start)
		if err != nil || !last.Equal(start) {
			t.Fatalf("first CronLast = %v, %v; want %v recorded", last, err, start)
		}
		// A second read does not overwrite the first record.
		if again, err := s.CronLast(ctx, "relaunching:odd", start.Add(time.Hour)); err != nil || !again.Equal(start) {
			t.Fatalf("second CronLast = %v, %v; want %v kept", again, err, start)
		}
		due := start.Add(2 * time.Second)
		now := due.Add(300 * time.Millisecond)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ok, err := s.CronClaim(ctx, "relaunching:odd", due, now)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d of 4 claims of one due time won, want 1", n)
		}
		if last, err := s.CronLast(ctx, "relaunching:odd", now); err != nil || !last.Equal(now) {
			t.Fatalf("after the claim, CronLast = %v, %v; want %v", last, err, now)
		}
		// The due time just before the claim is taken; the next is not.
		if ok, _ := s.CronClaim(ctx, "relaunching:odd", now, now); ok {
			t.Error("a due time at the claimed time was claimed again")
		}
		if ok, err := s.CronClaim(ctx, "relaunching:odd", now.Add(time.Millisecond), now.Add(time.Second)); err != nil || !ok {
			t.Errorf("the next due time: claim = %v, %v; want true", ok, err)
		}
	})
}
