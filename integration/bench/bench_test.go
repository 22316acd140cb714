package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ten := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		name   string
		sorted []int64
		q      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"single p50", []int64{7}, 0.5, 7},
		{"single p99", []int64{7}, 0.99, 7},
		{"p50 of 10 is the 5th", ten, 0.5, 5},
		{"p90 of 10 is the 9th", ten, 0.9, 9},
		{"p99 of 10 is the max", ten, 0.99, 10},
		{"p10 of 10 is the 1st", ten, 0.1, 1},
		{"p11 of 10 is the 2nd", ten, 0.11, 2},
		{"q 0 is the min", ten, 0, 1},
		{"q 1 is the max", ten, 1, 10},
		{"q above 1 is the max", ten, 1.5, 10},
		{"q below 0 is the min", ten, -1, 1},
		{"NaN is the min", ten, math.NaN(), 1},
		{"p50 of 2", []int64{10, 20}, 0.5, 10},
		{"p51 of 2", []int64{10, 20}, 0.51, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %v) = %d, want %d", tt.sorted, tt.q, got, tt.want)
			}
		})
	}

	// Nearest rank on 1..1000: p99 is 990, p99.9 is 999.
	thousand := make([]int64, 1000)
	for i := range thousand {
		thousand[i] = int64(i + 1)
	}
	if got := percentile(thousand, 0.99); got != 990 {
		t.Errorf("p99 of 1..1000 = %d, want 990", got)
	}
	if got := percentile(thousand, 0.999); got != 999 {
		t.Errorf("p99.9 of 1..1000 = %d, want 999", got)
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted nanoseconds in; milliseconds out.
	s := []int64{5e6, 1e6, 3e6, 2e6, 4e6}
	l := summarize(s, 0, 0)
	if l.Count != 5 || l.Samples != 5 {
		t.Errorf("count %d samples %d, want 5 5", l.Count, l.Samples)
	}
	if l.P50 != 3 || l.P99 != 5 || l.Max != 5 || l.Mean != 3 {
		t.Errorf("got p50 %v p99 %v max %v mean %v, want 3 5 5 3", l.P50, l.P99, l.Max, l.Mean)
	}
	// An exact maximum beyond the kept samples wins.
	if l := summarize([]int64{1e6}, 10, 9e6); l.Max != 9 || l.Count != 10 || l.Samples != 1 {
		t.Errorf("got %+v, want max 9, count 10, samples 1", l)
	}
	if l := summarize(nil, 0, 0); l != (Latency{}) {
		t.Errorf("empty: got %+v", l)
	}
	if got := ms(1_234_567); got != 1.235 {
		t.Errorf("ms(1234567) = %v, want 1.235", got)
	}
}

func TestSamplerReservoir(t *testing.T) {
	s := newSampler(100, 1)
	for i := range int64(10_000) {
		s.add(i)
	}
	if len(s.s) != 100 || s.n != 10_000 || s.max != 9_999 {
		t.Fatalf("len %d n %d max %d, want 100 10000 9999", len(s.s), s.n, s.max)
	}
	// A uniform sample of 0..9999 has a median near 5000.
	l := mergeSamplers(s)
	if l.Count != 10_000 || l.Samples != 100 {
		t.Errorf("count %d samples %d", l.Count, l.Samples)
	}
	kept := append([]int64(nil), s.s...)
	slices.Sort(kept)
	med := percentile(kept, 0.5)
	if med < 3000 || med > 7000 {
		t.Errorf("median of the reservoir %d, want about 5000", med)
	}
}

func TestPacerSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	// 1000 events/s in batches of 1: one per millisecond.
	p := newPacer(start, 1000, 1)
	for _, k := range []int64{0, 1, 999, 1000, 123_456} {
		if got, want := p.due(k), start.Add(time.Duration(k)*time.Millisecond); !got.Equal(want) {
			t.Errorf("due(%d) = %v, want %v", k, got.Sub(start), want.Sub(start))
		}
	}
	// 3 events/s in batches of 1: fractions of a nanosecond must not
	// accumulate (333333333.33 ns per batch).
	p = newPacer(start, 3, 1)
	if got := p.due(3_000_000).Sub(start); got != 1_000_000*time.Second {
		t.Errorf("due(3e6) at 3/s = %v, want 1e6 s", got)
	}
	// 2000 events/s in batches of 100: 20 batches/s, 50ms apart.
	p = newPacer(start, 2000, 100)
	if got := p.due(20).Sub(start); got != time.Second {
		t.Errorf("due(20) at 2000/s by 100 = %v, want 1s", got)
	}
	// Unpaced: never waits.
	p = newPacer(start, 0, 100)
	if err := p.wait(context.Background(), 1_000_000); err != nil {
		t.Errorf("unpaced wait: %v", err)
	}
}

// TestPacerRate runs the pacer for real: 2000 one-event batches per second
// for 400ms must release about 800, on schedule, without drifting.
func TestPacerRate(t *testing.T) {
	const rate, window = 2000.0, 400 * time.Millisecond
	ctx := context.Background()
	start := time.Now()
	p := newPacer(start, rate, 1)
	var n int64
	var worst time.Duration
	for k := int64(0); ; k++ {
		if !p.due(k).Before(start.Add(window)) {
			break
		}
		if err := p.wait(ctx, k); err != nil {
			t.Fatal(err)
		}
		if now := time.Now(); now.Before(p.due(k)) {
			t.Fatalf("batch %d released %v early", k, p.due(k).Sub(now))
		} else {
			worst = max(worst, now.Sub(p.due(k)))
		}
		n++
	}
	elapsed := time.Since(start)
	if n != 800 {
		t.Errorf("released %d batches, want 800", n)
	}
	// No drift: the last batch leaves close to the end of the window, not
	// n × (timer slack) later. Generous bound for a loaded CI machine.
	if elapsed > window+100*time.Millisecond {
		t.Errorf("800 batches at 2000/s took %v, want about %v", elapsed, window)
	}
	t.Logf("800 batches in %v, worst lateness %v", elapsed, worst)

	// A cancelled context ends a wait at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p = newPacer(time.Now(), 1, 1)
	t0 := time.Now()
	if err := p.wait(cctx, 100); err == nil {
		t.Error("wait on a cancelled context returned nil")
	}
	if time.Since(t0) > 50*time.Millisecond {
		t.Error("wait on a cancelled context blocked")
	}
}

func TestWorkloadMatching(t *testing.T) {
	w := newWorkload(10000, 0.01, 1)
	if w.domains != 100 {
		t.Fatalf("domains %d, want 100", w.domains)
	}
	for d, n := range w.subsOnDomain {
		if n != 100 {
			t.Fatalf("domain %d has %d subscriptions, want 100", d, n)
		}
	}
	// Event domains are spread over the whole pool.
	seen := map[int]int{}
	for seq := range int64(100_000) {
		seen[w.eventDomain(seq)]++
	}
	for d := range 100 {
		if c := seen[d]; c < 800 || c > 1200 {
			t.Errorf("domain %d got %d of 100000 events, want about 1000", d, c)
		}
	}
	// One subscription: every event matches it, whatever the fraction.
	w = newWorkload(1, 0.01, 1)
	if w.domains != 1 || w.matches(12345) != 1 {
		t.Errorf("1 sub: domains %d, matches %d; want 1 and 1", w.domains, w.matches(12345))
	}
	w = newWorkload(10, 1, 1)
	if w.domains != 1 || w.matches(7) != 10 {
		t.Errorf("fraction 1: domains %d, matches %d; want 1 and 10", w.domains, w.matches(7))
	}
}

