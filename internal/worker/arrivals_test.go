package worker

import (
	"testing"
	"time"
)

// Tries a trickle brings (one every 10 ms) count as sparse after a few;
// a burn's batches (six every millisecond) never do, and turn a sparse
// worker back within a few claims; the edge is sparseGap per try.
func TestArrivalGauge(t *testing.T) {
	var g arrivalGauge
	now := time.Now()
	if g.sparse() {
		t.Fatal("sparse before any try")
	}
	for i := range 10 {
		now = now.Add(10 * time.Millisecond)
		g.add(1, now)
		if i == 0 && g.sparse() {
			t.Error("sparse after one try: no gap measured yet")
		}
	}
	if !g.sparse() {
		t.Fatalf("a try every 10 ms: gap %v, not sparse", g.gap)
	}
	for range 6 {
		now = now.Add(time.Millisecond)
		g.add(6, now)
	}
	if g.sparse() {
		t.Errorf("six tries a millisecond: gap %v, still sparse", g.gap)
	}
	g.add(0, now.Add(time.Hour)) // a claim that found nothing is no arrival
	if g.sparse() {
		t.Errorf("an empty claim moved the gap to %v", g.gap)
	}

	var edge arrivalGauge
	for i := range 40 {
		edge.add(2, now.Add(time.Duration(i)*2*(sparseGap-time.Microsecond)))
	}
	if edge.sparse() {
		t.Errorf("two tries every %v: gap %v, sparse", 2*(sparseGap-time.Microsecond), edge.gap)
	}
	next := 2 * (sparseGap + time.Microsecond)
	at := now.Add(time.Second)
	for range 40 {
		at = at.Add(next)
		edge.add(2, at)
	}
	if !edge.sparse() {
		t.Errorf("two tries every %v: gap %v, not sparse", next, edge.gap)
	}
}
