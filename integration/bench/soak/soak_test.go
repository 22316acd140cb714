package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
)

func TestMatchesDistinctAndDeterministic(t *testing.T) {
	for _, tt := range []struct{ k, subs int }{{1, 1}, {1, 5}, {5, 100}, {20, 20}, {30, 20}} {
		for i := range uint64(200) {
			got := matches(i, tt.k, tt.subs)
			if want := min(tt.k, tt.subs); len(got) != want {
				t.Fatalf("matches(%d, %d, %d) = %v: want %d", i, tt.k, tt.subs, got, want)
			}
			seen := map[int]bool{}
			for _, j := range got {
				if j < 0 || j >= tt.subs || seen[j] {
					t.Fatalf("matches(%d, %d, %d) = %v: out of range or repeated", i, tt.k, tt.subs, got)
				}
				seen[j] = true
			}
			if again := matches(i, tt.k, tt.subs); !equal(again, got) {
				t.Fatalf("matches(%d) not deterministic: %v then %v", i, got, again)
			}
			if into := matchesInto([]int{-1}, i, tt.k, tt.subs); into[0] != -1 || !equal(into[1:], got) {
				t.Fatalf("matchesInto([-1], %d, …) = %v, want -1 then %v", i, into, got)
			}
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConfigJSON(t *testing.T) {
	c := config{Duration: 30 * time.Minute, Sample: 10 * time.Second, Rate: 2000, Subs: 100}
	if err := c.check(); err == nil {
		t.Error("a config without -match, -batch, -workers, -timeout-ms and -timings passed its check")
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["duration"] != "30m0s" || m["sample"] != "10s" || m["warmup"] != "3m0s" || m["rate"] != 2000.0 || m["subs"] != 100.0 {
		t.Errorf("config as JSON: %s", b)
	}
}

func TestBitset(t *testing.T) {
	var b bitset
	for _, i := range []uint64{0, 63, 64, 1000, 5} {
		if b.set(i) {
			t.Errorf("set(%d) the first time said it was set", i)
		}
		if !b.set(i) {
			t.Errorf("set(%d) the second time said it was not set", i)
		}
	}
	for _, tt := range []struct {
		i    uint64
		want bool
	}{{0, true}, {1, false}, {63, true}, {64, true}, {65, false}, {1000, true}, {999, false}, {1 << 20, false}} {
		if got := b.has(tt.i); got != tt.want {
			t.Errorf("has(%d) = %v, want %v", tt.i, got, tt.want)
		}
	}
}

// post sends a JSON array of event-ids as a webhook POST of sub.
func post(t *testing.T, r *receiver, sub string, ids ...string) int {
	t.Helper()
	evs := make([]map[string]string, len(ids))
	for i, id := range ids {
		evs[i] = map[string]string{"event-id": id}
	}
	body, _ := json.Marshal(evs)
	req, _ := http.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set("X-Correlation-ID", sub)
	w := &recorder{h: http.Header{}}
	r.ServeHTTP(w, req)
	return w.code
}

type recorder struct {
	h    http.Header
	code int
}

func (w *recorder) Header() http.Header         { return w.h }
func (w *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (w *recorder) WriteHeader(code int)        { w.code = code }

func TestAccounting(t *testing.T) {
	const k, subs = 2, 4
	acc := newAccepted()
	// Events 0..5 accepted as inc "a" seq 1..6.
	for i := range uint64(6) {
		if err := acc.add(dispatch.EventID("a", i+1), i); err != nil {
			t.Fatal(err)
		}
	}
	if acc.count() != 6 {
		t.Fatalf("count %d, want 6", acc.count())
	}
	r := newReceiver(0, 0)
	// Deliver every expected pair except event 3 to its second
	// subscription; event 1 twice to its first; event 0 to a subscription
	// it does not match; and an event the load never heard of.
	pairs := map[int][]uint64{}
	for i := range uint64(6) {
		for n, j := range matches(i, k, subs) {
			if i == 3 && n == 1 {
				continue
			}
			pairs[j] = append(pairs[j], i)
		}
	}
	for j, is := range pairs {
		for _, i := range is {
			if code := post(t, r, subID(j), dispatch.EventID("a", i+1)); code != http.StatusOK {
				t.Fatalf("POST answered %d", code)
			}
		}
	}
	post(t, r, subID(matches(1, k, subs)[0]), dispatch.EventID("a", 2))
	wrong := -1
	for j := range subs {
		if !contains(matches(0, k, subs), j) {
			wrong = j
		}
	}
	post(t, r, subID(wrong), dispatch.EventID("a", 1))
	post(t, r, subID(0), dispatch.EventID("zz", 9)) // never accepted: unknown

	a := r.account(acc, k, subs, true)
	if a.Accepted != 6 || a.Expected != 12 || a.Lost != 1 || a.Delivered != 11 || a.Duplicates != 1 || a.Unexpected != 1 || a.Unknown != 1 {
		t.Errorf("account: %s; want accepted 6, expected 12, delivered 11, lost 1, duplicates 1, unexpected 1, unknown 1", a)
	}
	want := dispatch.EventID("a", 4) + "→" + subID(matches(3, k, subs)[1])
	if len(a.LostEx) != 1 || a.LostEx[0] != want {
		t.Errorf("lost examples %v, want [%s]", a.LostEx, want)
	}
	// Out of order: a first delivery of seq 1 after seq 5 at one sub.
	r2 := newReceiver(0, 0)
	post(t, r2, subID(0), dispatch.EventID("a", 5))
	post(t, r2, subID(0), dispatch.EventID("a", 1), dispatch.EventID("a", 6))
	if got := r2.account(newAccepted(), k, subs, false); got.OutOfOrder != 1 {
		t.Errorf("out of order %d, want 1", got.OutOfOrder)
	}
}

func TestReceiverFailsAtItsRate(t *testing.T) {
	r := newReceiver(1, 0) // every POST refused
	for range 20 {
		if code := post(t, r, "s", dispatch.EventID("a", 1)); code != http.StatusInternalServerError && code != http.StatusServiceUnavailable {
			t.Fatalf("answered %d with -fail 1", code)
		}
	}
	if r.refused.Load() != 20 {
		t.Errorf("refused %d, want 20", r.refused.Load())
	}
	if got := r.account(newAccepted(), 1, 1, true); got.Duplicates != 0 || got.Unknown != 0 {
		t.Errorf("refused POSTs were recorded: %s", got)
	}
}

func TestFlat(t *testing.T) {
	for _, tt := range []struct {
		name   string
		xs     []float64
		judged bool
		ok     bool
	}{
		{"too few", []float64{1, 2}, false, false},
		{"constant", []float64{100, 100, 100, 100, 100, 100}, true, true},
		{"noisy but flat", []float64{100, 130, 90, 120, 95, 125}, true, true},
		{"within slack", []float64{10, 10, 10, 25, 25, 25}, true, true},
		{"climbing", []float64{100, 120, 140, 160, 180, 200}, true, false},
		{"shrinking", []float64{200, 150, 100, 100, 100, 100}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := flat("n1", "x", tt.xs, 1.25, 20, "")
			if v.Judged != tt.judged || v.OK != tt.ok {
				t.Errorf("flat(%v) = judged %v ok %v (%s), want judged %v ok %v", tt.xs, v.Judged, v.OK, v, tt.judged, tt.ok)
			}
		})
	}
}

func TestJudgeRaftNeedsSnapshots(t *testing.T) {
	mk := func(raft []int64, snaps []uint64) []sample {
		out := make([]sample, len(raft))
		for i := range raft {
			out[i] = sample{Node: "n1", At: float64(i * 10), Phase: "load", RaftDB: raft[i], SnapIndex: snaps[i], RSS: 1, RSSAnon: 1, Goroutines: 1, FDs: 1}
		}
		return out
	}
	find := func(vs []verdict) verdict {
		for _, v := range vs {
			if v.Series == "raft.db" {
				return v
			}
		}
		t.Fatal("no raft.db verdict")
		return verdict{}
	}
	for _, tt := range []struct {
		name       string
		raft       []int64
		snaps      []uint64
		judged, ok bool
	}{
		{"growing, no snapshot: not judged", []int64{1, 2, 3, 4, 5, 6}, []uint64{0, 0, 0, 0, 0, 0}, false, false},
		{"compacted, then flat", []int64{4, 8, 10, 10, 10, 10}, []uint64{0, 8000, 16000, 16000, 24000, 24000}, true, true},
		{"compacted, still growing", []int64{4, 8, 10, 14, 18, 22}, []uint64{0, 8000, 16000, 16000, 24000, 24000}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := find(judge("n1", mk(tt.raft, tt.snaps), 0))
			if v.Judged != tt.judged || v.OK != tt.ok {
				t.Errorf("raft.db %v with snapshots %v: %s; want judged %v ok %v", tt.raft, tt.snaps, v, tt.judged, tt.ok)
			}
		})
	}
}

func TestProportional(t *testing.T) {
	const mb = 1 << 20
	ss := func(file, content []int64) []sample {
		out := make([]sample, len(file))
		for i := range file {
			out[i] = sample{EventsDB: file[i], LogBytes: content[i], Records: content[i] / 500}
		}
		return out
	}
	get := func(s sample) (float64, float64, float64) {
		return float64(s.EventsDB), float64(s.LogBytes), float64(s.Records)
	}
	if v := proportional("n1", "events.db-bytes", ss([]int64{16 * mb, 16 * mb, 32 * mb, 48 * mb}, []int64{mb, 5 * mb, 12 * mb, 20 * mb}), get); !v.Judged || !v.OK {
		t.Errorf("a file in step with its content: %s", v)
	}
	if v := proportional("n1", "events.db-bytes", ss([]int64{16 * mb, 64 * mb, 128 * mb, 256 * mb}, []int64{mb, 5 * mb, 12 * mb, 20 * mb}), get); !v.Judged || v.OK {
		t.Errorf("a file growing past its content: %s", v)
	}
}

func TestProcStatus(t *testing.T) {
	st, err := procStatus("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if st["VmRSS"] < 1<<20 || st["RssAnon"] <= 0 || st["RssAnon"] > st["VmRSS"] {
		t.Errorf("own VmRSS %d, RssAnon %d bytes: implausible", st["VmRSS"], st["RssAnon"])
	}
	bad := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(bad, []byte("Name:\tx\nVmRSS:\t12 MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := procStatus(bad); err == nil {
		t.Error("a VmRSS line not in kB was accepted")
	}
}

// TestSoakShort runs the soak itself for 20 s at a low rate: real
// processes, so it is skipped with -short.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster for about 40 s")
	}
	var out, log bytes.Buffer
	res, err := run(config{
		Duration: 20 * time.Second, Rate: 100, Subs: 5, Match: 0.4, Batch: 3, Workers: 3,
		Fail: 0.1, Hang: 0.01, TimeoutMs: 1000, Sample: 2 * time.Second, Warmup: 4 * time.Second,
		Drain: 60 * time.Second, Timings: "short",
	}, &out, io.MultiWriter(&log, testWriter{t}))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	// Nothing lost, nothing misdelivered. (Whether the series stayed flat
	// is not asserted: 20 s is mostly warm-up, and under -race the nodes'
	// memory is the race detector's.)
	a := res.Account
	if a.Accepted == 0 || a.Lost != 0 || a.Unexpected != 0 || a.Expected != 2*a.Accepted || res.Receiver.BadBody != 0 || res.DrainSeconds < 0 {
		t.Errorf("soak: account %s, bad bodies %d, drain %.0fs\n%s", a, res.Receiver.BadBody, res.DrainSeconds, out.String())
	}
	if res.Receiver.Refused == 0 {
		t.Errorf("the receiver refused no POST at -fail 0.1: %d POSTs", res.Receiver.Posts)
	}
	if len(res.Samples) < 5 {
		t.Errorf("%d sample rounds in 20 s at 2 s, want at least 5", len(res.Samples))
	}
	for _, round := range res.Samples {
		for _, s := range round {
			if s.Err != "" || s.RSS == 0 || s.RSSAnon == 0 || s.HeapInuse == 0 || s.Goroutines == 0 || s.FDs == 0 || s.RaftDB == 0 || s.EventsDB == 0 || s.PeersDB == 0 {
				t.Errorf("incomplete sample: %s", s)
			}
		}
	}
	if len(res.Verdicts) != 3*8 {
		t.Errorf("%d verdicts, want 8 series × 3 nodes", len(res.Verdicts))
	}
	if !strings.Contains(out.String(), "accounting: accepted") {
		t.Errorf("no accounting line in the summary:\n%s", out.String())
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
