package dashboard

import (
	"sync"
	"time"

	"github.com/pampa-go/pampa"
)

// sampler keeps the last minutes of the jobs' counts, from which come the
// throughput and failure rates and the charts. Counting rows that ended in
// the last minute would need an index on the end time that jobs do not
// have; differences of the report's index-backed counts cost nothing more.
type sampler struct {
	mu     sync.Mutex
	keep   int // samples kept
	points []sample
}

type sample struct {
	at   time.Time
	jobs map[string]pampa.JobReport
}

// Point is one step of a job's chart: the rate between two samples.
type Point struct {
	At   time.Time `json:"at"`
	Rate float64   `json:"tasks_per_second"`
}

// sampleWindow is how far back the charts go; rateWindow is what the
// current rates are measured over.
const (
	sampleWindow = 10 * time.Minute
	rateWindow   = time.Minute
)

func newSampler(every time.Duration) *sampler {
	return &sampler{keep: int(sampleWindow/every) + 1}
}

func (s *sampler) add(at time.Time, reports []pampa.JobReport) {
	jobs := make(map[string]pampa.JobReport, len(reports))
	for _, r := range reports {
		jobs[r.Job] = r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.points = append(s.points, sample{at: at, jobs: jobs})
	if len(s.points) > s.keep {
		s.points = append(s.points[:0], s.points[len(s.points)-s.keep:]...)
	}
}

// rates is what the samples say of a job: tasks completed per second and
// tasks failed for good per minute over the last minute (nil before two
// samples), and the completion rate between each two samples.
func (s *sampler) rates(job string) (perSecond, failedPerMinute *float64, series []Point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	series = []Point{}
	var prev *pampa.JobReport
	var prevAt time.Time
	for _, p := range s.points {
		r, ok := p.jobs[job]
		if !ok {
			continue
		}
		if prev != nil {
			series = append(series, Point{At: p.at, Rate: rate(prev.Completed, r.Completed, p.at.Sub(prevAt))})
		}
		prev, prevAt = &r, p.at
	}
	if prev == nil {
		return nil, nil, series
	}
	for _, p := range s.points { // the oldest sample within the window
		r, ok := p.jobs[job]
		if !ok || prevAt.Sub(p.at) > rateWindow || !p.at.Before(prevAt) {
			continue
		}
		d := prevAt.Sub(p.at)
		ps := rate(r.Completed, prev.Completed, d)
		fm := rate(r.Failed, prev.Failed, d) * 60
		return &ps, &fm, series
	}
	return nil, nil, series
}

// rate is the growth per second from a to b over d; a count that fell (a
// relaunch made done tasks pending again) counts as no growth.
func rate(a, b int64, d time.Duration) float64 {
	if d <= 0 || b <= a {
		return 0
	}
	return float64(b-a) / d.Seconds()
}