func TestBatchesAreValidJSON(t *testing.T) {
	w := newWorkload(4, 0.5, 1)
	for _, size := range []int{1, 3, 100} {
		batches := prepareBatches(w, 250, size)
		var seq int64
		for _, b := range batches {
			ts := time.Now().UnixNano()
			b.stamp(ts)
			var evs []map[string]any
			if size == 1 {
				var one map[string]any
				if err := json.Unmarshal(b.body, &one); err != nil {
					t.Fatalf("size 1: %v: %s", err, b.body)
				}
				evs = append(evs, one)
			} else if err := json.Unmarshal(b.body, &evs); err != nil {
				t.Fatalf("size %d: %v: %s", size, err, b.body)
			}
			if len(evs) != b.n {
				t.Fatalf("batch has %d events, want %d", len(evs), b.n)
			}
			for _, ev := range evs {
				if ev["model"] != "call" || ev["user"] != "u1" || ev["domain"] != domainName(w.eventDomain(seq)) {
					t.Fatalf("event %d: %v", seq, ev)
				}
				if ev["bench-seq"].(float64) != float64(seq) {
					t.Fatalf("bench-seq %v, want %d", ev["bench-seq"], seq)
				}
				seq++
			}
			// bench-ts survives exactly (an int64 beyond float64's
			// precision) when decoded the receiver's way.
			got, err := decodeEvents(b.body)
			if err != nil || got[0].TS != ts {
				t.Fatalf("receiver decode: %v, ts %d want %d", err, got[0].TS, ts)
			}
		}
		if seq != 250 {
			t.Errorf("size %d: %d events, want 250", size, seq)
		}
		avg := 0
		for _, b := range batches {
			avg += len(b.body)
		}
		if per := avg / 250; per < 180 || per > 240 {
			t.Errorf("size %d: %d bytes per event, want about 200", size, per)
		}
	}
}

// TestGeneratorAndReceiver posts a small paced run straight to a raw
// receiver and checks what both sides counted.
func TestGeneratorAndReceiver(t *testing.T) {
	w := newWorkload(1, 1, 1)
	batches := prepareBatches(w, 500, 10)
	rcv, err := newReceiver(w, true, nil, 500, 10000)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.close()
	client := &http.Client{Transport: newTransport(8)}
	start := time.Now()
	gen := runGenerator(context.Background(), genConfig{
		url: rcv.url + "/raw", batches: batches, rate: 2500, batchSize: 10, duration: 10 * time.Second,
		concurrency: 4, reqTimeout: 5 * time.Second,
	}, client)
	elapsed := time.Since(start)
	if gen.Err != nil || gen.Accepted != 500 || gen.Requests != 50 || gen.StoppedBy != "events-max" {
		t.Fatalf("generator: err %v accepted %d requests %d stopped by %s", gen.Err, gen.Accepted, gen.Requests, gen.StoppedBy)
	}
	// 50 batches at 250 batches/s: the last is due at 196ms.
	if elapsed < 190*time.Millisecond || elapsed > time.Second {
		t.Errorf("paced run took %v, want about 200ms", elapsed)
	}
	if rcv.unique.Load() != 500 || rcv.dups.Load() != 0 {
		t.Errorf("receiver: unique %d dups %d", rcv.unique.Load(), rcv.dups.Load())
	}
	// The same batches again are all duplicates.
	gen = runGenerator(context.Background(), genConfig{
		url: rcv.url + "/raw", batches: batches, batchSize: 10, duration: 10 * time.Second, concurrency: 4, reqTimeout: 5 * time.Second,
	}, client)
	if gen.Accepted != 500 || rcv.unique.Load() != 500 || rcv.dups.Load() != 500 {
		t.Errorf("replay: accepted %d unique %d dups %d", gen.Accepted, rcv.unique.Load(), rcv.dups.Load())
	}
	if l := rcv.latency(); l.Count != 500 || l.Max <= 0 {
		t.Errorf("latency %+v", l)
	}
	t.Logf("done after %v", time.Since(start))
}

