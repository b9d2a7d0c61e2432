package metrics

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pampa-go/pampa/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// families gathers m's registry by name; it fails the test on an error.
func families(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return byName(fams)
}

func byName(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// labels renders a metric's labels as "k=v,k=v", in name order.
func labels(m *dto.Metric) string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// values maps each series of a gauge or counter family to its value.
func values(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		switch {
		case m.Gauge != nil:
			out[labels(m)] = m.GetGauge().GetValue()
		case m.Counter != nil:
			out[labels(m)] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestWorkerSeries(t *testing.T) {
	m := New()
	j := m.Job("mail", engine.WorkerRole)
	if again := m.Job("mail", engine.WorkerRole); again != j {
		t.Error("Job returned a second recorder for the same job")
	}
	for _, f := range []engine.Fate{engine.Succeeded, engine.Succeeded, engine.Failed, engine.FailedFinal, engine.Dropped} {
		j.Recorded(f)
	}
	j.TryEnded(30*time.Millisecond, false)
	j.TryEnded(2*time.Second, true)

	fams := families(t, m)
	want := map[string]float64{
		"job=mail,outcome=succeeded": 2, "job=mail,outcome=failed": 1,
		"job=mail,outcome=failed_final": 1, "job=mail,outcome=dropped": 1,
	}
	if got := values(fams["pampa_tasks_processed_total"]); !equalMaps(got, want) {
		t.Errorf("pampa_tasks_processed_total = %v, want %v", got, want)
	}
	if got := values(fams["pampa_task_panics_total"]); got["job=mail"] != 1 {
		t.Errorf("pampa_task_panics_total = %v, want 1", got)
	}
	h := fams["pampa_task_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() < 2.03 || h.GetSampleSum() > 2.031 {
		t.Errorf("pampa_task_duration_seconds: count %d sum %g, want 2 and 2.03", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, name := range []string{"pampa_tasks_reserved_total", "pampa_dispatcher_leader", "pampa_dispatcher_round_duration_seconds"} {
		if _, ok := fams[name]; ok {
			t.Errorf("a worker-only process shows %s", name)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("the Go collector is not registered")
	}
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Error("the process collector is not registered")
	}
}

func TestDispatcherSeries(t *testing.T) {
	m := New()
	j := m.Job("mail", engine.DispatcherRole)
	fams := families(t, m)
	// Ready before anything happened, at zero, so that rate() sees the
	// first increase.
	for _, name := range []string{"pampa_tasks_reserved_total", "pampa_tasks_relaunched_total", "pampa_tasks_failed_by_dispatcher_total"} {
		if got := values(fams[name]); len(got) != 1 || got["job=mail"] != 0 {
			t.Errorf("%s before any round = %v, want job=mail at 0", name, got)
		}
	}
	if _, ok := fams["pampa_tasks_processed_total"]; ok {
		t.Error("a dispatcher-only process shows pampa_tasks_processed_total")
	}
	j.Reserved(5)
	j.Reserved(0)
	j.Recovered(3, 1)
	m.Round(10*time.Millisecond, false, nil)
	if v := testutil.ToFloat64(m.dispatcher.leader); v != 0 {
		t.Errorf("leader after a standby round = %g, want 0", v)
	}
	m.Round(20*time.Millisecond, true, nil)
	m.Round(30*time.Millisecond, true, errors.New("reserve failed"))
	if v := testutil.ToFloat64(m.dispatcher.leader); v != 1 {
		t.Errorf("leader after leading rounds = %g, want 1", v)
	}
	m.Resigned()

	fams = families(t, m)
	for name, want := range map[string]float64{
		"pampa_tasks_reserved_total": 5, "pampa_tasks_relaunched_total": 3, "pampa_tasks_failed_by_dispatcher_total": 1,
	} {
		if got := values(fams[name])["job=mail"]; got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if got := values(fams["pampa_dispatcher_leader"])[""]; got != 0 {
		t.Errorf("pampa_dispatcher_leader after resigning = %g, want 0", got)
	}
	if got := values(fams["pampa_dispatcher_round_errors_total"])[""]; got != 1 {
		t.Errorf("pampa_dispatcher_round_errors_total = %g, want 1", got)
	}
	// The standby's round only tried the lease: not a round's duration.
	if h := fams["pampa_dispatcher_round_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 {
		t.Errorf("pampa_dispatcher_round_duration_seconds count = %d, want 2 (the leading rounds)", h.GetSampleCount())
	}
}

func TestWorkerSlots(t *testing.T) {
	m := New()
	busy := 2
	withdraw := m.WorkerSlots("local.1", 4, func() int { return busy })
	want := map[string]float64{"state=busy,worker=local.1": 2, "state=idle,worker=local.1": 2}
	if got := values(families(t, m)["pampa_worker_slots"]); !equalMaps(got, want) {
		t.Errorf("pampa_worker_slots = %v, want %v", got, want)
	}
	busy = 9 // a count caught mid-change never makes idle negative
	want = map[string]float64{"state=busy,worker=local.1": 4, "state=idle,worker=local.1": 0}
	if got := values(families(t, m)["pampa_worker_slots"]); !equalMaps(got, want) {
		t.Errorf("pampa_worker_slots = %v, want %v", got, want)
	}
	// A later run under the same id is not withdrawn by the earlier one.
	withdrawLater := m.WorkerSlots("local.1", 1, func() int { return 0 })
	withdraw()
	want = map[string]float64{"state=busy,worker=local.1": 0, "state=idle,worker=local.1": 1}
	if got := values(families(t, m)["pampa_worker_slots"]); !equalMaps(got, want) {
		t.Errorf("pampa_worker_slots after the earlier run withdrew = %v, want %v", got, want)
	}
	withdrawLater()
	if f, ok := families(t, m)["pampa_worker_slots"]; ok {
		t.Errorf("pampa_worker_slots after both withdrew = %v, want none", values(f))
	}
}

func equalMaps(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Recording a task's events allocates nothing: the job's series are
// resolved once.
func TestRecordingAllocatesNothing(t *testing.T) {
	m := New()
	j := m.Job("mail", engine.WorkerRole)
	d := m.Job("mail", engine.DispatcherRole)
	allocs := testing.AllocsPerRun(1000, func() {
		j.TryEnded(42*time.Millisecond, false)
		j.Recorded(engine.Succeeded)
		j.Recorded(engine.FailedFinal)
		d.Reserved(3)
	})
	if allocs != 0 {
		t.Errorf("recording a task's events allocates %g times, want 0", allocs)
	}
}
