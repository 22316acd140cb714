package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
)

// TestSubSeriesBound: the first max subscriptions get labels of their
// own, the rest are summed under OtherSubsLabel, and a deleted one frees
// its label for the next new subscription.
func TestSubSeriesBound(t *testing.T) {
	s := newSubSeries(2)
	ok := webhook.Result{Duration: 20 * time.Millisecond}
	bad := webhook.Result{Err: errors.New("refused"), Duration: time.Millisecond}
	s.post("a", 3, ok)
	s.post("b", 1, ok)
	s.post("c", 5, ok)
	s.post("d", 0, bad)
	s.post("d", 2, ok)

	tests := []struct {
		label     string
		delivered float64
	}{{"a", 3}, {"b", 1}, {OtherSubsLabel, 7}}
	for _, tc := range tests {
		if got := testutil.ToFloat64(s.delivered.WithLabelValues(tc.label)); got != tc.delivered {
			t.Errorf("delivered{sub=%q} = %v, want %v", tc.label, got, tc.delivered)
		}
	}
	if got := testutil.ToFloat64(s.failed.WithLabelValues(OtherSubsLabel)); got != 1 {
		t.Errorf("failed{sub=%q} = %v, want 1", OtherSubsLabel, got)
	}
	if n := testutil.CollectAndCount(s.delivered); n != 3 {
		t.Errorf("delivered has %d series, want 3 (a, b, %s)", n, OtherSubsLabel)
	}
	if n := testutil.CollectAndCount(s.latency); n != 3 {
		t.Errorf("latency has %d series, want 3", n)
	}

	// a is deleted: its series go, and a new subscription gets its slot.
	s.prune(map[string]bool{"b": true, "c": true, "d": true})
	s.post("e", 4, ok)
	if got := testutil.ToFloat64(s.delivered.WithLabelValues("e")); got != 4 {
		t.Errorf("delivered{sub=e} = %v, want 4 (a's freed label)", got)
	}
	s.mu.Lock()
	_, hasA := s.labels["a"]
	own := s.own
	s.mu.Unlock()
	if hasA || own != 2 {
		t.Errorf("after prune: a known %v, own labels %d; want false, 2", hasA, own)
	}
}

// TestSubSeriesZeroMax: metrics-max-subs 0 sums every subscription under
// one label.
func TestSubSeriesZeroMax(t *testing.T) {
	s := newSubSeries(0)
	for i := range 5 {
		s.post(fmt.Sprint("s", i), 1, webhook.Result{})
	}
	if n := testutil.CollectAndCount(s.delivered); n != 1 {
		t.Fatalf("delivered has %d series, want 1", n)
	}
	if got := testutil.ToFloat64(s.delivered.WithLabelValues(OtherSubsLabel)); got != 5 {
		t.Errorf("delivered{sub=%q} = %v, want 5", OtherSubsLabel, got)
	}
}

// TestInstrumentIngest counts requests by status and observes latency for
// accepted ones only.
func TestInstrumentIngest(t *testing.T) {
	m := newNodeMetrics(10)
	codes := []int{http.StatusAccepted, http.StatusAccepted, http.StatusBadRequest, http.StatusTooManyRequests}
	i := 0
	h := m.instrumentIngest(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(codes[i])
		i++
	}))
	for range codes {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/events", nil))
	}
	for code, want := range map[string]float64{"202": 2, "400": 1, "429": 1} {
		if got := testutil.ToFloat64(m.ingestRequests.WithLabelValues(code)); got != want {
			t.Errorf("requests{code=%s} = %v, want %v", code, got, want)
		}
	}
	var d dto.Metric
	if err := m.ingestAck.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	if got := d.GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("ack histogram has %d samples, want 2 (the 202s only)", got)
	}
}

// TestNilMetrics: the hooks of a nil *nodeMetrics do nothing.
func TestNilMetrics(t *testing.T) {
	var m *nodeMetrics
	m.onPost("a", 1, webhook.Result{})
	m.healthChanged(true)
	m.reassigned(3)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := m.instrumentIngest(h); got == nil {
		t.Fatal("instrumentIngest(nil metrics) returned nil")
	}
}