// TestGeneratorStopsOn404 is what a node without the ingest pipeline does.
func TestGeneratorStopsOn404(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
	}))
	defer srv.Close()
	batches := prepareBatches(newWorkload(1, 1, 1), 100_000, 1)
	gen := runGenerator(context.Background(), genConfig{
		url: srv.URL, batches: batches, batchSize: 1, duration: 10 * time.Second, concurrency: 4, reqTimeout: 5 * time.Second,
	}, srv.Client())
	if gen.StoppedBy != "error" || gen.Errors["404"] == 0 || !strings.Contains(gen.FirstError, "404") {
		t.Errorf("stopped by %q, errors %v, first %q", gen.StoppedBy, gen.Errors, gen.FirstError)
	}
	if hits.Load() > 100 {
		t.Errorf("kept sending after a 404: %d requests", hits.Load())
	}
}

// TestDryRun runs the whole harness against the fake node, with injected
// duplicates and losses, and checks the figures add up.
func TestDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the harness for a few seconds")
	}
	quiet.Store(true)
	defer quiet.Store(false)
	cfg, err := parseFlags([]string{"-dry-run", "-subs", "20", "-matching-fraction", "0.25", "-duration", "20s",
		"-events-max", "4000", "-batch", "50", "-dry-run-dup", "0.05", "-dry-run-drop", "0.01", "-drain-quiet", "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Delivery
	if res.Accepted != 4000 || res.ExpectedDeliveries == nil || *res.ExpectedDeliveries != 4000*5 {
		t.Errorf("accepted %d expected %d, want 4000 and 20000", res.Accepted, d.Expected)
	}
	if d.Unique+d.Undelivered != d.Expected {
		t.Errorf("unique %d + undelivered %d != expected %d", d.Unique, d.Undelivered, d.Expected)
	}
	if d.Undelivered == 0 || d.Duplicates == 0 || res.Clean {
		t.Errorf("injected faults not seen: undelivered %d duplicates %d clean %v", d.Undelivered, d.Duplicates, res.Clean)
	}
	if d.Misrouted != 0 || d.CorrelationErrors != 0 || d.IDMismatches != 0 || d.MissingHeaders != 0 || d.IDsUnknown != 0 {
		t.Errorf("unexpected errors: %+v", d)
	}
	if res.Raw == nil || res.Raw.Received != 4000 || res.Ratio == nil || *res.Ratio <= 0 {
		t.Errorf("raw baseline: %+v ratio %v", res.Raw, res.Ratio)
	}
	if res.E2E == nil || res.E2E.Count != d.Unique || res.IngestAck.Count != 80 || *res.DeliveredUnique != d.Unique {
		t.Errorf("latencies: e2e %+v ack %+v", res.E2E, res.IngestAck)
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-cluster"}); err == nil || !strings.Contains(err.Error(), "not implemented") {
		t.Errorf("-cluster: %v", err)
	}
	if _, err := parseFlags([]string{"-node-addr", "127.0.0.1:7480", "-token", ""}); err == nil {
		t.Error("-node-addr without a token accepted")
	}
	if _, err := parseFlags([]string{"-mode", "ingest-only", "-node-addr", "127.0.0.1:7480", "-token", ""}); err != nil {
		t.Errorf("ingest-only needs no token: %v", err)
	}
	c, err := parseFlags([]string{"-rate", "1000", "-batch", "1", "-duration", "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.totalEvents(); n != 10000 {
		t.Errorf("rate 1000 for 10s: %d events, want 10000", n)
	}
	if b, err := baseURL("127.0.0.1:7480/"); err != nil || b != "http://127.0.0.1:7480" {
		t.Errorf("baseURL: %q %v", b, err)
	}
	if !isLoopback("http://127.0.0.1:1") || !isLoopback("http://[::1]:1") || isLoopback("http://10.0.0.1:1") {
		t.Error("isLoopback")
	}
}
